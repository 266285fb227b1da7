"""The shared history: pairs for the output list, the model's input, titles and figures."""

import pytest

from ff_lib.chat import ChatMessage, model_messages, pairs, reply_figures, title_from


def user(text):
    return ChatMessage("user", text)


def bot(text, status="complete", meta=None):
    return ChatMessage("assistant", text, status=status, meta=meta or {})


def test_pairs_match_prompts_with_replies_newest_last():
    history = [user("a"), bot("A"), user("b"), bot("B")]
    turns = pairs(history)
    assert [(t.prompt.content, t.reply.content) for t in turns] == [("a", "A"), ("b", "B")]


def test_a_prompt_without_reply_stands_alone():
    turns = pairs([user("a"), user("b"), bot("B")])
    assert [(t.prompt.content, t.reply and t.reply.content) for t in turns] == [
        ("a", None),
        ("b", "B"),
    ]
    assert pairs([user("only")])[0].reply is None
    assert pairs([]) == []


def test_model_messages_skip_failed_replies_and_unanswered_prompts():
    history = [user("a"), bot("", status="error"), user("b"), bot("B")]
    assert model_messages(history, "c") == [
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "c"},
    ]


def test_model_messages_keep_the_whole_conversation():
    history = [user("a"), bot("A")]
    assert model_messages(history) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "A"},
    ]


def test_message_rejects_unknown_role_and_status():
    with pytest.raises(ValueError):
        ChatMessage("robot", "x")
    with pytest.raises(ValueError):
        ChatMessage("user", "x", status="done")


def test_title_is_the_first_line_shortened():
    assert title_from("  hello\n world ") == "hello world"
    assert len(title_from("x" * 200)) == 60
    assert title_from("x" * 200).endswith("…")


def test_reply_figures_name_tokens_speed_and_source():
    meta = {
        "adapter": "/w/adapters/a",
        "run": {"id": 1, "name": "demo-run"},
        "stats": {"new_tokens": 12, "tokens_per_s": 30.456, "ttft_s": 0.1234},
    }
    assert reply_figures(meta) == (
        "12 tokens · 30.5 tokens/s · first token 0.12 s · adapter demo-run"
    )
    assert reply_figures({"adapter": None, "stats": {"new_tokens": 3}}) == "3 tokens · base model"
    assert reply_figures({}) == ""


def test_a_reply_cut_by_its_token_limit_says_so_in_its_figures():
    cut = {"adapter": None, "stats": {"new_tokens": 256}, "finish_reason": "length"}
    assert reply_figures(cut) == "256 tokens (max reached) · base model"
    ended = {"adapter": None, "stats": {"new_tokens": 9}, "finish_reason": "eos"}
    assert reply_figures(ended) == "9 tokens · base model"
