"""RunpodProvider against the REST v2 double: every call, every failure mode, no leaked key."""

from __future__ import annotations

import pytest

from podtui.providers.base import PodNotFound, PodSpec, ProviderError
from podtui.providers.runpod import create_body
from podtui.providers.runpod_api import (ApiKey, ApiKeyRejected, MalformedResponse, RunpodApi,
                                         RunpodUnavailable, check_api_url)
from tests.testbed.runpod_provider import API_KEY, make_provider

AWKWARD_ENV = {
    "ARGS": '--chat-template "chatml" --system \'You are "helpful"\'',
    "MODEL": "org/répo-ü:Q4_K_M",
    "NOTES": "line one\nline two\r\n\ttabbed \\ backslash {\"json\": true} 🚀 日本語",
    "EMPTY": "",
}


def test_list_get_create_stop_resume_terminate(provider, runpod_double):
    existing = runpod_double.add_pod("old", env={"MODEL": "org/repo"})
    assert [p.id for p in provider.list_pods()] == [existing["id"]]
    pod = provider.create_pod(PodSpec(gpu="NVIDIA A40", model="org/repo:Q4_K_M", ctx="8192",
                                      engine="koboldcpp", idle_stop_minutes=30, volume_gb=60))
    assert pod.status == "PROVISIONING" and pod.ssh is None and pod.price_per_hr == 0.44
    body = runpod_double.requests_to("POST", "/v2/pods")[0]["body"]
    # SSH only: the engine (PORT=5002 in env) is reached through the tunnel, never a public mapping
    assert body["ports"] == ["22/tcp"]
    assert body["mounts"] == {"persistent": {"size": 60, "path": "/workspace"}}
    assert body["image"] == "ghcr.io/example/podtui-pod:0.1.0" and body["startSsh"] is True
    assert body["env"] == {"MODEL": "org/repo:Q4_K_M", "CTX": "8192", "ENGINE": "koboldcpp", "PORT": "5002",
                           "IDLE_STOP_MINUTES": "30"}
    assert provider.get_pod(pod.id).status == "STARTING"
    running = provider.get_pod(pod.id)
    assert running.running and running.ssh.host == "203.0.113.7" and running.ssh.port == 40022
    assert provider.cost_per_hr(running) == 0.44
    stopped = provider.stop_pod(pod.id)
    assert stopped.status == "EXITED" and provider.cost_per_hr(stopped) == 0.0 and stopped.ssh is None
    assert provider.resume_pod(pod.id).status == "PROVISIONING"
    provider.terminate_pod(pod.id)
    assert [p.id for p in provider.list_pods()] == [existing["id"]]
    with pytest.raises(PodNotFound):
        provider.get_pod(pod.id)
    assert runpod_double.actions == [(pod.id, "stop"), (pod.id, "start"), (pod.id, "terminate")]
    assert runpod_double.request_violations == []


def test_an_action_the_status_does_not_allow_is_a_plain_conflict(provider, runpod_double):
    pod = runpod_double.add_pod(status="EXITED")
    with pytest.raises(ProviderError, match="not possible in the pod's current state"):
        provider.stop_pod(pod["id"])


def test_env_with_quotes_newlines_and_unicode_round_trips_unchanged(provider, runpod_double):
    spec = PodSpec(gpu="NVIDIA A40", model=AWKWARD_ENV["MODEL"], args=AWKWARD_ENV["ARGS"],
                   extra_env={"NOTES": AWKWARD_ENV["NOTES"], "EMPTY": ""}, hf_token="hf_x")
    pod = provider.create_pod(spec)
    assert runpod_double.request_violations == []
    stored = runpod_double.pods[pod.id]["env"]
    for name, value in AWKWARD_ENV.items():
        assert stored[name] == value
        assert provider.get_pod(pod.id).env[name] == value
    assert stored["HF_TOKEN"] == "hf_x"
    assert "hf_x" not in repr(spec) and "hf_x" not in repr(provider.get_pod(pod.id))
    assert provider.get_pod(pod.id).as_dict()["env"]["HF_TOKEN"] == "<set, hidden>"


def test_network_volume_instead_of_a_persistent_one():
    body = create_body(PodSpec(gpu="g", network_volume_id="vol_1"), "img")
    assert body["mounts"] == {"network": [{"volumeId": "vol_1", "path": "/workspace"}]}


def test_401_says_the_key_was_rejected_without_showing_it(runpod_double):
    provider = make_provider(runpod_double, key="rpa_WRONG_KEY_abcdef123456")
    with pytest.raises(ApiKeyRejected) as caught:
        provider.list_pods()
    assert "API key rejected" in caught.value.title and "RUNPOD_API_KEY" in caught.value.fix
    assert "rpa_WRONG_KEY" not in caught.value.render() and "rpa_WRONG_KEY" not in repr(provider)
    assert len(runpod_double.requests) == 1  # a rejected key is not retried


def test_429_backs_off_honouring_retry_after_then_succeeds(runpod_double):
    waits: list[float] = []
    provider = make_provider(runpod_double, waits=waits)
    runpod_double.add_pod()
    runpod_double.inject(429, times=2, retry_after="1")
    assert len(provider.list_pods()) == 1
    assert waits == [1.0, 1.0]
    assert len(runpod_double.requests_to("GET", "/v2/pods")) == 3


