"""Context fit: the largest context that keeps the whole model in device memory (issue #7).

gguf_meta (stdlib header reader), estimate (bytes per ctx: formula or llama-fit-params), budget
(free memory and engine overhead), oom (failed allocation size from engine logs), search (the
launch loop), cache (remembered results). gguf_meta, estimate's formula path and oom are
stdlib-only so podtui's pre-flight can use them on the client.
"""
