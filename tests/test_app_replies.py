"""AppTest: prompts shown as typed, replies as Markdown or raw, blank replies named, the sample's
expected answer dropped once the user types their own prompt."""

from pathlib import Path

import pytest

from ff_lib.data import Workspace
from ff_lib.scoring import score_answer
from ff_lib.ui import state
from tests.apptest_helpers import (
    FULL_CHAT,
    GOOD_RUN,
    INFERENCE,
    by_label,
    page_text,
    private_copy,
    run_id,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow

MARKDOWN_PROMPT = "# not a heading\n*x* and <b>bold</b>"
MARKDOWN_REPLY = "**Paris** is the `capital`"
WHITESPACE_REPLY = "\n" * 128


@pytest.fixture(scope="module")
def app_workspace(demo_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "replies")


@pytest.fixture
def ws_env(app_workspace, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(app_workspace))
    return app_workspace


def stored_conversation(folder, turns: list[tuple[str, str, dict]]) -> str:
    """A conversation of (prompt, reply, reply meta) turns, stored as the pages store them."""
    ws = Workspace.open(folder)
    conv = ws.create_conversation(title="stored")
    for prompt, reply, meta in turns:
        ws.add_message(conv.id, "user", prompt)
        ws.add_message(conv.id, "assistant", reply, meta=meta)
    return conv.id


def shown_text(at) -> list[str]:
    return [t.value for t in at.text]


def shown_markdown(at) -> list[str]:
    return [m.value for m in at.markdown]


@pytest.mark.parametrize("page", [INFERENCE, FULL_CHAT])
def test_prompts_show_as_typed_and_replies_as_markdown_or_raw(ws_env, page):
    cid = stored_conversation(ws_env, [(MARKDOWN_PROMPT, MARKDOWN_REPLY, {})])
    at = start(page, query={"c": cid})
    assert MARKDOWN_PROMPT in shown_text(at)  # st.text: no heading, no italics, no HTML
    assert MARKDOWN_PROMPT not in shown_markdown(at)
    assert MARKDOWN_REPLY in shown_markdown(at)  # rendered as Markdown
    by_label(at.toggle, "Raw text").set_value(True).run()
    assert MARKDOWN_REPLY in shown_text(at)
    assert MARKDOWN_REPLY not in shown_markdown(at)


def test_a_long_prompt_is_folded_until_show_all(ws_env):
    prompt = "\n".join(f"line {i}" for i in range(40))
    cid = stored_conversation(ws_env, [(prompt, "ok", {})])
    at = start(INFERENCE, query={"c": cid})
    first_lines = "\n".join(f"line {i}" for i in range(30))
    assert first_lines in shown_text(at) and prompt not in shown_text(at)
    assert "… 10 more lines" in page_text(at)
    by_label(at.toggle, "Show all 40 lines").set_value(True).run()
    assert prompt in shown_text(at)


@pytest.mark.parametrize("page", [INFERENCE, FULL_CHAT])
def test_a_whitespace_reply_says_so_in_chat_and_compare(ws_env, page):
    base = {"text": "  ", "status": "complete"}
    cid = stored_conversation(ws_env, [("Say nothing", WHITESPACE_REPLY, {"base_reply": base})])
    at = start(page, query={"c": cid})
    text = page_text(at)
    assert "only whitespace: 128 newlines" in text
    assert "only whitespace: 2 spaces" in text  # the base model's side


def test_a_whitespace_answer_in_a_scorecard_says_so(ws_env):
    ws = Workspace.open(ws_env)
    run = run_id(ws_env, GOOD_RUN)
    dataset = ws.list_datasets()[0]
    answers = {"base": "\n\n\n", "run": "Paris"}
    summary = {
        "dataset": {"id": dataset.id, "name": dataset.name},
        "n": 1,
        "preset": "Deterministic",
        "settings": {"seed": 0},
        "models": {"base": {"label": "base model"}, "run": {"label": GOOD_RUN}},
        "means": {k: score_answer(a, "Paris") for k, a in answers.items()},
        "seconds": 1.0,
    }
    row = {
        "prompt": "Capital of France?",
        "expected": "Paris",
        "answers": answers,
        "scores": {k: score_answer(a, "Paris") for k, a in answers.items()},
    }
    card = ws.add_scorecard(run, dataset.id, summary, [row])
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    at.session_state[state.EVAL_SCORECARD_ID] = card.id
    at.run()
    table = at.dataframe[-1].value
    assert list(table["base model"]) == ["(only whitespace: 3 newlines)"]
    assert list(table[GOOD_RUN]) == ["Paris"]


def test_typing_your_own_prompt_drops_the_samples_expected_answer(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    by_label(at.selectbox, "Sample prompts").set_value(0).run()
    sample = at.session_state[state.INF_SAMPLES][0]
    assert "Expected answer" in page_text(at) and sample.response in shown_text(at)
    by_label(at.text_area, "Prompt").input("My own question?").run()
    assert "Expected answer" not in page_text(at)
    assert by_label(at.selectbox, "Sample prompts").value is None
    by_label(at.selectbox, "Sample prompts").set_value(1).run()  # a sample again: shown again
    assert "Expected answer" in page_text(at)


def test_a_chat_reply_shows_its_figures_as_soon_as_it_ends(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    at.switch_page(FULL_CHAT).run()
    at.chat_input[0].set_value("Capital of Spain?").run()  # the chat view does not rerun after
    assert not at.exception, at.exception
    reply = at.chat_message[-1]
    assert reply.name == "assistant"
    assert any("tokens/s" in c.value for c in reply.caption)
