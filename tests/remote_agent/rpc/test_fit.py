"""Fit across devices on a real cluster: the largest context that fits every backend's budget, from
llama-fit-params's per-device figures at two contexts, launched with the split pinned (-ts, --fit
off, never a fall-back to the server's CPU), remembered per (model, devices); a budget too small for
a device's fixed share is refused naming that device, and the model that served keeps serving."""

from __future__ import annotations

import pytest

from tests.testbed.llama import chat_completion

pytestmark = pytest.mark.timeout(120)
BIG = 1 << 20  # above CTX=1024 in the cluster's environment, which would cap the fit


def _fit(cluster, **params):
    with cluster.server.client() as client:
        return client.call("fit.search", params)[1]


def test_the_largest_context_fitting_two_budgets_loads_with_the_split_pinned(cluster, fit_large_model):
    answer = _fit(cluster, model=str(fit_large_model), budgets_mib=[200, 90], ctx_max=BIG)["result"]
    assert answer["status"] == "fits" and answer["state"] == "ready" and answer["tensor_split"] == [200, 90]
    assert answer["ctx"] % 256 == 0 and answer["ctx"] > 4096
    devices = {d["name"]: d for d in answer["devices"]}
    assert [d["endpoint"] for d in answer["devices"]] == cluster.endpoints
    assert all(d["need_mib"] <= d["budget_mib"] for d in answer["devices"])
    # the context-dependent device sets the limit, and it is within a few MiB of its budget
    assert answer["limited_by"] == "RPC0" and devices["RPC0"]["need_mib"] > 190
    status = cluster.status()
    assert status["ctx"] == answer["ctx"] and status["model_path"] == str(fit_large_model)
    started = cluster.server.log_text().rsplit("started llama-server", 1)[1].splitlines()[0]
    assert "--rpc " + ",".join(cluster.endpoints) in started
    assert f"--ctx-size {answer['ctx']}" in started and "--fit off -ts 200,90" in started
    assert chat_completion(cluster.base_url, api_key=cluster.server.api_key(), max_tokens=4)["choices"]

    again = _fit(cluster, model=str(fit_large_model), budgets_mib=[200, 90], ctx_max=BIG)["result"]
    assert again["from_cache"] is True and again["ctx"] == answer["ctx"]


def test_a_budget_below_a_devices_fixed_share_is_refused_naming_it_and_the_old_model_keeps_serving(cluster,
                                                                                                  fit_large_model):
    before = cluster.status()
    reply = _fit(cluster, model=str(fit_large_model), budgets_mib=[100, 60], ctx_max=BIG, fresh=True)
    assert reply["error"]["code"] == "oom"
    message = reply["error"]["message"]
    assert f"RPC1 ({cluster.endpoints[1]}) needs" in message and "budget 60" in message
    assert "which keeps serving" in message
    after = cluster.server.wait_for_state({"ready"}, timeout=20)
    assert after["model_path"] == before["model_path"] and after["ctx"] == before["ctx"]


def test_a_device_left_without_layers_keeps_its_zero_in_the_split(cluster, fit_large_model):
    # 200:40 over 4 layers and the output puts everything on RPC0; llama-fit-params would print this
    # as a bare -ngl (RPC.md fact 15), and replayed that way the split would follow free memory again
    answer = _fit(cluster, model=str(fit_large_model), budgets_mib=[200, 40], ctx_max=BIG)["result"]
    devices = {d["name"]: d for d in answer["devices"]}
    assert answer["status"] == "fits" and devices["RPC1"]["need_mib"] == 0
    started = cluster.server.log_text().rsplit("started llama-server", 1)[1].splitlines()[0]
    assert "--fit off -ts 200,40" in started and cluster.status()["state"] == "ready"


def test_bad_budgets_are_refused_before_anything_stops(cluster):
    for budgets in ([], [0, 10], ["a"], [1.5]):
        reply = _fit(cluster, budgets_mib=budgets)
        assert reply["error"]["code"] == "bad_params" and "budgets_mib" in reply["error"]["message"]
