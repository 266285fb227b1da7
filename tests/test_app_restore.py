"""A reload, a bookmarked ?c= link or Home's Continue brings back the conversation's setup."""

import json
import shutil
from pathlib import Path

import pytest

from ff_lib.chat import ChatMessage, ensure_conversation, record_message
from ff_lib.chat.restore import conversation_setup
from ff_lib.data import Workspace
from ff_lib.demo import BROKEN_RUN
from ff_lib.ui import state
from tests.apptest_helpers import (
    FULL_CHAT,
    GOOD_RUN,
    INFERENCE,
    READY,
    by_label,
    generate,
    page_text,
    private_copy,
    run_named,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_workspace(demo_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "restore")


@pytest.fixture
def ws_env(app_workspace, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(app_workspace))
    return app_workspace


def reply_meta(run_id: int, name: str, **settings) -> dict:
    return {
        "run": {"id": run_id, "name": name},
        "base_model": "/models/base",
        "settings": {"temperature": 0.0, "max_new_tokens": 48, "repetition_penalty": 1.2,
                     "top_p": 0.9, "top_k": 0, "seed": None, "system_prompt": "", **settings},
    }  # fmt: skip


def test_the_setup_is_the_latest_reply_s_run_and_settings():
    messages = [
        ChatMessage("user", "q1", meta={"run": {"id": 1, "name": "a"}}),
        ChatMessage("assistant", "a1", meta=reply_meta(1, "a")),
        ChatMessage("user", "q2", meta={"run": {"id": 2, "name": "b"}}),
        ChatMessage("assistant", "a2", meta=reply_meta(2, "b", max_new_tokens=128, seed=7)),
    ]
    setup = conversation_setup(messages)
    assert (setup.run_id, setup.run_name, setup.base_model) == (2, "b", "/models/base")
    assert setup.settings.max_new_tokens == 128 and setup.settings.seed == 7
    assert setup.preset == "Deterministic"  # its sampling, with a longer reply

    # The last prompt's reply was never stored: its run still counts, without settings.
    setup = conversation_setup([*messages[:2], messages[2]])
    assert (setup.run_id, setup.base_model, setup.settings) == (2, None, None)
    assert conversation_setup([ChatMessage("user", "hi")]) is None
    # Settings that are not valid settings are not restored (the page keeps its own).
    bad = ChatMessage("assistant", "x", meta=reply_meta(1, "a", temperature=9))
    assert conversation_setup([bad]).settings is None


def answered_conversation(folder: Path) -> tuple[str, int]:
    """A conversation answered by the good run at hand-tuned settings (Deterministic, 48 tokens,
    seed 11); returns its id and the run's id."""
    at = select_run(start(INFERENCE), folder, GOOD_RUN)
    by_label(at.radio, "Preset").set_value("Deterministic").run()
    by_label(at.slider, "Max new tokens").set_value(48).run()
    by_label(at.number_input, "Seed").set_value(11).run()
    generate(at, "What is the capital of France?")
    return at.session_state[state.CHAT_CONVERSATION_ID], run_named(folder, GOOD_RUN).id


def test_a_fresh_session_on_the_link_restores_run_base_and_settings(ws_env):
    cid, good = answered_conversation(ws_env)
    base = run_named(ws_env, GOOD_RUN).base_model

    chat = start(FULL_CHAT, query={"c": cid})
    assert not chat.exception, chat.exception
    assert [s.value for s in chat.success] == [READY]
    assert not any("No validated adapter" in w.value for w in chat.warning)
    assert f"Run **{GOOD_RUN}**" in page_text(chat)
    assert not chat.chat_input[0].disabled
    assert any(GOOD_RUN in t.value for t in chat.toast)

    inference = start(INFERENCE, query={"c": cid})
    assert [s.value for s in inference.success] == [READY]
    assert by_label(inference.selectbox, "Training run").value == good
    assert by_label(inference.text_input, "Base model").value == base
    assert by_label(inference.radio, "Preset").value == "Deterministic"
    assert by_label(inference.slider, "Max new tokens").value == 48
    assert by_label(inference.slider, "Temperature").value == 0.0
    assert by_label(inference.number_input, "Seed").value == 11
    assert not by_label(inference.button, "Generate").disabled


def test_a_run_that_broke_since_turns_red_with_its_reason(ws_env):
    cid, _ = answered_conversation(ws_env)
    # The adapter folder is damaged after the conversation: the restored run is checked again.
    adapter = Path(run_named(ws_env, GOOD_RUN).adapter_path)
    backup = adapter.with_name("adapter-backup")
    shutil.copytree(adapter, backup)
    broken = Path(run_named(ws_env, BROKEN_RUN).adapter_path) / "adapter_model.safetensors"
    shutil.copy2(broken, adapter / "adapter_model.safetensors")
    try:
        chat = start(FULL_CHAT, query={"c": cid})
        assert not chat.success
        assert chat.error and "adapter_model.safetensors" in chat.error[0].value
        assert f"Run **{GOOD_RUN}**" in page_text(chat)
        assert chat.chat_input[0].disabled
    finally:
        shutil.rmtree(adapter)
        shutil.move(backup, adapter)


def test_a_recorded_base_that_no_longer_fits_gives_way_to_the_run_s_base_out_loud(ws_env, tmp_path):
    run = run_named(ws_env, GOOD_RUN)
    # The base the conversation used was replaced by a model of another shape since.
    other = tmp_path / "other-base"
    shutil.copytree(run.base_model, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    ws = Workspace.open(ws_env)
    cid = ensure_conversation(ws, None, "Capital of Peru?", run.id)
    record_message(ws, cid, "user", "Capital of Peru?", meta={"run": {"id": run.id}})
    meta = {**reply_meta(run.id, run.name), "base_model": str(other)}
    record_message(ws, cid, "assistant", "The capital of Peru is Lima.", meta=meta)

    inference = start(INFERENCE, query={"c": cid})
    assert [s.value for s in inference.success] == [READY]
    assert by_label(inference.text_input, "Base model").value == run.base_model
    said = [t.value for t in inference.toast]
    assert any(f"its base {other} is not usable" in t for t in said), said


def test_a_restored_max_new_tokens_beyond_the_bases_context_is_lowered_out_loud(ws_env):
    """A conversation answered elsewhere with 1024 new tokens, opened on the demo's base
    (512 tokens of context): the slider takes 512 and a toast says why."""
    run = run_named(ws_env, GOOD_RUN)
    ws = Workspace.open(ws_env)
    cid = ensure_conversation(ws, None, "Capital of Peru?", run.id)
    record_message(ws, cid, "user", "Capital of Peru?", meta={"run": {"id": run.id}})
    meta = {**reply_meta(run.id, run.name, max_new_tokens=1024), "base_model": run.base_model}
    record_message(ws, cid, "assistant", "The capital of Peru is Lima.", meta=meta)

    inference = start(INFERENCE, query={"c": cid})
    assert not inference.exception, inference.exception
    assert by_label(inference.slider, "Max new tokens").value == 512
    said = [t.value for t in inference.toast]
    assert any("lowered from 1024 to 512" in t for t in said), said
