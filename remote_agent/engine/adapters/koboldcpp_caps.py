"""What the installed koboldcpp accepts, learned from the binary itself, once per binary.

koboldcpp's flags changed between releases (1.76 has no `--defaultgenamt`, `--useswa` or
`--version`; a flag it lacks ends it with argparse's exit 2 before any model loads), so the adapter
never assumes the newest. Two runs, each well under a second for the Python entry point (a release
binary unpacks itself first, a few seconds):

- `koboldcpp --help`: the version (`KoboldCpp Server - Version 1.76`), every flag, and
  `--quantkv`'s levels (`[quantization level 0/1/2]`; 0=f16, 1=q8_0, 2=q4_0, flash attention
  required — 1.76's help text).
- `koboldcpp --contextsize 2147483647 --help`: argparse checks a value when it meets it, before
  `--help` answers, so the refusal names the context range (`argument --contextsize: must be within
  [256, 262144]`, 1.76 and 1.102) or, in old versions where the size was a list of choices, the
  choices (`invalid choice: … (choose from 256, 512, …)`).

A binary that cannot be probed (no answer, a stand-in) gets FALLBACK: seed 000's flags only, the
range 1.76 and 1.102 share.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass

from remote_agent.child_env import without_secrets

log = logging.getLogger("remote_agent.engine")

PROBE_TIMEOUT_S = 60.0  # a release binary unpacks itself on every start
_TOO_BIG = "2147483647"

# --quantkv level → llama.cpp cache type (koboldcpp 1.76's help: "0=f16, 1=q8, 2=q4").
QUANTKV_TYPES = {0: "f16", 1: "q8_0", 2: "q4_0"}


@dataclass(frozen=True)
class KoboldCaps:
    """One koboldcpp binary's limits. ctx_choices: the only sizes accepted (old versions), else None."""
    version: str | None
    flags: frozenset[str]
    ctx_min: int = 256
    ctx_max: int = 262144
    ctx_choices: tuple[int, ...] | None = None
    quantkv_levels: tuple[int, ...] = ()

    def has(self, flag: str) -> bool:
        """Whether this koboldcpp takes flag (e.g. "--useswa")."""
        return flag in self.flags

    @property
    def label(self) -> str:
        """"koboldcpp 1.76", or "this koboldcpp" when its version is unknown."""
        return f"koboldcpp {self.version}" if self.version else "this koboldcpp"

    def ctx_problem(self, ctx: int) -> str | None:
        """Why this koboldcpp refuses --contextsize ctx (a sentence with the fix), or None."""
        if self.ctx_choices is not None and ctx not in self.ctx_choices:
            return (f"{self.label} accepts only these context sizes: {', '.join(map(str, self.ctx_choices))}; "
                    f"ctx {ctx} is not one of them")
        if not self.ctx_min <= ctx <= self.ctx_max:
            return (f"{self.label} accepts --contextsize {self.ctx_min}–{self.ctx_max}; ctx {ctx} is outside it: "
                    f"pass at most {self.ctx_max}, or ctx auto (it stays within the limit)")
        return None

    def largest_ctx_at_most(self, ctx: int) -> int:
        """The largest context this koboldcpp accepts that is ≤ ctx (at least ctx_min)."""
        if self.ctx_choices is not None:
            return max([c for c in self.ctx_choices if c <= ctx] or [min(self.ctx_choices)])
        return max(self.ctx_min, min(ctx, self.ctx_max))

    def cache_level(self, cache_type: str) -> int:
        """The --quantkv level for a llama.cpp cache type; ValueError (a sentence with the fix) when
        this koboldcpp cannot run it."""
        levels = {t: level for level, t in QUANTKV_TYPES.items() if level in self.quantkv_levels or level == 0}
        if cache_type not in levels:
            offered = ", ".join(f"{t} (--quantkv {lv})" for t, lv in levels.items())
            raise ValueError(f"{self.label} cannot run a {cache_type} KV cache; it offers {offered}")
        return levels[cache_type]


