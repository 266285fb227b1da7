"""`serve`'s pieces without a server: parsing, OpenAI's shapes, stop strings, errors, availability."""

import threading
from dataclasses import dataclass

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from ff_lib import errors
from ff_lib.inference.replies import Reply, ReplyStats
from ff_lib.serve import shapes
from ff_lib.serve.app import _reshaped
from ff_lib.serve.errors import APIError, from_ff_error
from ff_lib.serve.generation import ServedReply
from ff_lib.serve.parsing import DEFAULT_MAX_TOKENS, ChatCompletionRequest, parse_chat

USER = [{"role": "user", "content": "What is the capital of Spain?"}]


def call(**body):
    return parse_chat(
        ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **body})
    )


def refused(**body) -> APIError:
    with pytest.raises(APIError) as caught:
        call(**body)
    assert caught.value.status == 400
    return caught.value


# --- parsing -----------------------------------------------------------------------------------
def test_openai_defaults_become_settings_without_penalty():
    settings = call().settings
    assert settings.temperature == 1.0 and settings.top_p == 1.0
    assert settings.repetition_penalty == 1.0 and settings.max_new_tokens == DEFAULT_MAX_TOKENS
    assert settings.seed is None and settings.system_prompt == ""


def test_request_fields_reach_the_settings():
    parsed = call(temperature=0, top_p=0.5, max_tokens=7, seed=3, top_k=-1, repetition_penalty=1.3)
    s = parsed.settings
    assert (s.temperature, s.top_p, s.max_new_tokens, s.seed, s.top_k) == (0, 0.5, 7, 3, 0)
    assert s.repetition_penalty == 1.3 and not s.sampling
    assert call(max_tokens=7, max_completion_tokens=9).settings.max_new_tokens == 9


def test_stop_logprobs_and_stream_options():
    assert call(stop="x").stops == ("x",) and call(stop=["a", "b"]).stops == ("a", "b")
    assert call().stops == () and call().logprobs is None
    assert call(logprobs=True).logprobs == 0 and call(logprobs=True, top_logprobs=5).logprobs == 5
    streamed = call(stream=True, stream_options={"include_usage": True})
    assert streamed.stream and streamed.include_usage
    assert not call(stream=True).include_usage


def test_messages_become_plain_dicts_and_text_parts_are_joined():
    parsed = call(
        messages=[
            {"role": "system", "content": "Be brief.", "name": "ignored"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ]
    )
    assert parsed.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a\nb"},
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 3}, "n"),
        ({"frequency_penalty": 1.0}, "frequency_penalty"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"max_tokens": 4097}, "max_tokens"),
        ({"messages": [{"role": "developer", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages"),
    ],
)
def test_what_cannot_be_honoured_is_refused_naming_the_field(body, param):
    assert refused(**body).param == param


def test_neutral_values_of_unsupported_fields_are_accepted():
    assert call(n=1, frequency_penalty=0, presence_penalty=0, logit_bias={}, tools=None).stops == ()
    assert call(response_format={"type": "text"}, user="someone", store=False).model == "m"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": "0.5"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"seed": -1}, "seed"),
        ({"stop": 5}, "stop"),
        ({"messages": [{"role": "user"}], "stream": "yes"}, "stream"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
    ],
)
def test_wrong_types_and_ranges_are_400_naming_the_field(body, param):
    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **body})
    error = _reshaped(caught.value.errors())
    assert (error.status, error.param) == (400, param)
    assert error.message.startswith(f"{param}: ")


# --- stop strings ------------------------------------------------------------------------------
@dataclass
class ScriptedStream:
    """A door stream that says `pieces`, then ends with `finish`."""

    pieces: list
    finish: str = "eos"
    reply: Reply | None = None
    closed: bool = False

    said: str = ""

    def __iter__(self):
        for piece in self.pieces:
            self.said += piece
            yield piece
        self.reply = make_reply(self.said, self.finish)

    def close(self):
        """As the door's: the reply is set with what was said, 'stopped'."""
        self.closed = True
        self.reply = make_reply(self.said, "stopped")


def make_reply(text: str, finish: str = "eos", tokens: tuple = ()) -> Reply:
    return Reply(
        text=text,
        stats=ReplyStats(prompt_tokens=11, new_tokens=4, ttft_s=0.01, tokens_per_s=9.0, total_s=1),
        adapter=None, adapter_name=None, base_model="b", quantization="float32",
        describe="float32 on CPU", settings={}, seed=None, prompt_text="p",
        template="chat_template", dropped_turns=0, truncated_tokens=0, max_new_tokens=9,
        stopped=False, finish_reason=finish, tokens=tokens,
    )  # fmt: skip


def serve(pieces, stops, finish="eos"):
    served = ServedReply(ScriptedStream(pieces, finish), tuple(stops), None)
    out = list(served)
    return served, out


def test_a_stop_string_split_across_pieces_is_never_served():
    served, out = serve(["The cap", "ital of Sp", "ain is Ma", "drid", "."], ["Madrid"])
    assert "".join(out) == served.text == "The capital of Spain is "
    assert all("M" not in piece for piece in out)
    assert served.finish_reason == "stop" and served.stop_hit == "Madrid"
    assert served.stream.closed and served.reply.text == "The capital of Spain is "


