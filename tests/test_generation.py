"""Settings, presets, prompts fitted to the context, streaming that stops, figures per reply."""

import dataclasses
import json
import threading
import time

import pytest

from ff_lib.errors import EmptyPrompt, GenerationError, InvalidInput
from ff_lib.inference import (
    DEFAULT_PRESET,
    EMPTY_PROMPT_MESSAGE,
    PRESETS,
    GenerationSettings,
    build_prompt,
)
from tests.fixtures_models import CAPITAL_PAIRS

# The model fixtures (tiny_base, capitals_adapter, host, ...), registered once per session.

GREEDY = PRESETS["Deterministic"]


def user(text):
    return [{"role": "user", "content": text}]


def workers() -> list[threading.Thread]:
    """Threads started per reply (the engine has one worker per base, none per reply)."""
    return [t for t in threading.enumerate() if t.name.startswith("ff-generate")]


def live_rows(host) -> int:
    return host._engine.scheduler.live if host._engine else 0


# --- settings and presets ---------------------------------------------------------------------
def test_presets_match_the_design():
    table = {
        name: (s.temperature, s.max_new_tokens, s.repetition_penalty, s.top_p)
        for name, s in PRESETS.items()
    }
    assert table == {
        "Deterministic": (0.0, 128, 1.2, 0.9),
        "Balanced": (0.7, 256, 1.15, 0.9),
        "Creative": (1.0, 512, 1.1, 0.9),
    }
    assert DEFAULT_PRESET == "Balanced"
    assert PRESETS["Balanced"] == GenerationSettings()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": 3}, "Temperature must be between 0 and 2 (got 3)."),
        ({"temperature": -0.1}, "Temperature must be between 0 and 2 (got -0.1)."),
        ({"max_new_tokens": 0}, "Max new tokens must be between 1 and 4096 (got 0)."),
        ({"max_new_tokens": 5000}, "Max new tokens must be between 1 and 4096 (got 5000)."),
        ({"max_new_tokens": 1.5}, "Max new tokens must be a whole number (got 1.5)."),
        ({"repetition_penalty": 0.9}, "Repetition penalty must be between 1 and 2 (got 0.9)."),
        ({"top_p": 0}, "Top-p must be above 0 and at most 1 (got 0)."),
        ({"top_p": 1.5}, "Top-p must be between 0 and 1 (got 1.5)."),
        ({"top_k": -1}, "Top-k must be at least 0 (got -1)."),
        ({"seed": "7"}, "Seed must be a whole number (got '7')."),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(change, message):
    with pytest.raises(InvalidInput) as err:
        dataclasses.replace(GenerationSettings(), **change)
    assert str(err.value) == message


def test_settings_are_hashable_cache_keys():
    assert hash(PRESETS["Creative"]) == hash(dataclasses.replace(PRESETS["Creative"]))


# --- prompts ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizers(tiny_base, no_template_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base), AutoTokenizer.from_pretrained(no_template_base)


def test_empty_prompt_is_refused(tokenizers, host, tiny_base):
    for messages in (user("   "), [], [{"role": "assistant", "content": "hi"}]):
        with pytest.raises(EmptyPrompt) as err:
            build_prompt(tokenizers[0], messages)
        assert str(err.value) == EMPTY_PROMPT_MESSAGE
    with pytest.raises(EmptyPrompt, match="Prompt is empty: type a question or pick a sample"):
        host.stream_reply(str(tiny_base), user(""), GREEDY, None)


def test_chat_template_puts_the_system_prompt_first(tokenizers):
    built = build_prompt(tokenizers[0], user("Hello?"), system_prompt="Be brief.")
    assert built.template == "chat_template"
    assert built.text.index("Be brief.") < built.text.index("Hello?")
    assert built.text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_a_tokenizer_without_template_gets_a_transcript(tokenizers):
    history = [*user("Hi"), {"role": "assistant", "content": "Hello."}, *user("Bye?")]
    built = build_prompt(tokenizers[1], history, system_prompt="Be kind.")
    assert built.template == "transcript"
    assert built.text == "System: Be kind.\nUser: Hi\nAssistant: Hello.\nUser: Bye?\nAssistant:"


