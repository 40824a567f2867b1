"""Pre-flight on the client: "fits at about N tokens" for a Hugging Face GGUF and a GPU size,
from the file's header alone.

The header (metadata and tensor table) sits at the start of the file; it is fetched with HTTP
range requests, starting with the first 2 MiB and growing the range only when the parser says
the header goes on (a 256k-token vocabulary makes it a few MB). The model itself is never
downloaded. The estimate is remote_agent.fit's formula (stdlib-only modules, shared with the
agent), so it agrees with what the pod will compute before it verifies with a launch.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from podtui.errors import PodtuiError
from remote_agent.fit.budget import DEFAULT_GPU_MARGIN
from remote_agent.fit.estimate import EstimateError, FormulaEstimator, ModelShape, RunConfig
from remote_agent.fit.gguf_meta import GGUFFormatError, GGUFHeader, HeaderTruncated, parse_header
from remote_agent.fit.oom import format_bytes
from remote_agent.fit.search import STEP, largest_fitting_ctx

FIRST_RANGE = 2 << 20
MAX_HEADER = 64 << 20  # no real header is this long; beyond it the file is not what it claims
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")


class PreflightError(PodtuiError):
    """The GGUF header could not be fetched or read, or the model cannot be estimated."""

    pass


@dataclass
class HeaderFetch:
    """A parsed GGUF header, with how many bytes and HTTP requests it took to fetch."""

    header: GGUFHeader
    bytes_read: int
    requests: int


@dataclass
class Preflight:
    """The pre-flight verdict: the largest context (tokens) that fits, sizes in bytes, and the
    one-line message shown to the user."""

    ctx: int | None          # None: not even 256 tokens fit
    trained_ctx: int
    weights_bytes: int
    need_bytes: int          # at ctx (at 256 when nothing fits)
    gpu_bytes: int
    bytes_read: int          # header bytes fetched, all parts together
    message: str


def hf_resolve_url(repo: str, filename: str, revision: str = "main", endpoint: str | None = None) -> str:
    """Hugging Face's download URL `{endpoint}/{repo}/resolve/{revision}/{filename}`; the endpoint
    defaults to $HF_ENDPOINT, then https://huggingface.co."""
    base = (endpoint or os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")
    return f"{base}/{repo}/resolve/{urllib.parse.quote(revision, safe='')}/{urllib.parse.quote(filename)}"


def fetch_gguf_header(url: str, token: str | None = None, first_range: int = FIRST_RANGE,
                      timeout: float = 30.0) -> HeaderFetch:
    """The GGUF header at url, by HTTP Range requests of first_range bytes and growing (at most
    MAX_HEADER); timeout in seconds per request, token sent as a Bearer token. Raises PreflightError
    (HTTP error, unreachable, truncated, not GGUF, header too long)."""
    data = b""
    want = first_range
    requests = 0
    while True:
        if want > MAX_HEADER:
            raise PreflightError(f"the GGUF header at {_safe(url)} is longer than {MAX_HEADER >> 20} MB",
                                 "check that the URL names a GGUF model file")
        chunk, whole_file = _get_range(url, len(data), want - 1, token, timeout)
        requests += 1
        data += chunk
        try:
            return HeaderFetch(parse_header(data), len(data), requests)
        except HeaderTruncated as more:
            if whole_file or not chunk:
                raise PreflightError(f"{_safe(url)} ends inside its GGUF header",
                                     "the file is truncated or not a GGUF model") from None
            want = max(more.need_at_least, 2 * len(data))
        except GGUFFormatError as e:
            raise PreflightError(f"{_safe(url)} is not a readable GGUF model: {e}",
                                 "pick a .gguf file of the repository") from None


def _get_range(url: str, start: int, end: int, token: str | None, timeout: float) -> tuple[bytes, bool]:
    """Bytes start..end (inclusive); True as second value when the server sent the whole rest."""
    headers = {"Range": f"bytes={start}-{end}", "User-Agent": "podtui-preflight"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            if r.status == 206:
                return r.read(), False
            # No range support: read just what was asked for and drop the connection, so a
            # server ignoring Range never makes us download the model.
            body = r.read(end + 1)
            return body[start:], len(body) <= end
    except urllib.error.HTTPError as e:
        if e.code == 416:
            return b"", True
        if e.code in (401, 403):
            raise PreflightError(f"Hugging Face refused {_safe(url)} (HTTP {e.code})",
                                 "the model is gated or private: set HF_TOKEN to a token with access") from None
        if e.code == 404:
            raise PreflightError(f"no such file: {_safe(url)}", "check the repository and file name") from None
        raise PreflightError(f"fetching the GGUF header failed: HTTP {e.code} from {_safe(url)}",
                             "try again later") from None
    except OSError as e:
        raise PreflightError(f"cannot reach {_safe(url)}: {e}", "check the network or HF_ENDPOINT") from None


def _safe(url: str) -> str:
    return url.split("?")[0]


def split_part_urls(url: str, header: GGUFHeader) -> list[str]:
    """URLs of the other parts of a split model (…-00001-of-00003.gguf)."""
    count = int(header.metadata.get("split.count", 1) or 1)
    path, _, query = url.partition("?")
    head, _, name = path.rpartition("/")
    m = _SPLIT_NAME.match(urllib.parse.unquote(name))
    if count <= 1 or not m:
        return []
    stem, suffix = m.group("stem"), f"?{query}" if query else ""
    return [f"{head}/" + urllib.parse.quote(f"{stem}-{i:05d}-of-{count:05d}.gguf") + suffix
            for i in range(2, count + 1)]


def preflight(url: str, gpu_memory_bytes: int, *, token: str | None = None, cache_type: str = "f16",
              parallel: int = 1, margin_bytes: int = DEFAULT_GPU_MARGIN, ctx_cap: int | None = None) -> Preflight:
    """Fetch the header(s) of the GGUF at url (every part of a split model) and estimate the largest
    context that fits in gpu_memory_bytes less margin_bytes. Raises PreflightError."""
    first = fetch_gguf_header(url, token)
    headers, read = [first.header], first.bytes_read
    for part in split_part_urls(url, first.header):
        more = fetch_gguf_header(part, token)
        headers.append(more.header)
        read += more.bytes_read
    try:
        shape = ModelShape.from_headers(headers)
        estimator = FormulaEstimator(shape, RunConfig(cache_type, cache_type, parallel=parallel))
    except EstimateError as e:
        raise PreflightError(str(e), "choose another cache type or set the context by hand") from None
    return estimate_fit(shape, estimator, gpu_memory_bytes, margin_bytes, read, ctx_cap)


def estimate_fit(shape: ModelShape, estimator: FormulaEstimator, gpu_memory_bytes: int,
                 margin_bytes: int, bytes_read: int = 0, ctx_cap: int | None = None) -> Preflight:
    """The largest multiple of 256 tokens, up to the trained context and ctx_cap, whose estimate
    fits in gpu_memory_bytes - margin_bytes (remote_agent.fit's formula); ctx None when none does."""
    budget = gpu_memory_bytes - margin_bytes
    cap = min(x for x in (shape.trained_ctx or 1 << 30, ctx_cap or 1 << 30))
    ctx = largest_fitting_ctx(estimator.bytes_at, budget, STEP, max(cap, STEP))
    weights = estimator.breakdown(STEP).weights
    if ctx is None:
        need = estimator.bytes_at(STEP)
        msg = (f"does not fit: the model needs {format_bytes(need)} even at {STEP} tokens, "
               f"the GPU has {format_bytes(gpu_memory_bytes)}")
    else:
        need = estimator.bytes_at(ctx)
        limit = " (its trained context)" if ctx == shape.trained_ctx else ""
        msg = f"fits at about {ctx} tokens{limit} on {format_bytes(gpu_memory_bytes)}"
    return Preflight(ctx, shape.trained_ctx, weights, need, gpu_memory_bytes, bytes_read, msg)