SEED_000_FLAGS = frozenset({"--model", "--contextsize", "--host", "--port", "--gpulayers", "--usecublas",
                            "--flashattention", "--ignoremissing", "--skiplauncher", "--password",
                            "--blasbatchsize", "--quantkv"})
FALLBACK = KoboldCaps(version=None, flags=SEED_000_FLAGS, quantkv_levels=(0, 1, 2))

_VERSION = re.compile(r"KoboldCpp Server - Version ([0-9][\w.]*)")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")
_QUANTKV = re.compile(r"--quantkv \[[^\]0-9]*([0-9](?:/[0-9])*)\]")
# argparse names an option by all its strings: "--contextsize/-c/--ctx-size" in 1.102.
_RANGE = re.compile(r"--contextsize[\w/-]*: must be within \[(\d+), (\d+)\]")
_CHOICES = re.compile(r"--contextsize[\w/-]*: invalid choice: \S+ \(choose from ([\d, ']+)\)")


def parse_help(text: str) -> KoboldCaps:
    """Version, flags and --quantkv levels from `koboldcpp --help`; FALLBACK's context range."""
    version = _VERSION.search(text)
    quantkv = _QUANTKV.search(text)
    levels = tuple(int(v) for v in quantkv.group(1).split("/")) if quantkv else ()
    return KoboldCaps(version=version.group(1) if version else None, flags=frozenset(_FLAG.findall(text)),
                      quantkv_levels=levels)


def with_ctx_limits(caps: KoboldCaps, refusal: str) -> KoboldCaps:
    """caps with the context range (or choices) named in argparse's refusal of a huge --contextsize;
    unchanged when the refusal names neither."""
    found = _RANGE.search(refusal)
    if found:
        return KoboldCaps(caps.version, caps.flags, int(found.group(1)), int(found.group(2)), None,
                          caps.quantkv_levels)
    found = _CHOICES.search(refusal)
    if found:
        choices = tuple(sorted(int(c.strip(" '")) for c in found.group(1).split(",") if c.strip(" '")))
        return KoboldCaps(caps.version, caps.flags, choices[0], choices[-1], choices, caps.quantkv_levels)
    return caps


_probed: dict[tuple[str, int, int], KoboldCaps] = {}


def probe(binary: str) -> KoboldCaps:
    """The caps of the koboldcpp at path binary, remembered per (path, size, mtime): it runs at most
    two short `--help` commands per binary (seconds for a release binary: call it off the event
    loop). Never raises: a binary that does not answer gets FALLBACK, logged."""
    try:
        st = os.stat(binary)
    except OSError:
        return FALLBACK
    key = (binary, st.st_size, st.st_mtime_ns)
    if key not in _probed:
        _probed[key] = _probe(binary)
    return _probed[key]


def _run(binary: str, *args: str) -> tuple[int, str]:
    out = subprocess.run([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace", timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL,
                         env=without_secrets(), start_new_session=True)
    return out.returncode, out.stdout


def _probe(binary: str) -> KoboldCaps:
    try:
        rc, text = _run(binary, "--help")
        caps = parse_help(text) if rc == 0 else None
        if caps is None or caps.version is None and "--contextsize" not in caps.flags:
            log.warning("%s --help did not describe koboldcpp (exit %s); assuming seed 000's flags only", binary, rc)
            return FALLBACK
        rc, refusal = _run(binary, "--contextsize", _TOO_BIG, "--help")
        caps = with_ctx_limits(caps, refusal)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not ask %s for its flags (%s); assuming seed 000's flags only", binary, exc)
        return FALLBACK
    log.info("%s: context %d–%d, --quantkv levels %s, --useswa %s, --defaultgenamt %s", caps.label, caps.ctx_min,
             caps.ctx_max, "/".join(map(str, caps.quantkv_levels)) or "none",
             "yes" if caps.has("--useswa") else "no", "yes" if caps.has("--defaultgenamt") else "no")
    return caps
