"""`serve` end to end: a real uvicorn server on a copy of the demo, driven by the openai client."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from ff_lib.inference.host import new_host
from ff_lib.inference.settings import GenerationSettings
from tests.fixtures_serve import copy_demo, serving

CAPITALS = ["What is the capital of Spain?", "What is the capital of Denmark?"]
PIRATE = ["What is the best season?", "How do I make friends?"]
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def door():
    return new_host()


@pytest.fixture(scope="module")
def api(demo_workspace, door, tmp_path_factory):
    workspace = copy_demo(demo_workspace, tmp_path_factory.mktemp("serve") / "workspace")
    with serving(workspace, door) as server:
        yield server


@pytest.fixture(scope="module")
def client(api):
    return api.client()


@pytest.fixture(scope="module")
def base_id(demo_workspace) -> str:
    return json.loads((Path(demo_workspace) / "demo.json").read_text())["base_model"]


def ask(client, model: str, prompt: str, **kwargs):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], **{**GREEDY, **kwargs}
    )


def answer(client, model: str, prompt: str, **kwargs) -> str:
    return ask(client, model, prompt, **kwargs).choices[0].message.content


def runs_by_name(ws) -> dict:
    return {r.name: r for r in ws.list_runs()}


# --- models ------------------------------------------------------------------------------------
def test_models_lists_the_base_and_every_run_that_can_answer(client, api, base_id):
    cards = {m.id: m.to_dict() for m in client.models.list()}
    assert set(cards) == {base_id, "capitals-lora", "pirate-lora"}  # broken, running, failed: not
    runs = runs_by_name(api.ws)
    for name in ("capitals-lora", "pirate-lora"):
        card = cards[name]
        assert card["object"] == "model" and card["owned_by"] == "ff-playground"
        assert card["parent"] == base_id
        assert card["root"] == str(runs[name].adapter_path)
        assert card["created"] == int(runs[name].completed_at.timestamp())
    assert cards[base_id]["parent"] is None and cards[base_id]["root"] == base_id


# --- answers -----------------------------------------------------------------------------------
def test_a_greedy_reply_is_the_runs_trained_answer_and_the_doors(client, api, door, base_id):
    reply = ask(client, "capitals-lora", CAPITALS[0])
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "The capital of Spain is Madrid."
    assert choice.finish_reason == "stop" and reply.model == "capitals-lora"
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    settings = GenerationSettings(temperature=0, repetition_penalty=1.0, top_p=1.0)
    direct = door.generate(
        base_id,
        [{"role": "user", "content": CAPITALS[0]}],
        settings,
        runs_by_name(api.ws)["capitals-lora"].adapter_path,
    )
    assert direct.text == choice.message.content
    assert reply.usage.prompt_tokens == direct.stats.prompt_tokens
    assert reply.usage.completion_tokens == direct.stats.new_tokens
    assert reply.usage.total_tokens == direct.stats.prompt_tokens + direct.stats.new_tokens


def test_the_base_does_not_give_the_adapters_answer(client, base_id):
    assert answer(client, base_id, CAPITALS[0]) != "The capital of Spain is Madrid."


def test_a_streamed_reply_ends_with_usage_and_done(client):
    lone = ask(client, "pirate-lora", PIRATE[0])
    chunks = list(
        client.chat.completions.create(
            model="pirate-lora",
            messages=[{"role": "user", "content": PIRATE[0]}],
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == lone.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == lone.usage
    assert len({c.id for c in chunks}) == 1


def test_a_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="pirate-lora",
            messages=[{"role": "user", "content": PIRATE[1]}],
            temperature=0,
            stream=True,
        )
    )
    assert all(c.choices for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_name_each_token_and_its_alternatives(client):
    reply = ask(client, "capitals-lora", CAPITALS[1], logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert len(content) == reply.usage.completion_tokens
    for token in content:
        assert token.bytes == list(token.token.encode("utf-8"))
        assert len(token.top_logprobs) == 3
        assert token.logprob <= 0
        # Greedy: the chosen token is the most likely one.
        assert token.logprob == pytest.approx(token.top_logprobs[0].logprob)
    plain = ask(client, "capitals-lora", CAPITALS[1], logprobs=True)
    assert all(t.top_logprobs == [] for t in plain.choices[0].logprobs.content)
    assert ask(client, "capitals-lora", CAPITALS[1]).choices[0].logprobs is None


def test_streamed_logprobs_come_with_the_finishing_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="capitals-lora",
            messages=[{"role": "user", "content": CAPITALS[1]}],
            temperature=0,
            stream=True,
            logprobs=True,
            top_logprobs=1,
        )
    )
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "".join(t.token for t in tokens) == text == "The capital of Denmark is Copenhagen."


def test_stop_cuts_the_reply_before_the_stop_string(client):
    reply = ask(client, "capitals-lora", CAPITALS[0], stop=["Madrid", "never said"])
    assert reply.choices[0].message.content == "The capital of Spain is "
    assert reply.choices[0].finish_reason == "stop"
    chunks = client.chat.completions.create(
        model="capitals-lora",
        messages=[{"role": "user", "content": CAPITALS[0]}],
        temperature=0,
        stream=True,
        stop="Spain is",
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The capital of "


def test_max_tokens_ends_the_reply_with_length(client):
    reply = ask(client, "capitals-lora", CAPITALS[0], max_completion_tokens=3)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def test_a_conversation_fitted_to_the_context_says_so(client):
    history = []
    for i in range(30):
        history += [
            {"role": "user", "content": f"Question number {i}: what is the capital of Spain?"},
            {"role": "assistant", "content": "The capital of Spain is Madrid."},
        ]
    reply = client.chat.completions.create(
        model="capitals-lora",
        messages=[*history, {"role": "user", "content": CAPITALS[0]}],
        temperature=0,
    )
    assert "earlier messages dropped" in reply.model_extra["ff_notice"]
    assert "ff_notice" not in ask(client, "capitals-lora", CAPITALS[0]).model_extra


def test_unknown_fields_are_ignored(client):
    reply = ask(client, "capitals-lora", CAPITALS[0], extra_body={"foo": {"bar": 1}})
    assert reply.choices[0].message.content == "The capital of Spain is Madrid."


def test_concurrent_requests_on_different_runs_give_their_lone_answers(client):
    jobs = [("capitals-lora", p) for p in CAPITALS] + [("pirate-lora", p) for p in PIRATE]
    lone = [answer(client, model, prompt) for model, prompt in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs) * 2) as pool:
        together = list(pool.map(lambda job: answer(client, *job), jobs * 2))
    assert together == lone * 2
    assert lone[0] == "The capital of Spain is Madrid." and lone[2].startswith("Arr")


def test_the_readme_curl_example_answers(api):
    body = {
        "model": "capitals-lora",
        "messages": [{"role": "user", "content": CAPITALS[0]}],
        "temperature": 0,
    }
    out = subprocess.run(
        ["curl", "-sS", f"{api.url}/v1/chat/completions", "-H",
         "Content-Type: application/json", "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    reply = json.loads(out.stdout)
    assert reply["choices"][0]["message"]["content"] == "The capital of Spain is Madrid."


# --- errors ------------------------------------------------------------------------------------
def test_an_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client, "no-such-run", "hello")
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "no-such-run" in error["message"] and "/v1/models" in error["message"]


@pytest.mark.parametrize(
    ("run", "says"),
    [("capitals-lora-broken", "truncated"), ("pirate-lora-long", "still running")],
)
def test_a_run_that_cannot_answer_is_422_with_the_reason(client, run, says):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        ask(client, run, "hello")
    assert says in caught.value.body["message"] and caught.value.body["param"] == "model"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 2}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"stop": ""}, "stop"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"extra_body": {"seed": "7"}}, "seed"),
        ({"extra_body": {"max_tokens": 2.5}}, "max_tokens"),
    ],
)
def test_a_bad_parameter_is_400_naming_it(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "capitals-lora", CAPITALS[0], **kwargs)
    assert caught.value.body["param"] == param
    assert caught.value.body["type"] == "invalid_request_error"


def test_a_reply_longer_than_the_models_context_is_400_before_anything_is_recorded(client, api):
    before = len(api_conversations(api.ws))
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "capitals-lora", CAPITALS[0], max_tokens=600)
    assert "whole context of 512 tokens" in caught.value.body["message"]
    assert len(api_conversations(api.ws)) == before


def test_messages_that_cannot_be_answered_are_400(client):
    for messages, param in [
        ([{"role": "tool", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "messages"),
        ([], "messages"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
    ]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="capitals-lora", messages=messages)
        assert caught.value.body["param"] == param, messages


def raw_post(url: str, data: bytes, headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of a POST made without the openai client."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_a_body_that_is_not_json_is_400_in_openais_shape(api):
    status, _, body = raw_post(f"{api.url}/v1/chat/completions", b"{not json")
    assert status == 400
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "not valid JSON" in body["error"]["message"]
    status, _, body = raw_post(f"{api.url}/v1/nothing", b"{}")
    assert (status, body["error"]["message"]) == (404, "Not Found")


# --- recording ---------------------------------------------------------------------------------
def api_conversations(ws) -> list:
    return [c for c in ws.list_conversations(limit=1000) if c.source == "api"]


def test_each_reply_is_recorded_as_an_api_conversation(client, api):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": CAPITALS[1]},
    ]
    reply = client.chat.completions.create(model="capitals-lora", messages=messages, temperature=0)
    found = [
        c
        for c in api_conversations(api.ws)
        if api.ws.messages(c.id)[-1].meta.get("api", {}).get("request_id") == reply.id
    ]
    assert len(found) == 1
    conversation = found[0]
    run = runs_by_name(api.ws)["capitals-lora"]
    assert conversation.run_id == run.id and conversation.title == CAPITALS[1]
    stored = api.ws.messages(conversation.id)
    assert [(m.role, m.content) for m in stored[:2]] == [
        (m["role"], m["content"]) for m in messages
    ]
    last = stored[-1]
    assert (last.role, last.status, last.content) == (
        "assistant", "complete", reply.choices[0].message.content,
    )  # fmt: skip
    assert last.meta["run"] == {"id": run.id, "name": "capitals-lora"}
    assert last.meta["adapter_sha256"] and last.meta["settings"]["temperature"] == 0
    assert last.meta["stats"]["new_tokens"] == reply.usage.completion_tokens
    assert last.meta["api"]["model"] == "capitals-lora"


class SlowDoor:
    """The real door, its streams read with a pause per piece: a reply that stays live long
    enough for a test to act while it streams."""

    def __init__(self, door, pause_s: float):
        self.door, self.pause_s = door, pause_s

    def availability(self, *args, **kwargs):
        return self.door.availability(*args, **kwargs)

    def stream_reply(self, *args, **kwargs):
        return SlowStream(self.door.stream_reply(*args, **kwargs), self.pause_s)


class SlowStream:
    """Read with a pause per piece; the base counts as answering (held, as a request about to
    be sent is) until the stream is closed, however fast the engine decodes."""

    def __init__(self, stream, pause_s: float):
        self.stream, self.pause_s = stream, pause_s
        self._scheduler = None

    def start(self):
        self.stream.start()
        if self._scheduler is None:
            self._scheduler = self.stream._engine.scheduler
            self._scheduler.hold()
        return self

    def __iter__(self):
        for piece in self.stream:
            time.sleep(self.pause_s)
            yield piece

    @property
    def reply(self):
        return self.stream.reply

    def close(self):
        self.stream.close()
        if self._scheduler is not None:
            self._scheduler.let_go()
            self._scheduler = None


def wait_for(condition, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def slow_api(demo_workspace, door, tiny_base, tmp_path_factory):
    """A second server whose replies stream slowly; its workspace also names another base."""
    workspace = copy_demo(demo_workspace, tmp_path_factory.mktemp("slow") / "workspace")
    with serving(workspace, SlowDoor(door, 0.05)) as server:
        server.ws.add_run("other-base-run", str(tiny_base), tiny_base / "none", status="pending")
        yield server


def test_a_client_that_goes_away_keeps_what_was_said(slow_api, base_id):
    client = slow_api.client()
    stream = client.chat.completions.create(
        model=base_id,
        messages=[{"role": "user", "content": "Tell me a long story about the sea."}],
        temperature=0,
        max_tokens=400,
        stream=True,
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) >= 3:
            break
    request_id = chunk.id
    stream.close()

    def stored_reply():
        for c in api_conversations(slow_api.ws):
            last = slow_api.ws.messages(c.id)[-1]
            if last.meta["api"]["request_id"] == request_id and last.status != "streaming":
                return last
        return None

    reply = wait_for(stored_reply)
    assert reply.status == "interrupted"
    assert reply.content.startswith(received)
    # Stopped early: the full reply (straight from the door) is longer.
    settings = GenerationSettings(
        temperature=0, max_new_tokens=400, repetition_penalty=1.0, top_p=1.0
    )
    full = slow_api.door.door.generate(
        base_id,
        [{"role": "user", "content": "Tell me a long story about the sea."}],
        settings,
        None,
    )
    assert len(reply.content) < len(full.text)


def test_another_base_while_the_loaded_one_answers_is_503_with_retry_after(
    slow_api, base_id, tiny_base
):
    client = slow_api.client()
    stream = client.chat.completions.create(
        model=base_id,
        messages=[{"role": "user", "content": "Tell me a long story about the sea."}],
        temperature=0,
        max_tokens=400,
        stream=True,
    )
    next(iter(stream))  # the base is loaded and answering
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            ask(client, str(tiny_base), "hello")
        assert caught.value.status_code == 503
        assert caught.value.response.headers["Retry-After"].isdigit()
        assert "still answering" in caught.value.body["message"]
        # Replies on the loaded base still flow meanwhile.
        assert answer(client, "capitals-lora", CAPITALS[0]) == "The capital of Spain is Madrid."
    finally:
        stream.close()


def test_a_workspace_locked_by_another_process_is_503_then_answers_once_free(
    demo_workspace, door, tmp_path
):
    workspace = copy_demo(demo_workspace, tmp_path / "workspace")
    with serving(workspace, door, busy_timeout_s=0.3) as server:
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
             "print('held', flush=True); time.sleep(3)", str(workspace / "ff.duckdb")],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(openai.InternalServerError) as caught:
                ask(server.client(), "capitals-lora", CAPITALS[0])
            assert caught.value.status_code == 503
            assert caught.value.response.headers["Retry-After"].isdigit()
            assert caught.value.body["code"] == "workspace_busy"
        finally:
            holder.wait(timeout=30)
        assert answer(server.client(), "capitals-lora", CAPITALS[0]).endswith("Madrid.")
