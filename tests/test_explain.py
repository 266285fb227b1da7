"""Why this answer?: a reply teacher-forced under its adapter and the base, token by token."""

from pathlib import Path

import pytest

from ff_lib.data import Workspace
from ff_lib.errors import InvalidInput
from ff_lib.inference import GenerationSettings, get_host
from ff_lib.inference.effect import measure_effect
from ff_lib.inference.explain import (
    BASE_ONLY,
    ReplyExplanation,
    TokenView,
    explain_reply,
    explain_stored,
    unexplainable_reason,
)
from ff_lib.ui.explain import tokens_html
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_effect import zero_b_adapter  # noqa: F401  (session fixture)

GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=32, repetition_penalty=1.0)


def demo_run(folder: Path, name: str):
    return next(r for r in Workspace.open(folder).list_runs() if r.name == name)


def demo_prompts(folder: Path, name: str, n: int = 4) -> list[str]:
    ws = Workspace.open(folder)
    return [p.prompt for p in ws.dataset_pairs(demo_run(folder, name).dataset_id, limit=n)]


def greedy_reply(host, run, prompt: str, adapter=True):
    """A reply as measure_effect decodes it (greedy, no repetition penalty, token ids kept)."""
    messages = [{"role": "user", "content": prompt}]
    adapter_dir = Path(run.adapter_path) if adapter else None
    return host.generate(run.base_model, messages, GREEDY, adapter_dir, logprobs=0)


def store_explained_conversation(folder: Path) -> str:
    """A conversation stored as the pages store it: a capitals-lora reply (messages 1, 2), then
    a reply of the base alone (3, 4). Its id."""
    host, run = get_host(), demo_run(folder, "capitals-lora")
    prompt = demo_prompts(folder, "capitals-lora", 1)[0]
    ws = Workspace.open(folder)
    conv = ws.create_conversation(title="explain me")
    for adapter in (True, False):
        reply = greedy_reply(host, run, prompt, adapter)
        ws.add_message(conv.id, "user", prompt)
        ws.add_message(conv.id, "assistant", reply.text, meta=reply.as_meta())
    return conv.id


@pytest.mark.parametrize("run_name", ["capitals-lora", "pirate-lora"])
def test_changed_share_equals_measure_effect(demo_workspace, run_name):  # noqa: F811
    """The token view and the adapter-effect figure count the same positions the same way."""
    host, run = get_host(), demo_run(demo_workspace, run_name)
    prompts = demo_prompts(demo_workspace, run_name)
    effect = measure_effect(host, run.base_model, Path(run.adapter_path), prompts)
    changed = positions = 0
    for prompt, measured in zip(prompts, effect.per_prompt, strict=True):
        reply = greedy_reply(host, run, prompt)
        assert reply.text == measured.reply
        view = explain_reply(
            host, run.base_model, run.adapter_path, reply.prompt_text, reply.text,
            end_of_turn=reply.finish_reason == "eos",
        )  # fmt: skip
        # The re-encoded reply is the sequence generated, so the counts are the same.
        assert (view.changed, view.positions) == (measured.changed, measured.positions)
        assert view.round_trip
        changed, positions = changed + view.changed, positions + view.positions
    assert round(changed / positions, 4) == effect.changed_token_share
    assert effect.changed_token_share > 0.5  # a trained adapter: far from zero


def test_token_view_of_a_demo_reply(demo_workspace):  # noqa: F811
    host, run = get_host(), demo_run(demo_workspace, "capitals-lora")
    reply = greedy_reply(host, run, demo_prompts(demo_workspace, "capitals-lora", 1)[0])
    assert reply.finish_reason == "eos"
    view = explain_reply(
        host, run.base_model, run.adapter_path, reply.prompt_text, reply.text, end_of_turn=True
    )
    texts = [t.text for t in view.tokens]
    assert "".join(texts[:-1]) == reply.text  # the pieces are the reply, then the end of turn
    assert texts[-1] == host.load_base(run.base_model).tokenizer.decode(
        [host.load_base(run.base_model).eos_token_ids[0]]
    )
    # Teacher-forced log-probabilities are the ones the greedy decode saw.
    generated = [t["logprob"] for t in reply.tokens]
    adapter_side = [t.logprob_adapter for t in view.tokens[: len(generated)]]
    assert adapter_side == pytest.approx(generated, abs=1e-3)
    for t in view.tokens:
        assert len(t.top_adapter) == len(t.top_base) == 5
        assert t.top_adapter[0][1] >= t.logprob_adapter - 1e-4  # the best is at least as likely
        assert t.changed == (t.top_adapter[0][0] != t.top_base[0][0])
    data = view.as_dict()
    assert set(data["tokens"][0]) >= {
        "text", "logprob_adapter", "logprob_base", "top_adapter", "top_base"
    }  # fmt: skip
    assert data["changed_share"] == view.changed_share
    assert f"at {view.changed} of {view.positions} positions" in view.summary()