def test_old_turns_are_dropped_to_fit_the_context(tokenizers):
    turns = []
    for i in range(12):
        turns += [
            *user(f"Question number {i} about France?"),
            {"role": "assistant", "content": "Paris."},
        ]
    turns += user("What is the capital of Peru?")
    built = build_prompt(
        tokenizers[0], turns, system_prompt="Sys.", context_length=128, max_new_tokens=32
    )
    assert len(built.input_ids) <= 128 - 32
    assert built.dropped_turns > 0 and built.dropped_turns % 2 == 0
    assert "Sys." in built.text and "What is the capital of Peru?" in built.text
    assert "Question number 0 " not in built.text and "Question number 11 " in built.text
    assert built.truncated_tokens == 0


def test_a_last_turn_too_long_is_cut_from_the_left(tokenizers):
    long = " ".join(f"word{i}" for i in range(200)) + " What is the capital of Peru?"
    built = build_prompt(tokenizers[0], user(long), context_length=64, max_new_tokens=16)
    assert len(built.input_ids) <= 48
    assert built.truncated_tokens > 0
    assert "capital of Peru?" in built.text and "word0 " not in built.text


def test_prompts_tokenized_together_are_the_prompts_built_one_by_one(tokenizers, monkeypatch):
    from ff_lib.inference.prompts import encoded_together

    long = " ".join(f"word{i}" for i in range(200)) + " What is the capital of Peru?"
    history = [*user("Hi"), {"role": "assistant", "content": "Hello."}, *user("Bye?")]
    cases = [(user("Hello?"), "Be brief."), (history, ""), (user(long), ""), (user("Hi"), "")]
    for tokenizer in tokenizers:  # a chat template, and a transcript
        alone = [
            build_prompt(tokenizer, m, system_prompt=s, context_length=64, max_new_tokens=16)
            for m, s in cases
        ]
        calls = []
        real = type(tokenizer).__call__
        monkeypatch.setattr(
            type(tokenizer),
            "__call__",
            lambda self, text, calls=calls, real=real, **kw: (
                calls.append(text) or real(self, text, **kw)
            ),
        )
        with encoded_together(tokenizer, cases):
            together = [
                build_prompt(tokenizer, m, system_prompt=s, context_length=64, max_new_tokens=16)
                for m, s in cases
            ]
        monkeypatch.undo()
        assert together == alone
        assert isinstance(calls[0], list) and len(calls[0]) == len(cases)  # one call for all
        # only the prompt cut to fit tokenized anything more (its frame, content and tries)
        assert alone[2].truncated_tokens > 0 and calls[1:]
        assert not {alone[i].text for i in (0, 1, 3)} & set(calls[1:])


def test_max_new_tokens_beyond_the_context_is_refused(tokenizers):
    with pytest.raises(
        InvalidInput, match=r"Max new tokens \(100\) is more than the model's whole context of 64"
    ):
        build_prompt(tokenizers[0], user("hi"), context_length=64, max_new_tokens=100)


# --- replies ----------------------------------------------------------------------------------
def test_deterministic_is_repeatable_and_sampling_records_its_seed(host, tiny_base):
    short = dataclasses.replace(GREEDY, max_new_tokens=32)
    first = host.generate(str(tiny_base), user("Tell me a story."), short, None)
    second = host.generate(str(tiny_base), user("Tell me a story."), short, None)
    assert first.text == second.text and first.text
    assert first.seed is None

    sampled = dataclasses.replace(PRESETS["Creative"], max_new_tokens=24)
    a = host.generate(str(tiny_base), user("Tell me a story."), sampled, None)
    assert isinstance(a.seed, int)
    again = dataclasses.replace(sampled, seed=a.seed)
    b = host.generate(str(tiny_base), user("Tell me a story."), again, None)
    assert b.text == a.text and b.seed == a.seed


