"""The serverless half of the REST v2 double keeps the spec's contract (openapi-v2.json): bodies
that break a schema get 422 and are recorded, the rules the spec states in prose get their 400s,
templates bound to an endpoint cannot be deleted on their own, and a templateId create merges env."""

from __future__ import annotations

import httpx
import pytest

from tests.testbed.runpod_provider import API_KEY

GOOD = {"name": "chat", "type": "QUEUE", "image": "img:1", "gpu": {"pools": ["ADA_24"]},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4}}


@pytest.fixture
def http(runpod_double):
    with httpx.Client(base_url=runpod_double.url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


def test_request_bodies_are_checked_against_the_spec(http, runpod_double):
    bad = http.post("/v2/serverless", json={**GOOD, "workers": {"max": -1}, "bogus": 1})
    assert bad.status_code == 422 and bad.json()["errors"]
    assert any("CreateEndpointRequest" in v for v in runpod_double.request_violations)
    runpod_double.request_violations.clear()
    for body, detail in [({**GOOD, "cpu": [{"id": "cpu3c", "vcpuCount": 2}]}, "exactly one of gpu or cpu"),
                         ({**GOOD, "gpu": {"pools": ["NOPE_1"]}}, "unknown GPU pool"),
                         ({**GOOD, "gpu": {"pools": ["ADA_24"], "excludedTypes": ["NVIDIA A40"]}}, "excludedTypes"),
                         ({**GOOD, "gpu": {"pools": ["ADA_24"], "allowedCudaVersions": ["12.8"],
                                           "minCudaVersion": "12.1"}}, "mutually exclusive")]:
        answer = http.post("/v2/serverless", json=body)
        assert answer.status_code == 400 and detail in answer.json()["detail"]
    assert http.get("/v2/catalog/gpus", params={"include": "AVAILABILITY"}).status_code == 400
    patch = http.patch("/v2/serverless/nope", json={"workers": {"max": 1}})
    assert patch.status_code == 404
    assert runpod_double.request_violations == [] and runpod_double.endpoints == {}


def test_templates_and_the_template_bound_to_an_endpoint(http, runpod_double):
    made = http.post("/v2/templates", json={"name": "mine", "image": "img:2", "serverless": True,
                                            "env": {"A": "template", "B": "template"}})
    assert made.status_code == 201 and made.json()["startSsh"] is True   # the spec's default
    pod_template = http.post("/v2/templates", json={"name": "pod", "image": "img:3"}).json()
    assert http.post("/v2/serverless", json={**GOOD, "templateId": pod_template["id"]}).status_code == 422
    body = {key: value for key, value in GOOD.items() if key != "image"}
    created = http.post("/v2/serverless", json={**body, "templateId": made.json()["id"], "env": {"B": "body"}})
    assert created.status_code == 201
    endpoint = created.json()
    assert endpoint["image"] == "img:2" and endpoint["env"] == {"A": "template", "B": "body"}
    assert "openai" not in str(endpoint["requestUrls"])   # SERVERLESS.md §4.3: not among requestUrls
    bound = runpod_double.bound[endpoint["id"]]
    assert {t["id"] for t in http.get("/v2/templates").json()["templates"]} == {made.json()["id"],
                                                                                 pod_template["id"], bound}
    assert http.delete(f"/v2/templates/{bound}").status_code == 400
    assert http.delete(f"/v2/templates/{made.json()['id']}").status_code == 204   # resolved once, not bound
    assert http.delete(f"/v2/serverless/{endpoint['id']}").status_code == 204
    assert http.get(f"/v2/templates/{bound}").status_code == 404
    assert runpod_double.request_violations == []


def test_a_patch_of_the_image_makes_running_workers_stale(http, runpod_double):
    endpoint = runpod_double.add_endpoint("chat")
    runpod_double.set_workers(endpoint["id"], ["IDLE"])
    before = http.get(f"/v2/serverless/{endpoint['id']}/workers").json()
    assert before["endpointVersion"] == 1 and before["workers"][0]["isStale"] is False
    assert http.patch(f"/v2/serverless/{endpoint['id']}", json={"image": "img:9"}).status_code == 200
    after = http.get(f"/v2/serverless/{endpoint['id']}/workers").json()
    assert after["endpointVersion"] == 2 and after["workers"][0]["isStale"] is True
