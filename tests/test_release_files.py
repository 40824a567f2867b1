"""The release workflows (.github/workflows/) and the default image they give `podtui launch`.

The workflows run on GitHub, never here: these tests lint them against GitHub's workflow schema
(check-jsonschema's built-in copy: offline) and run their own shell steps with bash, so the
checks a release depends on (the koboldcpp variables, the tag scheme, tag = version) are tested
code. The wheel's fresh-venv install runs in scripts/test.sh (scripts/check-package.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from podtui import image_ref
from tests.testbed.cli import run_podtui

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def step(workflow: str, name: str) -> str:
    """The `run:` script of the step called name in .github/workflows/<workflow>.yml."""
    data = yaml.safe_load((REPO / ".github" / "workflows" / f"{workflow}.yml").read_text())
    for job in data["jobs"].values():
        for s in job["steps"]:
            if s.get("name") == name:
                return s["run"]
    raise AssertionError(f"no step {name!r} in {workflow}.yml")


def run_step(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    # GitHub runs `run:` scripts with bash -e; GITHUB_OUTPUT is a file the step appends to.
    return subprocess.run(["bash", "-e", "-c", script], env={"PATH": os.environ["PATH"], **env}, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)


def test_every_workflow_is_valid_for_github():
    assert [w.name for w in WORKFLOWS] == ["image.yml", "release.yml"]
    out = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                          "vendor.github-workflows", *map(str, WORKFLOWS)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("version, sha, ok, says", [
    ("", "", False, "set the repository variable KOBOLDCPP_VERSION"),
    ("1.94.1", "", False, "set the repository variable KOBOLDCPP_SHA256"),
    ("1.94.1", "ab" * 32, True, ""),
    ("none", "", True, ""),  # a llama.cpp-only image
])
def test_the_image_workflow_refuses_to_build_without_the_koboldcpp_variables(version, sha, ok, says, tmp_path):
    out = run_step(step("image", "Check the koboldcpp variables"),
                   {"KOBOLDCPP_VERSION": version, "KOBOLDCPP_SHA256": sha}, tmp_path)
    assert (out.returncode == 0) is ok, out.stdout
    assert says in out.stdout


def test_the_image_is_tagged_with_the_version_and_the_llama_cpp_build_it_carries(tmp_path):
    output = tmp_path / "github_output"
    out = run_step(step("image", "Names and tags"),
                   {"GITHUB_REF_NAME": "v0.1.0", "GITHUB_REF_TYPE": "tag", "GITHUB_SHA": "0" * 40,
                    "GITHUB_REPOSITORY_OWNER": "Some-Owner", "GITHUB_OUTPUT": str(output)}, REPO)
    assert out.returncode == 0, out.stdout
    text = output.read_text()
    assert "/some-owner/podtui-pod:0.1.0\n" in text and "/some-owner/podtui-pod:0.1.0-llama.cpp-b11312\n" in text


def test_a_release_tag_must_be_the_package_version_and_stamps_the_default_image(tmp_path):
    (tmp_path / "podtui").mkdir()
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    env = {"GITHUB_REPOSITORY_OWNER": "Some-Owner"}
    wrong = run_step(step("release", "The tag is the package version"), {**env, "GITHUB_REF_NAME": "v9.9.9"}, tmp_path)
    assert wrong.returncode != 0 and "does not match pyproject.toml's version" in wrong.stdout
    right = run_step(step("release", "The tag is the package version"), {**env, "GITHUB_REF_NAME": "v0.1.0"}, tmp_path)
    assert right.returncode == 0, right.stdout
    stamped = (tmp_path / "podtui" / "_published_image.txt").read_text().strip()
    image = run_step(step("image", "Names and tags"),
                     {"GITHUB_REF_NAME": "v0.1.0", "GITHUB_REF_TYPE": "tag", "GITHUB_SHA": "0" * 40,
                      "GITHUB_REPOSITORY_OWNER": "Some-Owner", "GITHUB_OUTPUT": str(tmp_path / "out")}, REPO)
    assert image.returncode == 0 and f"{stamped}\n" in (tmp_path / "out").read_text()  # the tag the image gets


def test_launch_defaults_to_the_stamped_image_and_says_so(tmp_path):
    runpod_env = {**os.environ, "PODTUI_CONFIG_DIR": str(tmp_path / "config"), "PODTUI_STATE_DIR": str(tmp_path)}
    stamp = Path(image_ref.__file__).with_name("_published_image.txt")
    assert not stamp.exists() and image_ref.published_image() is None  # a source checkout
    assert "installed from source" in run_podtui(runpod_env, "launch", "--help").stdout
    stamp.write_text("registry.example/owner/podtui-pod:0.1.0\n")
    try:
        assert image_ref.published_image() == "registry.example/owner/podtui-pod:0.1.0"
        assert "registry.example/owner/podtui-pod:0.1.0" in run_podtui(runpod_env, "launch", "--help").stdout
    finally:
        stamp.unlink()