def test_streamed_pieces_join_to_the_reply(host, tiny_base, capitals_adapter):
    question, answer = CAPITAL_PAIRS[4]
    stream = host.stream_reply(str(tiny_base), user(question), GREEDY, capitals_adapter)
    pieces = list(stream)
    assert len(pieces) > 1
    reply = stream.reply
    assert "".join(pieces) == reply.text == answer
    again = host.generate(str(tiny_base), user(question), GREEDY, capitals_adapter)
    assert again.text == reply.text

    assert reply.adapter == str(capitals_adapter)
    assert reply.template == "chat_template" and question in reply.prompt_text
    assert (reply.stopped, reply.finish_reason, reply.dropped_turns) == (False, "eos", 0)
    s = reply.stats
    assert s.prompt_tokens == len(
        host.load_base(str(tiny_base)).tokenizer(reply.prompt_text, add_special_tokens=False)[
            "input_ids"
        ]
    )
    assert s.new_tokens == len(
        host.load_base(str(tiny_base)).tokenizer(answer, add_special_tokens=False)["input_ids"]
    )
    assert 0 <= s.ttft_s <= s.total_s and s.tokens_per_s > 0
    meta = json.loads(json.dumps(reply.as_meta()))
    assert meta["stats"]["new_tokens"] == s.new_tokens
    assert meta["settings"]["temperature"] == 0.0
    assert meta["adapter"] == str(capitals_adapter) and meta["describe"] == "float32 on CPU"


def test_a_stopped_stream_stops_and_joins_its_thread(host, tiny_base):
    long = dataclasses.replace(GREEDY, max_new_tokens=400, repetition_penalty=1.0)
    stream = host.stream_reply(str(tiny_base), user("Tell me everything."), long, None)
    next(stream)
    assert workers() == [] and live_rows(host) == 1
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 2
    assert live_rows(host) == 0
    assert not host.busy
    reply = stream.reply
    assert reply.stopped and reply.finish_reason == "stopped"
    assert reply.stats.new_tokens < 400


def test_an_abandoned_stream_does_not_leave_a_thread(host, tiny_base):
    long = dataclasses.replace(GREEDY, max_new_tokens=400, repetition_penalty=1.0)
    for piece in host.stream_reply(str(tiny_base), user("Tell me everything."), long, None):
        assert piece
        break  # the for loop drops the only reference: the generator is closed
    import gc

    gc.collect()
    deadline = time.monotonic() + 5  # the row leaves at the worker's next step
    while live_rows(host) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live_rows(host) == 0
    assert not host.busy


class CompilerError(Exception):
    """Not a RuntimeError: as torch's compiler raises when it gives up."""


@pytest.mark.parametrize("error", [RuntimeError, CompilerError])
def test_an_error_in_the_decoder_reaches_the_reader(tiny_base, error):
    from ff_lib.inference import ModelHost

    fresh = ModelHost()
    engine = fresh.load_base(str(tiny_base))

    def broken(*args, **kwargs):
        raise error("boom")

    # The step fails after the prompt's first token (one step at a time or chained).
    engine.batched.decode = engine.batched.chain_step = broken
    stream = fresh.stream_reply(str(tiny_base), user("hi"), GREEDY, None)
    with pytest.raises(GenerationError, match="Generation failed: boom"):
        list(stream)
    assert live_rows(fresh) == 0
    assert not fresh.busy
    fresh.release()


def test_context_overflow_in_a_conversation_drops_old_turns(host, short_context_base):
    history = []
    for i in range(6):
        history += [
            *user(f"What is the capital of country {i}?"),
            {"role": "assistant", "content": "I do not know."},
        ]
    history += user("What is the capital of Peru?")
    settings = dataclasses.replace(GREEDY, max_new_tokens=16)
    reply = host.generate(str(short_context_base), history, settings, None)
    assert reply.dropped_turns >= 2
    assert reply.stats.prompt_tokens + 16 <= 64
    assert "dropped to fit the model's context" in reply.notice
    assert reply.prompt_text.rstrip().endswith("assistant<|end_header_id|>")


def test_transcript_template_is_reported(host, no_template_base):
    settings = dataclasses.replace(GREEDY, max_new_tokens=8)
    reply = host.generate(str(no_template_base), user("Hello?"), settings, None)
    assert reply.template == "transcript"
    assert reply.prompt_text == "User: Hello?\nAssistant:"


def test_the_context_limit_is_noted_only_on_a_reply_it_cut():
    """A reply limited by the context to 402 of the 448 new tokens asked: said when it ran into
    that limit, not when it ended on its own after 4 tokens."""
    from tests.test_serve_units import make_reply

    limited = dataclasses.replace(
        make_reply("Arr, matey!", "eos"), settings={"max_new_tokens": 448}, max_new_tokens=402
    )
    assert limited.notice == ""
    cut = dataclasses.replace(limited, finish_reason="length")
    assert cut.notice == "Reply limited to 402 new tokens by the model's context."
    assert dataclasses.replace(cut, max_new_tokens=448).notice == ""  # its own limit: no note
