"""AppTest: "Compare with" on the Inference page, driven by its label on the demo: every side in
its column and stored with its provenance, refused choices, and older compared replies."""

from pathlib import Path

import pytest

from ff_lib.chat import export_jsonl, export_text
from ff_lib.data import Workspace
from ff_lib.inference import get_host
from ff_lib.ui import state
from tests.apptest_helpers import (
    FULL_CHAT,
    GOOD_RUN,
    INFERENCE,
    by_label,
    deterministic,
    generate,
    page_text,
    private_copy,
    run_id,
    run_named,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_app_replies import stored_conversation

pytestmark = pytest.mark.slow

OTHER_RUN = "pirate-lora"
BROKEN = "capitals-lora-broken"


@pytest.fixture(scope="module")
def app_workspace(demo_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "compare")


@pytest.fixture
def ws_env(app_workspace, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(app_workspace))
    return app_workspace


def compare_box(at):
    return by_label(at.multiselect, "Compare with")


def test_compare_with_the_base_and_another_run_answers_in_three_columns(ws_env):
    at = deterministic(select_run(start(INFERENCE), ws_env, GOOD_RUN), max_new_tokens=24)
    box = compare_box(at)
    other = run_id(ws_env, OTHER_RUN)
    assert box.options[0].startswith("base model")
    own = f"{GOOD_RUN} (run {run_id(ws_env, GOOD_RUN)})"
    assert not any(own in o for o in box.options)  # the run itself is the first column
    box.set_value(["base", other]).run()
    engine = get_host()._engine
    if engine is not None:  # shared by the tests of this process: count this Generate only
        engine.scheduler.max_batch_seen = 0
    generate(at, "What is the capital of France?")
    assert get_host()._engine.scheduler.max_batch_seen >= 3  # the three sides in one batch

    reply = at.session_state[state.CHAT_MESSAGES][-1]
    sides = reply.meta["compare_replies"]
    assert [(s["label"], s["run_id"], s["status"]) for s in sides] == [
        ("base model", None, "complete"),
        (OTHER_RUN, other, "complete"),
    ]
    assert sides[1]["adapter"].endswith("adapter") and sides[0]["adapter"] is None
    assert sides[1]["meta"]["stats"]["new_tokens"] > 0
    stored = Workspace.open(ws_env).messages(at.session_state[state.CHAT_CONVERSATION_ID])[-1]
    assert stored.meta["compare_replies"] == sides
    text = page_text(at)
    assert f"**{GOOD_RUN}**" in text and f"**{OTHER_RUN}**" in text and "**base model**" in text
    assert "<mark>" in text  # the pirate's words differ from the first column

    history = at.session_state[state.CHAT_MESSAGES]
    exported = export_text(history)
    assert "Base model response:" in exported and f"{OTHER_RUN} response:" in exported
    line = export_jsonl(history).decode().splitlines()[-1]
    assert f'"run_id": {other}' in line

    at.switch_page(FULL_CHAT).run()
    assert not at.exception, at.exception
    assert f"**{OTHER_RUN}**" in page_text(at)


def test_a_run_that_cannot_answer_is_marked_and_not_kept(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    broken = run_id(ws_env, BROKEN)
    box = compare_box(at)
    label = next(o for o in box.options if BROKEN in o)
    assert label.startswith("✗") and "truncated" in label
    box.set_value([broken]).run()
    assert compare_box(at).value == []
    assert f"Cannot compare with run {broken}" in page_text(at)


def test_older_base_reply_messages_still_render_beside_the_reply(ws_env):
    base = {"text": "Lyon", "status": "complete", "adapter": None,
            "stats": {"new_tokens": 1, "tokens_per_s": 5.0}}  # fmt: skip
    cid = stored_conversation(ws_env, [("Capital?", "Paris", {"base_reply": base})])
    at = start(INFERENCE, query={"c": cid})
    text = page_text(at)
    assert "**base model**" in text and "Lyon" in text and "1 tokens · 5.0 tokens/s" in text


def test_a_checkpoint_answers_in_its_own_column_named_after_it(ws_env):
    at = deterministic(select_run(start(INFERENCE), ws_env, GOOD_RUN), max_new_tokens=16)
    key = f"{run_id(ws_env, GOOD_RUN)}@checkpoint-100"
    box = compare_box(at)
    assert f"{GOOD_RUN} · checkpoint-100" in box.options
    box.set_value(["base", key]).run()
    generate(at, "What is the capital of France?")
    sides = at.session_state[state.CHAT_MESSAGES][-1].meta["compare_replies"]
    registered = run_named(ws_env, f"{GOOD_RUN}-checkpoint-100")
    assert [(s["label"], s["run_id"]) for s in sides] == [
        ("base model", None),
        (f"{GOOD_RUN}-checkpoint-100", registered.id),
    ]
    assert Path(sides[1]["adapter"]).name == "checkpoint-100" and sides[1]["status"] == "complete"
    assert f"**{GOOD_RUN}-checkpoint-100**" in page_text(at)  # the column says which checkpoint
    note = (
        f"registered checkpoint-100 of {GOOD_RUN} as run '{registered.name}' (id {registered.id})"
    )
    assert [t.value for t in at.toast if t.value.startswith("registered ")] == [note]
    assert compare_box(at).value == ["base", key]  # still chosen, not offered twice
    assert not any(f"(run {registered.id})" in o for o in compare_box(at).options)