@pytest.mark.parametrize("text", ["Café ☕ au lait 🌊!", "ends badly \ufffd", "\n\n  spaced  \n"])
def test_token_pieces_join_to_the_reply(demo_workspace, text):  # noqa: F811
    """A character split over byte tokens shows once, with the token that completes it."""
    run = demo_run(demo_workspace, "capitals-lora")
    view = explain_reply(get_host(), run.base_model, run.adapter_path, "User: hi\n", text)
    assert "".join(t.text for t in view.tokens) == text
    assert view.round_trip
    assert view.positions == len(view.tokens) > len(text.split())


def test_an_untrained_adapter_changes_nothing(demo_workspace, zero_b_adapter, tiny_base):  # noqa: F811
    host = get_host()
    prompt_text = "<|begin_of_text|>User: What is the capital of France?\nAssistant:"
    view = explain_reply(host, str(tiny_base), zero_b_adapter, prompt_text, " Paris is nice.")
    assert view.changed_share == 0.0 and view.changed == 0 and view.positions > 0
    assert all(t.logprob_adapter == pytest.approx(t.logprob_base, abs=1e-4) for t in view.tokens)
    assert "at 0 of" in view.summary()


def test_a_base_only_reply_is_refused():
    with pytest.raises(InvalidInput, match="base model alone"):
        explain_reply(get_host(), "any-base", None, "prompt", "reply")


def test_what_cannot_be_explained_says_why():
    meta = {"adapter": "/a", "prompt_text": "p", "base_model": "b"}
    assert unexplainable_reason("assistant", "Paris", "complete", meta) == ""
    assert "user message" in unexplainable_reason("user", "Hi", "complete", meta)
    assert unexplainable_reason("assistant", "Paris", "complete", {**meta, "adapter": None}) == (
        BASE_ONLY
    )
    assert "still being written" in unexplainable_reason("assistant", "Pa", "streaming", meta)
    assert "no text" in unexplainable_reason("assistant", "", "error", meta)
    no_prompt = {"adapter": "/a", "base_model": "b"}
    assert "prompt" in unexplainable_reason("assistant", "Paris", "complete", no_prompt)
    with pytest.raises(InvalidInput, match="user message"):
        explain_stored(get_host(), "user", "Hi", "complete", meta)


def test_a_stored_reply_explains_and_notes_another_quantization(demo_workspace, tmp_path):  # noqa: F811
    import shutil

    folder = tmp_path / "ws"
    shutil.copytree(demo_workspace, folder)
    cid = store_explained_conversation(folder)
    reply = Workspace.open(folder).messages(cid)[1]
    view = explain_stored(get_host(), reply.role, reply.content, reply.status, reply.meta)
    assert view.note == "" and view.positions > 0
    assert view.tokens[-1].text == "<|eot_id|>"  # it ended there: the end of turn is scored
    meta = {**reply.meta, "quantization": "4-bit NF4"}
    view = explain_stored(get_host(), reply.role, reply.content, reply.status, meta)
    assert "generated with it as 4-bit NF4" in view.note


def test_tokens_html_escapes_model_text():
    token = TokenView(
        text='<script>alert("x")</script>',
        logprob_adapter=-0.1,
        logprob_base=-3.0,
        top_adapter=[['<b>"', -0.1]],
        top_base=[["&amp;", -0.5]],
        changed=True,
    )
    weak = TokenView("\n", -2.0, -0.5, [["\n", -0.5]], [["\n", -0.5]], False)
    view = ReplyExplanation((token, weak), 0.5, 1, 2, "float32", True)
    out = tokens_html(view)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<b>" not in out and "&lt;b&gt;" in out and "&amp;amp;" in out
    assert out.count("<span") == 2
    assert "rgba(46, 160, 67" in out  # the adapter made the first token likelier: green
    assert "rgba(218, 54, 51" in out  # and the second less likely: red
    assert "underline dotted" in out  # the base would have picked another first token