def test_held_back_text_that_turns_out_not_to_stop_is_served():
    served, out = serve(["The M", "oon", " is ", "Ma"], ["Madrid"])
    assert "".join(out) == "The Moon is Ma" and served.stop_hit is None
    assert served.finish_reason == "stop"  # the model ended (eos)


def test_the_earliest_of_several_stop_strings_wins_and_length_is_kept():
    served, _ = serve(["a b c d"], ["c", "b"])
    assert served.text == "a " and served.stop_hit == "b"
    assert serve(["abc"], ["x"], finish="length")[0].finish_reason == "length"
    assert serve(["abc"], [], finish="length")[0].text == "abc"


# --- OpenAI's shapes, checked with the openai client's own types --------------------------------
TOKENS = (
    {"token": 1, "text": "The", "logprob": -0.1, "top": [["The", -0.1], ["A", -3.0]]},
    {"token": 2, "text": " end", "logprob": -0.2, "top": [[" end", -0.2], [" é", -4.0]]},
    {"token": 3, "text": ".", "logprob": -0.3, "top": [[".", -0.3], ["!", -5.0]]},
)


class Served:
    def __init__(self, text, finish_reason="stop", logprobs=2, stop_hit=None):
        self.text, self.finish_reason, self.logprobs = text, finish_reason, logprobs
        self.stop_hit = stop_hit
        self.reply = make_reply("The end.", tokens=TOKENS)


def test_a_completion_is_a_valid_chat_completion_with_usage_and_logprobs():
    body = shapes.completion("chatcmpl-1", 5, "run", Served("The end", stop_hit="."))
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.content == "The end"
    assert parsed.usage.total_tokens == 15
    content = parsed.choices[0].logprobs.content
    # The '.' after the stop cut is left out.
    assert [t.token for t in content] == ["The", " end"]
    assert content[1].top_logprobs[1].bytes == list(" é".encode())


def test_without_a_stop_string_every_token_is_listed_even_split_characters():
    split = (
        {"token": 1, "text": "\ufffd", "logprob": -0.1, "top": []},
        {"token": 2, "text": "\ufffd", "logprob": -0.2, "top": []},
    )
    assert len(shapes.token_logprobs(split)) == 2  # "é" as two byte tokens: one character
    assert len(shapes.token_logprobs(split, served_chars=1)) == 1


def test_chunks_are_valid_chat_completion_chunks():
    first = shapes.chunk("c", 5, "run", {"role": "assistant", "content": ""}, include_usage=True)
    assert ChatCompletionChunk.model_validate(first).usage is None and "usage" in first
    assert "usage" not in shapes.chunk("c", 5, "run", {"content": "x"})
    final = ChatCompletionChunk.model_validate(
        shapes.final_chunk("c", 5, "run", Served("The end."), False)
    )
    assert final.choices[0].finish_reason == "stop" and len(final.choices[0].logprobs.content) == 3
    usage = ChatCompletionChunk.model_validate(shapes.usage_chunk("c", 5, "run", make_reply("x")))
    assert usage.choices == [] and usage.usage.prompt_tokens == 11
    assert shapes.sse({"a": "é"}) == 'data: {"a": "é"}\n\n' and shapes.DONE == "data: [DONE]\n\n"


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NotFound, 404),
        (errors.InvalidInput, 400),
        (errors.EmptyPrompt, 400),
        (errors.QuantizationError, 400),
        (errors.AdapterInvalid, 422),
        (errors.BaseModelUnavailable, 422),
        (errors.WorkspaceBusy, 503),
        (errors.GenerationError, 500),
        (errors.WorkspaceError, 500),
    ],
)
def test_each_domain_error_has_its_status_and_keeps_its_message(error, status):
    api = from_ff_error(error("what happened: what to do"))
    assert api.status == status and api.message == "what happened: what to do"
    assert set(api.body()["error"]) == {"message", "type", "param", "code"}
    assert ("Retry-After" in api.headers) == (status == 503)


# --- ModelHost.availability --------------------------------------------------------------------
def test_availability_says_when_a_base_is_loading(host, tiny_base):
    assert host.availability(str(tiny_base)) is None
    loading = threading.Event()
    release = threading.Event()

    def hold_the_load_lock():
        with host.lock:  # what a base load holds
            loading.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_load_lock)
    holder.start()
    loading.wait(10)
    try:
        assert "loading" in host.availability(str(tiny_base))
    finally:
        release.set()
        holder.join()
    assert host.availability(str(tiny_base)) is None


def test_availability_unknown_base_fails_like_a_load(host, tmp_path):
    with pytest.raises(errors.BaseModelUnavailable):
        host.availability(str(tmp_path / "missing"))


def test_a_door_without_availability_takes_every_request(host, tiny_base):
    from ff_lib.serve.app import _unavailable

    assert _unavailable(object(), "any-base") is None  # e.g. a remote engine queueing itself
    assert _unavailable(host, str(tiny_base)) is None
