"""The pod verbs through the real `podtui` entry point, with PODTUI_RUNPOD_API_URL at the double."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.testbed.boot_logs import real_boot_log
from tests.testbed.cli import run_podtui
from tests.testbed.runpod_provider import API_KEY


def test_pods_lists_price_per_pod_and_the_running_total(runpod_env, runpod_double):
    out = run_podtui(runpod_env, "pods")
    assert out.returncode == 0, out.stderr
    # no Runpod pods yet: only this machine's local pod, stopped (it costs nothing)
    assert [line.split()[:4] for line in out.stdout.splitlines()[1:-1]] == [["local", "local", "this", "machine"]]
    assert "STOPPED" in out.stdout and "running: 0 pods, $0.00/hr" in out.stdout
    a = runpod_double.add_pod("llm-a", env={"MODEL": "org/a:Q4_K_M"}, cost=0.69)
    runpod_double.add_pod("llm-b", cost=0.44)
    runpod_double.add_pod("asleep", status="EXITED")
    out = run_podtui(runpod_env, "pods")
    assert out.returncode == 0, out.stderr
    assert "$/HR" in out.stdout and "0.69" in out.stdout and "org/a:Q4_K_M" in out.stdout
    assert "running: 2 pods, $1.13/hr" in out.stdout
    listed = json.loads(run_podtui(runpod_env, "pods", "--json").stdout)
    assert listed["running"] == 2 and listed["running_cost_per_hr"] == pytest.approx(1.13)
    assert {p["id"]: p["cost_per_hr"] for p in listed["pods"]}[a["id"]] == 0.69


@pytest.mark.timeout(120)
def test_launch_json_pins_the_printed_keys_and_reports_progress_on_stderr(
        runpod_env, runpod_double, sshd, tmp_path):
    runpod_double.ssh_host, runpod_double.ssh_port = "127.0.0.1", sshd.port
    runpod_double.boot_log = lambda pod_id: real_boot_log(pod_id, sshd.host_key, tmp_path / "boot")
    awkward = 'say "hi"\nthen ü 🚀'
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA GeForce RTX 4090", "--model", "org/repo:Q4_K_M",
                     "--ctx", "8192", "--engine", "koboldcpp", "--idle-stop", "30", "--volume-gb", "80",
                     "--env", f"GREETING={awkward}", "--json", "--log-timeout", "10")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "RUNNING" and result["ssh"]["port"] == sshd.port
    assert [k["fingerprint"] for k in result["host_keys"]] == [sshd.host_fingerprint]
    events = [json.loads(line)["event"] for line in out.stderr.splitlines() if line.startswith("{")]
    assert events[0] == "create" and events[-1] == "pinned"
    env = runpod_double.pods[result["id"]]["env"]
    assert env["GREETING"] == awkward and env["IDLE_STOP_MINUTES"] == "30" and env["ENGINE"] == "koboldcpp"
    known_hosts = Path(runpod_env["PODTUI_CONFIG_DIR"]) / "known_hosts"
    assert f"podtui-{result['id']} ssh-ed25519" in known_hosts.read_text()
    shown = run_podtui(runpod_env, "hostkey", f"ssh://root@127.0.0.1:{sshd.port}", "--json")
    assert shown.returncode == 0  # the CLI still works with pins present


def test_launch_passes_hf_token_only_from_the_environment_and_never_prints_it(runpod_env, runpod_double):
    runpod_double.public_ssh = False
    env = {**runpod_env, "HF_TOKEN": "hf_SECRET_never_shown_123"}
    out = run_podtui(env, "launch", "--gpu", "NVIDIA A40", "--with-hf-token", "--wait-timeout", "0.5")
    assert out.returncode == 1
    assert "not running with a public SSH port" in out.stderr and "podtui terminate" in out.stderr
    pod_id = next(iter(runpod_double.pods))
    assert runpod_double.pods[pod_id]["env"]["HF_TOKEN"] == "hf_SECRET_never_shown_123"
    assert "hf_SECRET" not in out.stdout + out.stderr
    listed = run_podtui(env, "pods", "--json")
    assert "hf_SECRET" not in listed.stdout and "<set, hidden>" in listed.stdout


def test_a_secret_given_with_env_is_refused_before_anything_is_created(runpod_env, runpod_double):
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--env", "HF_TOKEN=hf_on_the_command_line")
    assert out.returncode == 2
    assert "secret on the command line" in out.stderr and "--with-hf-token" in out.stderr
    assert "hf_on_the_command_line" not in out.stderr and not runpod_double.pods


def test_an_engine_key_given_with_env_is_refused_but_its_opt_out_passes(runpod_env, runpod_double):
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--env", "API_KEY=key_on_the_command_line")
    assert out.returncode == 2 and "secret on the command line" in out.stderr and "API_KEY=none" in out.stderr
    assert "key_on_the_command_line" not in out.stderr and not runpod_double.pods
    runpod_double.public_ssh = False
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--env", "API_KEY=none", "--wait-timeout", "0.5")
    assert "secret on the command line" not in out.stderr
    assert runpod_double.pods[next(iter(runpod_double.pods))]["env"]["API_KEY"] == "none"
    listed = json.loads(run_podtui(runpod_env, "pods", "--json").stdout)
    assert listed["pods"][0]["env"]["API_KEY"] == "none"   # the opt-out is no secret to hide


@pytest.mark.parametrize("model, said", [("org/../x", "'..'"), ("org/repo:", "quant")])
def test_a_model_the_agent_would_refuse_is_refused_before_a_pod_is_billed(runpod_env, runpod_double, model, said):
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--model", model)
    assert out.returncode == 2, out.stderr
    assert "--model:" in out.stderr and said in out.stderr and "before a pod is created" in out.stderr
    assert not runpod_double.pods


def test_stop_resume_and_terminate_which_asks_first(runpod_env, runpod_double):
    pod = runpod_double.add_pod("llm")
    out = run_podtui(runpod_env, "stop", "llm")
    assert out.returncode == 0 and f"pod {pod['id']} (llm): EXITED" in out.stdout
    out = run_podtui(runpod_env, "resume", pod["id"], "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "PROVISIONING"
    out = run_podtui(runpod_env, "terminate", "llm", stdin="n\n")
    assert out.returncode == 2 and "was not terminated" in out.stderr and "Terminate pod" in out.stderr
    out = run_podtui(runpod_env, "terminate", "llm", stdin="")
    assert out.returncode == 2 and pod["id"] in runpod_double.pods and runpod_double.pods[pod["id"]]["status"] != "TERMINATED"
    out = run_podtui(runpod_env, "terminate", "llm", stdin="y\n")
    assert out.returncode == 0 and "terminated" in out.stdout
    runpod_double.add_pod("other")
    out = run_podtui(runpod_env, "terminate", "other", "--yes")
    assert out.returncode == 0
    assert [a for _, a in runpod_double.actions] == ["stop", "start", "terminate", "terminate"]
    out = run_podtui(runpod_env, "stop", "nosuchpod")
    assert out.returncode == 1 and "no pod with id or name 'nosuchpod'" in out.stderr


def test_a_rejected_key_is_named_and_never_shown(runpod_env, runpod_double):
    env = {**runpod_env, "RUNPOD_API_KEY": "rpa_WRONG_never_shown_55"}
    out = run_podtui(env, "pods")
    assert out.returncode == 1 and "API key rejected" in out.stderr and "RUNPOD_API_KEY" in out.stderr
    assert "rpa_WRONG" not in out.stdout + out.stderr


def test_429_then_success_and_malformed_json_through_the_cli(runpod_env, runpod_double):
    runpod_double.inject(429, times=1, retry_after="0")
    out = run_podtui(runpod_env, "pods")
    assert out.returncode == 0 and "rate limit" in out.stderr
    runpod_double.inject(200, malformed=True)
    out = run_podtui(runpod_env, "pods")
    assert out.returncode == 1 and "cannot read" in out.stderr and "Traceback" not in out.stderr


def test_no_key_anywhere_says_where_to_put_one(runpod_env):
    env = {k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}
    out = run_podtui(env, "pods")  # still lists the local pod: no key is a note, not a failure
    assert out.returncode == 0 and "no Runpod API key" in out.stderr and "RUNPOD_API_KEY" in out.stderr
    assert "local" in out.stdout
    out = run_podtui(env, "stop", "somepod")  # a Runpod verb does need the key
    assert out.returncode == 1 and "no Runpod API key" in out.stderr and "RUNPOD_API_KEY" in out.stderr


def test_key_from_podtui_config_warns_when_others_can_read_it(runpod_env, runpod_double):
    env = {k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}
    config = Path(env["PODTUI_CONFIG_DIR"]) / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[runpod]\napi_key = "{API_KEY}"\n')
    config.chmod(0o644)
    out = run_podtui(env, "pods")
    assert out.returncode == 0, out.stderr
    assert f"fix: chmod 600 {config}" in out.stderr and API_KEY not in out.stderr + out.stdout
    config.chmod(0o600)
    assert "chmod" not in run_podtui(env, "pods").stderr


def test_key_from_runpod_cli_config(runpod_env, runpod_double):
    env = {k: v for k, v in runpod_env.items() if k != "RUNPOD_API_KEY"}
    runpod_dir = Path(env["HOME"]) / ".runpod"
    runpod_dir.mkdir(parents=True)
    (runpod_dir / "config.toml").write_text(f'[default]\napi_key = "{API_KEY}"\n')
    (runpod_dir / "config.toml").chmod(0o600)
    out = run_podtui(env, "pods")
    assert out.returncode == 0, out.stderr
    assert runpod_double.requests[-1]["authorized"]


@pytest.mark.parametrize("ctx", ["0", "-5", "8k"])
def test_launch_with_a_ctx_the_agent_refuses_exits_2_before_a_pod_is_created(runpod_env, runpod_double, ctx):
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--model", "org/repo:Q4_K_M", "--ctx", ctx)
    assert out.returncode == 2, out.stderr
    assert 'ctx must be a positive integer or "auto"' in out.stderr
    assert runpod_double.requests_to("POST", "/v2/pods") == [] and not runpod_double.pods


def test_launch_ctx_auto_in_any_case_reaches_the_pod_as_auto(runpod_env, runpod_double):
    runpod_double.public_ssh = False      # the pod never gets a port: launch gives up at once
    out = run_podtui(runpod_env, "launch", "--gpu", "NVIDIA A40", "--model", "org/repo:Q4_K_M",
                     "--ctx", "AUTO", "--wait-timeout", "0.5")
    assert out.returncode == 1
    (pod,) = runpod_double.pods.values()
    assert pod["env"]["CTX"] == "auto"
