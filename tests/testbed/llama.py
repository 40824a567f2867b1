"""A real llama-server (CPU build from the test bed cache) on a tiny model and a free port."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed.procs import free_port, stop_process


@dataclass
class LlamaServer:
    bin_dir: Path
    model: Path
    ctx: int = 2048
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(self.bin_dir / "llama-server"), "-m", str(self.model), "-c", str(self.ctx),
                "--host", "127.0.0.1", "--port", str(self.port), "-t", "2", *self.extra_args]

    def start(self, timeout: float = 60.0) -> "LlamaServer":
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode} while loading")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"llama-server not healthy within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def auth(api_key: str | None) -> dict[str, str]:
    """The header an engine the agent started wants (its API key); none for a keyless one."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def chat_completion(base_url: str, content: str = "Hello", max_tokens: int = 8, timeout: float = 60,
                    api_key: str | None = None) -> dict:
    """POST /v1/chat/completions (with api_key as a bearer token when given) → the parsed answer;
    urllib.error.HTTPError for a refusal (401 without the right key)."""
    body = json.dumps({"messages": [{"role": "user", "content": content}],
                       "max_tokens": max_tokens, "temperature": 0}).encode()
    req = urllib.request.Request(f"{base_url}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json", **auth(api_key)})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)