def test_429_that_never_ends_gives_up_in_plain_words(runpod_double):
    provider = make_provider(runpod_double, max_retries=2)
    runpod_double.inject(429, times=10)
    with pytest.raises(RunpodUnavailable, match="kept rate-limiting"):
        provider.list_pods()
    assert len(runpod_double.requests) == 3


def test_5xx_is_retried_then_succeeds(provider, runpod_double):
    runpod_double.inject(503, times=2)
    assert provider.list_pods() == []
    assert len(runpod_double.requests) == 3


def test_5xx_retry_limit(runpod_double):
    provider = make_provider(runpod_double, max_retries=3)
    runpod_double.inject(500, times=100)
    with pytest.raises(RunpodUnavailable, match=r"server error \(HTTP 500\) 4 times"):
        provider.list_pods()
    assert len(runpod_double.requests) == 4


def test_a_5xx_to_a_create_is_never_retried_and_says_it_may_have_taken_effect(provider, runpod_double):
    runpod_double.inject(502, times=1, method="POST")
    with pytest.raises(RunpodUnavailable) as caught:
        provider.create_pod(PodSpec(gpu="NVIDIA GeForce RTX 4090", model="org/repo:Q4_K_M"))
    assert "may still have taken effect" in str(caught.value) and "podtui pods" in caught.value.fix
    assert [r["method"] for r in runpod_double.requests] == ["POST"]  # one try: never a second pod


def test_malformed_json_is_a_clear_error(provider, runpod_double):
    runpod_double.inject(200, malformed=True)
    with pytest.raises(MalformedResponse, match="cannot read"):
        provider.list_pods()


@pytest.mark.timeout(60)
def test_timeouts_are_retried_for_reads_but_never_for_create(runpod_double):
    provider = make_provider(runpod_double, timeout_s=0.5, max_retries=1)
    runpod_double.inject(200, times=2, delay_s=1.5, method="GET")
    with pytest.raises(RunpodUnavailable, match="did not answer within 0.5 s"):
        provider.list_pods()
    assert len(runpod_double.requests_to("GET", "/v2/pods")) == 2
    runpod_double.inject(201, times=1, delay_s=1.5, method="POST")
    with pytest.raises(RunpodUnavailable, match="may still have taken effect"):
        provider.create_pod(PodSpec(gpu="NVIDIA A40"))
    assert len(runpod_double.requests_to("POST", "/v2/pods")) == 1  # no second pod


def test_the_key_never_appears_in_errors_reprs_or_echoed_details(runpod_double):
    provider = make_provider(runpod_double, max_retries=0)
    runpod_double.inject(400, detail=f"bad header Authorization: Bearer {API_KEY}")
    with pytest.raises(ProviderError) as caught:
        provider.list_pods()
    assert API_KEY not in caught.value.render() and "<api key>" in caught.value.render()
    key = ApiKey(API_KEY, "RUNPOD_API_KEY")
    for text in (repr(key), str(key), f"{key}", repr(provider), repr(provider.api), repr(RunpodApi(key, runpod_double.url))):
        assert API_KEY not in text


def test_gpu_catalog_has_memory_and_price(provider):
    gpus = {g.name: g for g in provider.gpu_catalog()}
    assert gpus["NVIDIA GeForce RTX 4090"].memory_gib == 24 and gpus["NVIDIA GeForce RTX 4090"].price_per_hr == 0.69
    assert gpus["NVIDIA A40"].price_per_hr == 0.44


def test_log_tail_and_follow(provider, runpod_double):
    pod = runpod_double.add_pod()
    runpod_double.append_log(pod["id"], "\n".join(f"line {i}" for i in range(10)))
    assert [l.line for l in provider.logs(pod["id"], tail=3)] == ["line 7", "line 8", "line 9"]
    follow = provider.logs(pod["id"], tail=1, follow=True)
    assert next(follow).line == "line 9"
    runpod_double.append_log(pod["id"], "new line")
    assert next(follow).line == "new line"
    follow.close()


def test_ids_and_urls_that_would_misdirect_a_request_are_refused(provider):
    with pytest.raises(ProviderError, match="not a Runpod pod id"):
        provider.get_pod("../account")
    with pytest.raises(ProviderError, match="plain http"):
        check_api_url("http://api.example.com")
    assert check_api_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


def test_a_pod_id_that_would_forge_known_hosts_names_is_refused(provider, runpod_double):
    """The id becomes the known_hosts name podtui-<id>: a list or a pattern would pin other hosts."""
    pod = runpod_double.add_pod("odd")
    original = runpod_double.pods.pop(pod["id"])
    for odd in ("abc,gpu-box.example.com", "x*", "a b", "|1|hashed"):
        runpod_double.pods[odd] = {**original, "id": odd}
        with pytest.raises(MalformedResponse, match="pod id podtui will not use"):
            provider.list_pods()
        del runpod_double.pods[odd]


def test_the_double_really_checks_both_sides_against_the_spec(provider, runpod_double):
    with pytest.raises(ProviderError, match="HTTP 422"):
        provider.api.call("POST", "/v2/pods", body={"name": "x", "image": "i", "gpu": {"id": "g"}, "bogus": 1},
                          idempotent=False)
    assert any("bogus" in v for v in runpod_double.request_violations)
    pod = runpod_double.add_pod()
    del runpod_double.pods[pod["id"]]["cost"]
    provider.get_pod(pod["id"])
    assert any("'cost' is a required property" in v for v in runpod_double.response_violations)
    runpod_double.response_violations.clear()  # the fixture fails any test that leaves one behind
