"""The remote engine's parts that need no vLLM server: the gate against vLLM #48421, and what a
server that refuses (capped log-probabilities, a missing API key) makes the playground say."""

import threading

import httpx2
import pytest

from ff_lib.errors import EngineUnreachable, GenerationError
from ff_lib.inference import GenerationSettings
from ff_lib.inference.remote import KindGate, RemoteHost

GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=48, repetition_penalty=1.2)
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def mocked(host: RemoteHost, answer) -> RemoteHost:
    """`host` talking to `answer(request) -> httpx2.Response` instead of a server."""
    old = host.client.http
    host.client.http = httpx2.Client(
        base_url=old.base_url, headers=old.headers, transport=httpx2.MockTransport(answer)
    )
    return host


def test_the_kind_gate_lets_one_kind_in_at_a_time_and_starves_neither():
    gate, lock, seen = KindGate(), threading.Lock(), []
    live = {"base": 0, "adapter": 0}
    hold = {"base": threading.Event(), "adapter": threading.Event()}

    def request(kind):
        with gate.held(kind):
            with lock:
                live[kind] += 1
                seen.append(dict(live))
            hold[kind].wait(10)
            with lock:
                live[kind] -= 1

    def spawn(kind, n):
        threads = [threading.Thread(target=request, args=(kind,)) for _ in range(n)]
        for t in threads:
            t.start()
        return threads

    def settle(check):
        for _ in range(200):
            if check():
                return True
            threading.Event().wait(0.01)
        return False

    threads = spawn("adapter", 3)
    assert settle(lambda: live["adapter"] == 3)  # adapters share the server with each other
    threads += spawn("base", 2)
    threading.Event().wait(0.1)
    assert live["base"] == 0  # the bases wait for the adapters to finish
    threads += spawn("adapter", 1)
    threading.Event().wait(0.1)
    assert live["adapter"] == 3  # a late adapter waits behind the waiting bases: no starvation
    hold["adapter"].set()
    assert settle(lambda: live["base"] == 2)  # the bases' turn: both together
    assert live["adapter"] == 0
    hold["base"].set()
    for t in threads:
        t.join(10)
    assert not any(s["base"] and s["adapter"] for s in seen) and len(seen) == 6


def test_a_server_that_caps_log_probabilities_refuses_effect_with_the_flag_to_set(tmp_path):
    """No server needed: the refusal vLLM gives when --max-logprobs is 20 (its default)."""
    said = "Requested prompt logprobs of 512, which is greater than max allowed: 20"

    def answer(request):
        if request.url.path == "/v1/models":
            data = [{"id": "base", "root": str(tmp_path), "parent": None, "max_model_len": 512}]
            return httpx2.Response(200, json={"data": data})
        return httpx2.Response(400, json={"error": {"message": said, "type": "BadRequestError"}})

    host = mocked(RemoteHost("http://gpu-box:8000/v1"), answer)
    with pytest.raises(GenerationError) as caught:
        host.score(str(tmp_path), [1, 2, 3], [None])
    message = str(caught.value)
    assert said in message and "--max-logprobs -1" in message and "gpu-box:8000" in message


def test_a_missing_or_wrong_api_key_is_named_with_its_fix(tmp_path):
    """No server needed: vLLM started with --api-key answers /health but 401 on /v1/..."""
    key = "sk-right"

    def answer(request):
        if request.url.path == "/health":
            return httpx2.Response(200)
        if request.headers.get("authorization") != f"Bearer {key}":
            return httpx2.Response(401, json={"error": "Unauthorized"})
        data = [{"id": "base", "root": str(tmp_path), "parent": None, "max_model_len": 512}]
        return httpx2.Response(200, json={"object": "list", "data": data})

    keyless = mocked(RemoteHost("http://gpu-box:8000/v1"), answer)
    reason = keyless.availability(str(tmp_path))
    assert "HTTP 401" in reason and "Unauthorized" in reason and "FF_ENGINE_API_KEY" in reason
    assert keyless.info() is None
    with pytest.raises(GenerationError, match="FF_ENGINE_API_KEY"):
        keyless.generate(str(tmp_path), FRANCE, GREEDY, None)
    keyed = mocked(RemoteHost("http://gpu-box:8000/v1", api_key=key), answer)
    assert keyed.availability(str(tmp_path)) is None
    assert keyed.info().base_model == "base" and keyed.info().describe == "vLLM at gpu-box:8000"


def test_a_failed_request_invalidates_the_cached_health_check():
    """The server dies after a health check said it answers: the next look (within HEALTH_TTL_S)
    says it does not answer, not the cached 'ok'."""
    alive = {"now": True}

    def answer(request):
        if not alive["now"]:
            raise httpx2.ConnectError("Connection refused", request=request)
        if request.url.path == "/health":
            return httpx2.Response(200)
        return httpx2.Response(200, json={"object": "list", "data": []})

    host = mocked(RemoteHost("http://127.0.0.1:9/v1"), answer)
    assert host.availability("") is None
    alive["now"] = False
    assert host.availability("") is None  # cached for HEALTH_TTL_S: nothing was asked since
    with pytest.raises(EngineUnreachable):
        host.client.checked("POST", "/v1/chat/completions", "the reply", json={})
    assert "does not answer" in (host.availability("") or "")
