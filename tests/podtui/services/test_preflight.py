"""Client pre-flight: the GGUF header of a Hugging Face file over HTTP ranges, never the model."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest

from podtui.services.preflight import PreflightError, hf_resolve_url, preflight
from remote_agent.fit.estimate import FitParamsEstimator, RunConfig

GiB = 1 << 30


class HubDouble(http.server.ThreadingHTTPServer):
    """A DOUBLE of the Hugging Face hub's resolve endpoint (`/{repo}/resolve/{rev}/{file}`) that
    serves local files with RFC 7233 single ranges (206 + Content-Range), as the hub's CDN does,
    and counts the body bytes it sent."""

    def __init__(self, files: dict[str, Path], honour_ranges: bool = True):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.honour_ranges = files, honour_ranges
        self.bytes_served = 0
        self.ranges: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.server.files.get(self.path)
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m and self.server.honour_ranges:
            start, end = int(m[1]), min(int(m[2] or size - 1), size - 1)
            self.server.ranges.append(rng)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            start, end = 0, size - 1
            self.send_response(200)
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            remaining = end - start + 1
            try:
                while remaining:
                    chunk = f.read(min(remaining, 1 << 16))
                    self.wfile.write(chunk)
                    self.server.bytes_served += len(chunk)
                    remaining -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client read what it needed and hung up


@pytest.fixture
def hub(request):
    servers = []

    def start(files, **kwargs):
        server = HubDouble(files, **kwargs)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server
    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_fits_at_about_n_tokens_from_the_header_alone(hub, fit_large_model, fitp_bin):
    server = hub({"/org/tiny-GGUF/resolve/main/fit-large.gguf": fit_large_model})
    url = hf_resolve_url("org/tiny-GGUF", "fit-large.gguf", endpoint=server.endpoint)
    result = preflight(url, 1 * GiB, margin_bytes=0)
    assert server.bytes_served < 10 * 1024 * 1024
    assert server.bytes_served < fit_large_model.stat().st_size // 2
    assert result.message == f"fits at about {result.ctx} tokens on 1.0 GiB"
    # agrees with llama.cpp's own figures at that ctx (GPU layout: token embeddings stay on the host)
    reference = FitParamsEstimator(fitp_bin, fit_large_model, RunConfig(token_embd_on_device=True))
    embd = 32000 * 128 * 4
    assert abs(result.need_bytes - (reference.bytes_at(result.ctx) - embd)) < 0.1 * result.need_bytes


def test_the_range_grows_only_when_the_header_is_longer(hub, tiny_model):
    server = hub({"/o/r/resolve/main/tiny-a.gguf": tiny_model})
    url = hf_resolve_url("o/r", "tiny-a.gguf", endpoint=server.endpoint)
    from podtui.services.preflight import fetch_gguf_header
    fetched = fetch_gguf_header(url, first_range=100_000)  # the header is ~725 kB
    assert len(server.ranges) == fetched.requests > 1
    assert fetched.bytes_read < 2_000_000 and fetched.header.arch_value("block_count") == 2


def test_a_server_ignoring_ranges_does_not_make_us_download_the_model(hub, fit_large_model):
    server = hub({"/o/r/resolve/main/m.gguf": fit_large_model}, honour_ranges=False)
    result = preflight(hf_resolve_url("o/r", "m.gguf", endpoint=server.endpoint), 16 * GiB)
    assert result.bytes_read < 10 * 1024 * 1024 and result.ctx == 4 * 1048576  # trained ctx caps
    assert "(its trained context)" in result.message


def test_a_split_model_reads_every_part_header(hub, tiny_split_model):
    parts = sorted(tiny_split_model.parent.glob("tiny-split-*.gguf"))
    server = hub({f"/o/r/resolve/main/{p.name}": p for p in parts})
    result = preflight(hf_resolve_url("o/r", parts[0].name, endpoint=server.endpoint), 1 * GiB)
    whole = sum(p.stat().st_size for p in parts)
    assert result.weights_bytes > 0.9 * (whole - 3 * 730_000) - 32000 * 64 * 4  # all parts counted
    assert server.bytes_served < whole


def test_nothing_fits_and_missing_files_are_clear(hub, fit_large_model):
    server = hub({"/o/r/resolve/main/m.gguf": fit_large_model})
    small = preflight(hf_resolve_url("o/r", "m.gguf", endpoint=server.endpoint), 20 << 20, margin_bytes=0)
    assert small.ctx is None and small.message.startswith("does not fit: the model needs")
    with pytest.raises(PreflightError, match="no such file"):
        preflight(hf_resolve_url("o/r", "other.gguf", endpoint=server.endpoint), GiB)
