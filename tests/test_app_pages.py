"""AppTest: every control of Home, Inference and Full Chat, driven by its label on the demo."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ff_lib.data import Workspace
from ff_lib.demo import BROKEN_RUN, FAILED_RUN, RUNNING_RUN
from ff_lib.errors import WorkspaceBusy
from ff_lib.inference.prompts import EMPTY_PROMPT_MESSAGE
from ff_lib.ui import state
from tests.apptest_helpers import (
    FULL_CHAT,
    GOOD_RUN,
    HOME,
    INFERENCE,
    READY,
    TIMEOUT,
    by_label,
    deterministic,
    generate,
    page_text,
    private_copy,
    run_id,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_workspace(demo_workspace, tmp_path_factory) -> Path:  # noqa: F811
    """A private copy of the built demo: these tests add conversations to it."""
    return private_copy(demo_workspace, tmp_path_factory, "app")


@pytest.fixture
def ws_env(app_workspace, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(app_workspace))
    return app_workspace


def ready_inference(folder) -> AppTest:
    return deterministic(select_run(start(INFERENCE), folder, GOOD_RUN))


# --- Home ---
def test_home_shows_the_workspace_at_a_glance(ws_env):
    at = start()
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Runs completed"]) >= 2
    assert metrics["Runs running"] == "1"
    assert metrics["Datasets"] == "2"
    runs = at.dataframe[0].value
    assert GOOD_RUN in list(runs["Name"])
    assert "🟢 completed" in list(runs["Status"])
    broken = runs[runs["Name"] == BROKEN_RUN]
    assert broken["Adapter"].iloc[0].startswith("✗")
    assert runs[runs["Name"] == GOOD_RUN]["Adapter"].iloc[0] == "✅ ok"
    # The table cuts a long reason: each completed run that cannot answer is named in full.
    (warning,) = [w.value for w in at.warning if "cannot answer here" in w.value]
    assert BROKEN_RUN.replace("-", "\\-") in warning and "truncated" in warning
    assert "**" + GOOD_RUN.replace("-", "\\-") + "**" not in warning
    assert set(at.dataframe[1].value["Name"]) == {"capitals", "pirate"}
    links = {link.label for link in at.get("page_link")}
    assert {"Inference", "Full Chat"} <= links


def test_home_on_an_empty_workspace_says_how_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(tmp_path / "empty"))
    at = start()
    text = page_text(at)
    assert "python -m ff_lib demo" in text
    assert "python -m ff_lib runs scan DIR" in text
    assert "python -m ff_lib runs add" in text


def test_home_shows_a_busy_workspace_without_a_traceback(ws_env, monkeypatch):
    def busy(self, limit=None):
        raise WorkspaceBusy("workspace is busy: ff.duckdb is locked by another process")

    monkeypatch.setattr(Workspace, "list_runs", busy)
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "workspace is busy" in at.error[0].value


# --- Model & adapter ---
def test_selecting_a_completed_run_validates_and_unlocks(ws_env):
    at = start(INFERENCE)
    assert by_label(at.button, "Generate").disabled  # locked until a run validates
    select_run(at, ws_env, GOOD_RUN)
    assert [s.value for s in at.success] == [READY]
    assert any("adapter validated" in t.value for t in at.toast)
    assert by_label(at.text_input, "Base model").value  # filled from the run
    assert not by_label(at.button, "Generate").disabled
    assert not by_label(at.text_area, "Prompt").disabled
    assert "Adapter `" in page_text(at)  # the meta line names the adapter path


@pytest.mark.parametrize(
    ("run_name", "says"),
    [(BROKEN_RUN, "safetensors"), (RUNNING_RUN, "status: running"), (FAILED_RUN, "status: failed")],
)
def test_unusable_runs_turn_red_and_lock_the_controls(ws_env, run_name, says):
    at = select_run(start(INFERENCE), ws_env, run_name)
    assert at.error, "the status should be red"
    assert at.error[0].value.startswith("Error: ")
    assert says in at.error[0].value
    for label in ("Generate",):
        assert by_label(at.button, label).disabled
    assert by_label(at.text_area, "Prompt").disabled
    assert by_label(at.slider, "Temperature").disabled
    assert by_label(at.radio, "Preset").disabled
    assert by_label(at.selectbox, "Sample prompts").disabled


def test_use_latest_completed_run_picks_a_valid_adapter(ws_env):
    at = start(INFERENCE)
    by_label(at.button, "Use latest completed run").click().run()
    assert [s.value for s in at.success] == [READY]
    chosen = by_label(at.selectbox, "Training run").value
    assert chosen in {run_id(ws_env, "capitals-lora"), run_id(ws_env, "pirate-lora")}


def test_typed_base_model_is_kept_when_a_run_is_chosen(ws_env):
    at = start(INFERENCE)
    by_label(at.text_input, "Base model").input("/nowhere/else").run()
    select_run(at, ws_env, GOOD_RUN)
    assert by_label(at.text_input, "Base model").value == "/nowhere/else"


# --- Prompt & responses ---
def test_preset_sets_the_sliders(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    by_label(at.radio, "Preset").set_value("Creative").run()
    assert by_label(at.slider, "Temperature").value == 1.0
    assert by_label(at.slider, "Max new tokens").value == 512
    by_label(at.radio, "Preset").set_value("Deterministic").run()
    assert by_label(at.slider, "Temperature").value == 0.0
    assert by_label(at.slider, "Max new tokens").value == 128
    assert by_label(at.slider, "Repetition penalty").value == pytest.approx(1.2)


def test_max_new_tokens_stops_at_the_bases_context(ws_env):
    """The demo's base has a 512-token context: no reply can be longer, so the slider ends
    there (at 1024 a reply only failed at Generate)."""
    at = start(INFERENCE)
    before = by_label(at.slider, "Max new tokens")
    assert before.max == 1024 and before.value == 256  # no run yet: the Balanced preset's
    select_run(at, ws_env, GOOD_RUN)
    slider = by_label(at.slider, "Max new tokens")
    assert slider.max == 512 and "At most 512" in slider.help
    assert slider.value == 256  # kept when the top moved (a new widget to Streamlit)


def test_sample_prompts_fill_the_prompt_and_show_the_answer(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    samples = by_label(at.selectbox, "Sample prompts")
    assert len(samples.options) == 5
    samples.set_value(2).run()
    chosen = at.session_state[state.INF_SAMPLES][2]
    assert by_label(at.text_area, "Prompt").value == chosen.prompt
    assert chosen.response in [t.value for t in at.text]
    by_label(at.button, "New samples").click().run()
    assert by_label(at.selectbox, "Sample prompts").value is None
    datasets = by_label(at.selectbox, "Dataset for sample prompts")
    other = [o for o in datasets.options if "pirate" in o]
    assert other
    by_label(at.button, "Refresh datasets").click().run()
    assert not at.exception


def test_empty_prompt_is_refused_with_a_message(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    by_label(at.text_area, "Prompt").input("   ").run()
    by_label(at.button, "Generate").click().run()
    assert EMPTY_PROMPT_MESSAGE in [w.value for w in at.warning]
    assert not at.session_state[state.CHAT_MESSAGES]


def test_generate_streams_a_reply_into_both_views(ws_env):
    at = ready_inference(ws_env)
    generate(at, "What is the capital of France?")
    history = at.session_state[state.CHAT_MESSAGES]
    assert [m.role for m in history] == ["user", "assistant"]
    reply = history[1]
    assert reply.status == "complete" and reply.content
    assert reply.meta["run"]["name"] == GOOD_RUN
    text = page_text(at)
    assert "What is the capital of France?" in text
    assert reply.content.strip() in text
    assert "tokens/s" in text  # the reply's figures
    assert [s.value for s in at.success] == [READY]  # back to rest
    assert not by_label(at.button, "Generate").disabled
    cid = (
        at.query_params["c"][0] if isinstance(at.query_params["c"], list) else at.query_params["c"]
    )
    stored = Workspace.open(ws_env).messages(cid)
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]

    at.switch_page(FULL_CHAT).run()
    bubbles = at.chat_message
    assert [b.name for b in bubbles] == ["user", "assistant"]
    assert bubbles[0].text[0].value == "What is the capital of France?"  # as typed


def test_compare_with_base_model_answers_twice(ws_env):
    at = ready_inference(ws_env)
    by_label(at.multiselect, "Compare with").set_value(["base"]).run()
    generate(at, "What is the capital of Spain?")
    reply = at.session_state[state.CHAT_MESSAGES][-1]
    (base,) = reply.meta["compare_replies"]
    assert base["label"] == "base model" and base["adapter"] is None
    assert "base model" in page_text(at)
    assert base["text"]


def test_full_chat_view_dialog_sends_into_the_shared_list(ws_env):
    at = ready_inference(ws_env)
    by_label(at.button, "Full Chat View").click().run()
    assert at.chat_input, "the dialog's composer"
    at.chat_input[0].set_value("Capital of Italy?").run()
    assert not at.exception, at.exception
    assert [b.name for b in at.chat_message][-2:] == ["user", "assistant"]
    by_label(at.button, "Close").click().run()
    assert not at.chat_input
    assert "Capital of Italy?" in page_text(at)  # a Prompt / Response pair of the list
    assert len(at.session_state[state.CHAT_MESSAGES]) == 2


def test_full_chat_page_send_and_clear(ws_env):
    at = ready_inference(ws_env)
    generate(at, "What is the capital of France?")
    at.switch_page(FULL_CHAT).run()
    assert GOOD_RUN in page_text(at)
    at.chat_input[0].set_value("And of Spain?").run()
    assert not at.exception, at.exception
    assert [b.name for b in at.chat_message] == ["user", "assistant"] * 2
    by_label(at.selectbox, "Export format").set_value("JSONL").run()
    assert by_label(at.get("download_button"), "Export chats")
    at.switch_page(INFERENCE).run()
    assert "And of Spain?" in page_text(at)
    by_label(at.button, "Clear history").click().run()
    assert at.session_state[state.CHAT_MESSAGES] == []
    assert "No prompts yet" in page_text(at)
    at.switch_page(FULL_CHAT).run()
    assert not at.chat_message
    assert "No messages yet" in page_text(at)


def test_clear_starts_a_new_conversation_and_keeps_the_old_one(ws_env):
    at = ready_inference(ws_env)
    generate(at, "Capital of Germany?")
    cid = at.session_state[state.CHAT_CONVERSATION_ID]
    by_label(at.button, "Clear history").click().run()
    assert at.session_state[state.CHAT_CONVERSATION_ID] is None
    assert "c" not in at.query_params
    assert len(Workspace.open(ws_env).messages(cid)) == 2  # never deleted by Clear


def test_reload_with_the_conversation_id_restores_the_history(ws_env):
    at = ready_inference(ws_env)
    generate(at, "Capital of Portugal?")
    cid = at.session_state[state.CHAT_CONVERSATION_ID]
    fresh = start(FULL_CHAT, query={"c": cid})
    assert [b.name for b in fresh.chat_message] == ["user", "assistant"]
    assert fresh.chat_message[0].text[0].value == "Capital of Portugal?"
    assert fresh.session_state[state.CHAT_CONVERSATION_ID] == cid


def test_unknown_conversation_id_starts_fresh_with_a_notice(ws_env):
    at = start(INFERENCE, query={"c": "not-a-conversation"})
    assert any("not in this workspace" in w.value for w in at.warning)
    assert at.session_state[state.CHAT_MESSAGES] == []


def test_full_chat_without_adapter_points_to_inference(ws_env):
    at = start(FULL_CHAT)
    assert any("No validated adapter" in w.value for w in at.warning)
    assert "Go to Inference" in {link.label for link in at.get("page_link")}
    assert at.chat_input[0].disabled


def test_html_in_messages_is_shown_as_text(ws_env):
    at = ready_inference(ws_env)
    generate(at, "<script>alert(1)</script> capital?")
    assert "<script>alert(1)</script> capital?" in [t.value for t in at.text]  # never HTML
    md = [m for m in at.markdown if "<script>" in m.value]
    assert all(not m.proto.allow_html for m in md)


def test_home_lists_conversations_and_deletes_after_confirmation(ws_env):
    at = ready_inference(ws_env)
    generate(at, "Conversation to delete 🗑️")
    cid = at.session_state[state.CHAT_CONVERSATION_ID]
    at.switch_page("Home.py").run()
    assert "Conversation to delete 🗑️" in [t.value for t in at.text]
    assert any(link.label == "Continue" for link in at.get("page_link"))
    by_label(at.get("download_button"), "Download")
    at.button(key=f"home_delete_{cid}").click().run()
    assert "This deletes the conversation" in page_text(at)
    at.button(key="home_confirm_delete").click().run()
    assert not at.exception, at.exception
    assert cid not in {c.id for c in Workspace.open(ws_env).list_conversations(limit=100)}
    assert at.session_state[state.CHAT_MESSAGES] == []


def test_choosing_a_run_draws_sample_prompts_from_its_own_dataset(ws_env):
    at = select_run(start(INFERENCE), ws_env, "pirate-lora")
    pirate = Workspace.open(ws_env).get_run(run_id(ws_env, "pirate-lora")).dataset_id
    assert by_label(at.selectbox, "Dataset for sample prompts").value == pirate
    select_run(at, ws_env, GOOD_RUN)
    capitals = Workspace.open(ws_env).get_run(run_id(ws_env, GOOD_RUN)).dataset_id
    assert by_label(at.selectbox, "Dataset for sample prompts").value == capitals
    rows = {p.prompt for p in Workspace.open(ws_env).dataset_pairs(capitals)}
    assert {s.prompt for s in at.session_state[state.INF_SAMPLES]} <= rows
