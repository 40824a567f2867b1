"""`podtui local setup` and what `local start` does with it.

The full build (llama.cpp from the pinned sdist, about 7 minutes on 2 cores) runs in every cold
CI run: scripts/build-llama-server.sh builds the test bed through `podtui local setup`. Here:
- setup then start on the test bed's finished build (setup finds it and returns at once), serving
  a chat from the tiny model with no --engine-bin-dir;
- the build path itself (unpack, configure, build, progress, result) on a real sdist-shaped
  tarball whose vendor/llama.cpp is a tiny CMake project with the same three targets, built by the
  real CMake and compiler in seconds (a stand-in for llama.cpp's sources, not for any tool);
- what a user without a build, without CMake, or with a broken source sees.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from podtui.services import local_setup
from tests.testbed import cache
from tests.testbed.cli import run_podtui
from tests.testbed.llama import chat_completion
from tests.testbed.procs import free_port

pytestmark = pytest.mark.timeout(180)

TINY_PROJECT = """cmake_minimum_required(VERSION 3.14)
project(stand_in_llama_cpp C)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
file(WRITE ${CMAKE_BINARY_DIR}/main.c "int main(void) { return 0; }\\n")
foreach(target llama-server llama-fit-params ggml-rpc-server)
  add_executable(${target} ${CMAKE_BINARY_DIR}/main.c)
endforeach()
"""


@pytest.fixture
def env(runpod_env, tmp_path):
    """A person without a Runpod key, with podtui's cache in a fresh folder."""
    env = {k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}
    env["PODTUI_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("REMOTE_AGENT_ENGINE_BIN_DIR", None)
    yield env
    run_podtui(env, "local", "stop")


def sdist_like(path: Path) -> Path:
    """A .tar.gz laid out like the llama-cpp-python sdist: <top>/vendor/llama.cpp/CMakeLists.txt."""
    with tarfile.open(path, "w:gz") as archive:
        data = TINY_PROJECT.encode()
        info = tarfile.TarInfo("llama_cpp_python-0.3.36/vendor/llama.cpp/CMakeLists.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def test_setup_then_start_serves_a_chat_without_naming_a_bin_dir(env, llama_bin, tiny_model, tmp_path):
    # The test bed's build is a finished `local setup` (same layout): put it where setup looks.
    engines = Path(env["PODTUI_CACHE_DIR"]) / "engines"
    engines.mkdir(parents=True)
    (engines / f"llama.cpp-{local_setup.LLAMA_CPP_TAG}-cpu").symlink_to(cache.llama_root())

    out = run_podtui(env, "local", "setup", "--cpu", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["built"] is False and Path(result["bin_dir"]) == engines / "llama.cpp-b11312-cpu" / "build" / "bin"
    human = run_podtui(env, "local", "setup", "--cpu")
    assert "already built" in human.stdout and "next: podtui local start --model MODEL" in human.stdout

    port = free_port()
    out = run_podtui(env, "local", "start", "--model", str(tiny_model), "--ctx", "512", "--port", str(port),
                     "--models-dir", str(tmp_path / "models"), "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    started = json.loads(out.stdout)
    assert started["status"]["state"] == "ready"
    assert chat_completion(started["base_url"].removesuffix("/v1"), api_key=started["api_key"])["choices"]


def test_start_without_any_llama_server_says_to_run_setup_and_starts_nothing(env, tiny_model, tmp_path):
    env = {**env, "PATH": os.path.dirname(shutil.which("python3") or "/usr/bin")}  # no llama-server there
    out = run_podtui(env, "local", "start", "--model", str(tiny_model))
    assert out.returncode != 0
    assert "no llama-server on this machine yet" in out.stderr and "podtui local setup" in out.stderr
    assert "Traceback" not in out.stderr
    assert json.loads(run_podtui(env, "local", "status", "--json").stdout)["status"] == "STOPPED"


def test_the_build_path_unpacks_configures_builds_and_reports_progress(tmp_path):
    tarball = sdist_like(tmp_path / "llama_cpp_python-0.3.36.tar.gz")
    lines: list[str] = []
    result = local_setup.setup("cpu", root=tmp_path / "root", source=tarball, jobs=2, on_progress=lines.append)
    assert result.built and result.backend == "cpu" and local_setup.has_binaries(result.bin_dir)
    assert result.source == tmp_path / "root" / "src" / "vendor" / "llama.cpp"
    assert lines[0] == "unpacking llama_cpp_python-0.3.36.tar.gz" and "building llama-server" in lines[1]
    assert lines[-1] == "build 100%"
    log = (tmp_path / "root" / "build.log").read_text()
    assert "-DGGML_RPC=ON" in log and "-DGGML_CUDA=ON" not in log
    again = local_setup.setup("cpu", root=tmp_path / "root", source=tarball)
    assert not again.built and again.bin_dir == result.bin_dir  # cached: returns at once


def test_a_tarball_without_llama_cpp_is_refused_naming_the_sdist(tmp_path):
    empty = tmp_path / "other.tar.gz"
    with tarfile.open(empty, "w:gz") as archive:
        info = tarfile.TarInfo("other-1.0/README")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(local_setup.SetupError) as caught:
        local_setup.setup("cpu", root=tmp_path / "root", source=empty)
    assert "holds no vendor/llama.cpp" in str(caught.value) and "0.3.36" in caught.value.fix


def test_without_cmake_the_error_says_what_to_install(env, tmp_path):
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "python3").symlink_to(shutil.which("python3"))
    out = run_podtui({**env, "PATH": str(bare)}, "local", "setup", "--cpu", "--source", str(tmp_path))
    assert out.returncode != 0
    assert "cmake" in out.stderr and "apt install cmake g++" in out.stderr and "Traceback" not in out.stderr


def test_cuda_is_chosen_only_when_nvcc_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert local_setup.choose_backend() == "cpu"
    nvcc = tmp_path / "nvcc"
    nvcc.write_text("#!/bin/sh\n")
    nvcc.chmod(0o755)
    assert local_setup.choose_backend() == "cuda" and local_setup.choose_backend("cpu") == "cpu"
    assert "-DGGML_CUDA=ON" in local_setup.cmake_flags("cuda")
