"""`podtui endpoints list|create|update|delete` through the real `podtui` entry point, against the
Runpod REST v2 double (tests/testbed/runpod_serverless.py), which validates every body against
openapi-v2.json. The API key and HF_TOKEN must never appear in anything podtui prints."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest

from podtui.commands.endpoints import ENDPOINT_VERBS
from tests.testbed.cli import run_podtui
from tests.testbed.runpod_provider import API_KEY, TEST_IMAGE

HF_TOKEN = "hf_SECRET_endpoint_token_42"


@pytest.fixture
def env(runpod_env) -> dict:
    return {**runpod_env, "HF_TOKEN": HF_TOKEN}


def podtui(env: dict, *args: str, stdin: str | None = None):
    out = run_podtui(env, *args, stdin=stdin)
    for secret in (API_KEY, HF_TOKEN):
        assert secret not in out.stdout + out.stderr
    return out


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_create_sends_seed_002_settings_and_reads_the_endpoint_back(env, runpod_double):
    out = podtui(env, "endpoints", "create", "chat", "--model", "org/repo:Q4_K_M",
                 "--gpu", "NVIDIA GeForce RTX 4090", "--gpu", "AMPERE_48", "--network-volume", "vol_abc",
                 "--max-concurrency", "8", "--ctx", "8192", "--engine", "koboldcpp", "--env", "GREETING=hé \"x\"",
                 "--with-hf-token", "--json")
    assert out.returncode == 0, out.stderr
    assert runpod_double.request_violations == []
    body = runpod_double.requests_to("POST", "/v2/serverless")[0]["body"]
    assert body["type"] == "QUEUE" and body["image"] == TEST_IMAGE
    assert body["gpu"] == {"pools": ["ADA_24", "AMPERE_48"], "count": 1}   # the type went in as its pool
    assert body["workers"] == {"min": 0, "max": 5, "idleTimeout": 120}
    assert body["scaling"] == {"type": "QUEUE_DELAY", "queueDelay": 15}
    assert body["timeout"] == 600_000 and body["flashboot"] == "FLASHBOOT"   # milliseconds
    assert body["networkVolumes"] == ["vol_abc"]
    assert body["env"] == {"MODE_TO_RUN": "serverless", "MODEL": "org/repo:Q4_K_M", "CTX": "8192",
                           "ENGINE": "koboldcpp", "MAX_CONCURRENCY": "8", "BASE_PATH": "/runpod-volume",
                           "GREETING": "hé \"x\"", "HF_TOKEN": HF_TOKEN}
    result = json.loads(out.stdout)
    assert runpod_double.requests_to("GET", f"/v2/serverless/{result['id']}"), "create did not read back"
    assert result["mismatches"] == [] and result["pools"] == ["ADA_24", "AMPERE_48"]
    assert result["openai_base_url"] == f"https://api.runpod.ai/v2/{result['id']}/openai/v1"
    assert result["env"]["HF_TOKEN"] == "<set, hidden>"
    assert any("pool ADA_24" in note for note in result["notes"])
    assert [e["event"] for e in json_lines(out.stderr)][:2] == ["create", "created"]
    text = podtui(env, "endpoints", "create", "plain", "--model", "org/repo:Q4_K_M", "--gpu", "ada_24",
                  "--no-flashboot", "--workers-max", "2", "--execution-timeout", "30")
    assert text.returncode == 0, text.stderr
    assert "/openai/v1" in text.stdout and "podtui serve" in text.stdout and "FlashBoot off" in text.stdout
    second = runpod_double.requests_to("POST", "/v2/serverless")[1]["body"]
    # HF_TOKEN is set in this shell but, as for `podtui launch`, passed only with --with-hf-token
    assert "HF_TOKEN" not in second["env"] and second["timeout"] == 30_000 and second["flashboot"] == "OFF"
    old = podtui(env, "endpoints", "create", "old-script", "--model", "org/repo:Q4_K_M", "--gpu", "ADA_24",
                 "--no-hf-token")   # the old opt-out still runs: it is the default now
    assert old.returncode == 0, old.stderr
    assert "HF_TOKEN" not in runpod_double.requests_to("POST", "/v2/serverless")[2]["body"]["env"]


def test_create_says_where_runpod_made_the_endpoint_differently(env, runpod_double):
    """SERVERLESS.md §5 #10: Runpod once made GPU endpoints when CPU was asked. Here the double
    makes a CPU endpoint with FlashBoot off for a GPU request with FlashBoot on."""
    def drift(endpoint: dict) -> None:
        endpoint.update(gpu=None, cpu=[{"id": "cpu3c", "vcpuCount": 2, "memory": 4}], flashboot="OFF")
    runpod_double.create_drift = drift
    out = podtui(env, "endpoints", "create", "chat", "--model", "org/repo:Q4_K_M", "--gpu", "ADA_24", "--json")
    assert out.returncode == 1
    result = json.loads(out.stdout)   # the endpoint exists: scripts still get it, with what differs
    fields = {m["field"] for m in result["mismatches"]}
    assert {"gpu.pools", "gpu.count", "cpu", "flashboot"} <= fields
    error = json_lines(out.stderr)[-1]
    assert error["event"] == "error" and error["exit_code"] == 1
    assert "flashboot: asked 'FLASHBOOT', Runpod has 'OFF'" in error["error"]
    assert f"podtui endpoints delete {result['id']}" in error["fix"]


def test_bad_input_is_refused_before_anything_is_created(env, runpod_double):
    runpod_double.gpus.append({"id": "NVIDIA H200 NVL", "name": "H200 NVL", "pool": None, "manufacturer": "NVIDIA",
                               "memory": 141, "secure": True, "community": False,
                               "price": {"secure": 3.0, "community": 0.0}, "maxCount": {"secure": 8, "community": 0}})
    cases = [
        (["--gpu", "NOPE_99"], 2, "neither a serverless pool nor a GPU type"),
        ([], 2, "--gpu is needed"),
        (["--gpu", "NVIDIA H200 NVL"], 2, "does not offer this GPU for serverless"),
        (["--gpu", "ADA_24", "--env", f"HF_TOKEN={HF_TOKEN}"], 2, "secret on the command line"),
        (["--gpu", "ADA_24", "--env", "MODE_TO_RUN=pod"], 2, "podtui's to set"),
        (["--gpu", "ADA_24", "--workers-min", "6"], 2, "above --workers-max"),
        (["--gpu", "ADA_24", "--ctx", "0"], 2, "--ctx"),
        (["--gpu", "ADA_24", "--with-hf-token", "--no-hf-token"], 2, "contradict"),
    ]
    for extra, code, message in cases:
        out = podtui(env, "endpoints", "create", "chat", "--model", "org/repo:Q4_K_M", *extra)
        assert out.returncode == code and message in out.stderr, (extra, out.stderr)
        assert "fix:" in out.stderr and "Traceback" not in out.stderr
    assert "ADA_24 (RTX 4090)" in podtui(env, "endpoints", "create", "x", "--model", "org/r").stderr  # pools listed
    out = podtui(env, "endpoints", "create", "chat", "--model", "not a model!", "--gpu", "ADA_24")
    assert out.returncode == 2 and "--model" in out.stderr
    no_image = {k: v for k, v in env.items() if k != "PODTUI_IMAGE"}
    out = podtui(no_image, "endpoints", "create", "chat", "--model", "org/repo:Q4_K_M", "--gpu", "ADA_24", "--json")
    assert out.returncode == 1 and "PODTUI_IMAGE" in json_lines(out.stderr)[-1]["fix"]
    assert runpod_double.requests_to("POST", "/v2/serverless") == []


def test_list_shows_workers_and_warns_about_max_zero_and_unhealthy_workers(env, runpod_double):
    busy = runpod_double.add_endpoint("busy", workers_max=5)
    asleep = runpod_double.add_endpoint("asleep", workers_max=0)
    runpod_double.set_workers(busy["id"], ["IDLE", "RUNNING", "INITIALIZING", "THROTTLED", ("w9", "UNHEALTHY")])
    out = podtui(env, "endpoints", "list")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "1 idle, 1 running, 1 initializing, 1 throttled, 1 unhealthy" in rows[busy["id"]]
    assert "cold (no workers)" in rows[asleep["id"]] and "0-0" in rows[asleep["id"]]
    assert "$1.10" in rows[busy["id"]]   # price.serverless of ADA_24, per worker-hour
    assert f"podtui endpoints update {asleep['id']} --workers-max" in out.stderr and "7 days" in out.stderr
    assert "crash" not in out.stderr or "not a capacity shortage" in out.stderr
    assert f"podtui endpoints logs {busy['id']} --worker w9" in out.stderr
    listed = json.loads(podtui(env, "endpoints", "list", "--json").stdout)["endpoints"]
    by_name = {e["name"]: e for e in listed}
    assert by_name["busy"]["workers_now"]["summary"] == {"running": 1, "idle": 1, "initializing": 1,
                                                         "throttled": 1, "unhealthy": 1, "total": 5}
    assert by_name["asleep"]["workers"] == {"min": 0, "max": 0} and by_name["asleep"]["warnings"]
    assert by_name["busy"]["pools"] == ["ADA_24"] and by_name["busy"]["idle_timeout_s"] == 5


def test_update_patches_only_what_changed_and_keeps_the_rest_of_the_env(env, runpod_double):
    endpoint = runpod_double.add_endpoint("chat", env={"MODE_TO_RUN": "serverless", "MODEL": "org/a:Q4_K_M",
                                                       "HF_TOKEN": HF_TOKEN, "KEEP": "me"})
    runpod_double.set_workers(endpoint["id"], ["IDLE"])
    out = podtui(env, "endpoints", "update", "chat", "--workers-max", "0", "--idle-timeout", "60",
                 "--model", "org/b:Q8_0", "--unset-env", "KEEP", "--flashboot", "--json")
    assert out.returncode == 0, out.stderr
    assert runpod_double.request_violations == []
    patch = runpod_double.requests_to("PATCH", f"/v2/serverless/{endpoint['id']}")[0]["body"]
    # a PATCH replaces env whole (SERVERLESS.md §4.3): everything else, HF_TOKEN too, is sent back
    assert patch == {"workers": {"max": 0, "idleTimeout": 60}, "flashboot": "FLASHBOOT",
                     "env": {"MODE_TO_RUN": "serverless", "MODEL": "org/b:Q8_0", "HF_TOKEN": HF_TOKEN}}
    result = json.loads(out.stdout)
    assert result["rolls_out_as_workers_cycle"] is True and result["workers"]["max"] == 0
    assert any("roll" in e["detail"] for e in json_lines(out.stderr) if e["event"] == "note")
    listed = json.loads(podtui(env, "endpoints", "list", "--json").stdout)["endpoints"][0]
    assert listed["workers_now"]["workers"][0]["is_stale"] and any("older release" in w for w in listed["warnings"])
    text = podtui(env, "endpoints", "update", endpoint["id"], "--workers-max", "3", "--queue-delay", "4")
    assert text.returncode == 0 and "workers.max 0 → 3" in text.stdout and "roll" not in text.stderr
    nothing = podtui(env, "endpoints", "update", "chat", "--workers-max", "3")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    inverted = podtui(env, "endpoints", "update", "chat", "--workers-min", "4")
    assert inverted.returncode == 2 and "above max 3" in inverted.stderr
    missing = podtui(env, "endpoints", "update", "no-such", "--workers-max", "1", "--json")
    assert missing.returncode == 1 and "podtui endpoints list" in json_lines(missing.stderr)[-1]["fix"]


def test_delete_asks_for_the_typed_name_and_takes_the_bound_template_with_it(env, runpod_double):
    endpoint = runpod_double.add_endpoint("chat")
    template = runpod_double.bound[endpoint["id"]]
    # the double's contract: a template bound to an endpoint cannot be deleted on its own
    refused = httpx.delete(f"{runpod_double.url}/v2/templates/{template}",
                           headers={"Authorization": f"Bearer {API_KEY}"})
    assert refused.status_code == 400 and "bound" in refused.json()["detail"]
    wrong = podtui(env, "endpoints", "delete", "chat", stdin="chatt\n")
    assert wrong.returncode == 2 and "was not deleted" in wrong.stderr and "template bound to it" in wrong.stderr
    assert endpoint["id"] in runpod_double.endpoints
    out = podtui(env, "endpoints", "delete", "chat", stdin="chat\n")
    assert out.returncode == 0, out.stderr
    assert endpoint["id"] not in runpod_double.endpoints and template not in runpod_double.templates
    other = runpod_double.add_endpoint("other")
    out = podtui(env, "endpoints", "delete", other["id"], "--yes", "--json")
    assert json.loads(out.stdout) == {"id": other["id"], "name": "other", "deleted": True,
                                      "bound_template_deleted": True}
    assert runpod_double.requests_to("DELETE", "/v2/serverless/") and runpod_double.templates == {}


def test_the_group_lists_exactly_the_verbs_whose_module_is_installed(env):
    out = podtui(env, "endpoints", "--help")
    assert out.returncode == 0
    listed = {line.split()[0] for line in out.stdout.split("Commands:")[1].splitlines() if line.strip()}
    expected = {verb for verb, module in ENDPOINT_VERBS.items()
                if importlib.util.find_spec(f"podtui.commands.{module}") is not None}
    assert listed == expected and {"list", "create", "update", "delete", "logs"} <= listed
