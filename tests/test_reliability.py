"""Reliability below the browser: nothing lost, bad input gets a clear message, safe defaults.

AppTest drives the pages on a private copy of the demo; each bad input is followed by a step
that proves the app still works. The browser suites repeat the journeys a person takes.
"""

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ff_lib.chat import load_history
from ff_lib.chat.recorder import CUT_OFF_REASON, ReplyRecorder
from ff_lib.cli import main as cli_main
from ff_lib.data import Workspace
from ff_lib.errors import FFError
from ff_lib.inference import PRESETS, get_host, validate_adapter
from ff_lib.ui import generation as ui_generation
from ff_lib.ui import state
from tests.apptest_helpers import (
    FULL_CHAT,
    GOOD_RUN,
    INFERENCE,
    READY,
    ROOT,
    by_label,
    deterministic,
    generate,
    page_text,
    private_copy,
    run_named,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_data_concurrency import hold_database as hold_workspace_lock

pytestmark = pytest.mark.slow


def ready(folder: Path, run: str = GOOD_RUN) -> AppTest:
    at = deterministic(select_run(start(INFERENCE), folder, run))
    assert [s.value for s in at.success] == [READY]
    return at


def assert_still_works(at, folder: Path) -> None:
    """After a refusal: the good run validates and answers."""
    select_run(at, folder, GOOD_RUN)
    assert [s.value for s in at.success] == [READY], page_text(at)
    by_label(at.slider, "Max new tokens").set_value(16).run()
    generate(at, "What is the capital of France?")
    reply = at.session_state[state.CHAT_MESSAGES][-1]
    assert reply.role == "assistant" and reply.status == "complete" and reply.content


@pytest.fixture(scope="module")
def app_workspace(demo_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "reliability")


@pytest.fixture
def ws_env(app_workspace, monkeypatch) -> Path:
    monkeypatch.setenv("FF_WORKSPACE", str(app_workspace))
    return app_workspace


def good_adapter(folder: Path) -> Path:
    return Path(run_named(folder, GOOD_RUN).adapter_path)


# --- Nothing lost ---
def test_a_reply_cut_off_by_a_restart_is_kept_and_marked_interrupted(ws_env):
    ws = Workspace.open(ws_env)
    conv = ws.create_conversation(title="cut off")
    ws.add_message(conv.id, "user", "Tell me a long story")
    # What a server killed mid-reply leaves behind: the text saved so far, still 'streaming'.
    cut = ws.add_message(conv.id, "assistant", "Once upon a ti", status="streaming")

    at = start(FULL_CHAT, query={"c": conv.id})
    assert [b.name for b in at.chat_message] == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value == "Once upon a ti"
    assert f"Interrupted: {CUT_OFF_REASON}" in page_text(at)
    stored = {m.id: m for m in ws.messages(conv.id)}[cut.id]
    assert (stored.status, stored.content) == ("interrupted", "Once upon a ti")
    assert stored.meta["interrupted"] == CUT_OFF_REASON


def test_a_reply_still_being_written_in_this_process_is_not_marked(ws_env):
    ws = Workspace.open(ws_env)
    conv = ws.create_conversation(title="live")
    ws.add_message(conv.id, "user", "hello")
    recorder = ReplyRecorder(ws, conv.id)  # a generation of this process owns it
    try:
        assert load_history(ws, conv.id)[-1].status == "streaming"
    finally:
        recorder.stop()
    assert load_history(ws, conv.id)[-1].status == "interrupted"


def test_clear_history_keeps_the_stored_conversation(ws_env):
    at = ready(ws_env)
    generate(at, "Capital of Spain?")
    cid = at.session_state[state.CHAT_CONVERSATION_ID]
    by_label(at.button, "Clear history").click().run()
    assert at.session_state[state.CHAT_MESSAGES] == []
    assert [m.role for m in Workspace.open(ws_env).messages(cid)] == ["user", "assistant"]
    at.switch_page("Home.py").run()
    assert "Capital of Spain?" in [t.value for t in at.text]  # listed, with Continue


def test_a_second_generation_waits_for_the_model_with_a_visible_status(ws_env, monkeypatch):
    shown: list[tuple[str, str]] = []
    waiting_seen = threading.Event()
    real_status_line = ui_generation.status_line

    def recording_status_line(status: str, detail: str) -> None:
        shown.append((status, detail))
        if status == "waiting":
            waiting_seen.set()
        real_status_line(status, detail)

    monkeypatch.setattr(ui_generation, "status_line", recording_status_line)
    at = ready(ws_env)
    host = get_host()
    holder_has_lock = threading.Event()

    def other_session() -> None:
        # Another session's reply holds the model until this session's wait is on screen.
        with host.lock:
            holder_has_lock.set()
            waiting_seen.wait(timeout=60)

    holder = threading.Thread(target=other_session)
    holder.start()
    assert holder_has_lock.wait(timeout=10)
    generate(at, "What is the capital of Italy?")
    holder.join(timeout=60)
    statuses = [s for s, _ in shown]
    assert "waiting" in statuses, shown
    waiting_detail = next(d for s, d in shown if s == "waiting")
    assert "Waiting for the model" in waiting_detail
    assert "generating" in statuses[statuses.index("waiting") :]  # then it went on
    assert at.session_state[state.CHAT_MESSAGES][-1].status == "complete"
    assert [s.value for s in at.success] == [READY]


# --- Bad input, clear messages: every broken adapter layout ---
def _copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder: Path, **changes) -> None:
    file = folder / "adapter_config.json"
    config = json.loads(file.read_text())
    config.update(changes)
    file.write_text(json.dumps(config))


def _layout_missing(src: Path, dst: Path) -> Path:
    return _copy_adapter(src, dst)  # registered, then removed below


def _layout_file(src: Path, dst: Path) -> Path:
    dst.mkdir()
    (dst / "adapter.txt").write_text("not a folder")
    return dst / "adapter.txt"


def _layout_no_config(src: Path, dst: Path) -> Path:
    _copy_adapter(src, dst)
    (dst / "adapter_config.json").unlink()
    return dst


def _layout_full_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    (dst / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (dst / "model.safetensors").write_bytes(b"\0" * 64)
    return dst


def _layout_bad_json(src: Path, dst: Path) -> Path:
    _copy_adapter(src, dst)
    (dst / "adapter_config.json").write_text('{"peft_type": "LORA", "r": ')
    return dst


def _layout_not_lora(src: Path, dst: Path) -> Path:
    _copy_adapter(src, dst)
    _edit_config(dst, peft_type="PREFIX_TUNING")
    return dst


def _layout_no_weights(src: Path, dst: Path) -> Path:
    _copy_adapter(src, dst)
    (dst / "adapter_model.safetensors").unlink()
    return dst


def _layout_empty_weights(src: Path, dst: Path) -> Path:
    _copy_adapter(src, dst)
    (dst / "adapter_model.safetensors").write_bytes(b"")
    return dst


def _layout_truncated_weights(src: Path, dst: Path) -> Path:
    _copy_adapter(src, dst)
    weights = dst / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return dst


def _layout_shape_mismatch(src: Path, dst: Path) -> Path:
    _copy_adapter(src, dst)
    rank = json.loads((dst / "adapter_config.json").read_text())["r"]
    _edit_config(dst, r=rank * 2)  # the tensors keep the trained rank
    return dst


BROKEN_LAYOUTS = {
    "missing folder": (_layout_missing, "Adapter folder not found"),
    "a file": (_layout_file, "Not a folder"),
    "no adapter_config.json": (_layout_no_config, "not a LoRA adapter folder"),
    "full model": (_layout_full_model, "looks like a full model"),
    "invalid JSON": (_layout_bad_json, "is not valid JSON"),
    "not LoRA": (_layout_not_lora, "is not a LoRA config"),
    "no weights": (_layout_no_weights, "No weights file"),
    "empty weights": (_layout_empty_weights, "Weights file is empty"),
    "truncated weights": (_layout_truncated_weights, "truncated"),
    "shape mismatch": (_layout_shape_mismatch, "contradicts its adapter_config.json"),
}


@pytest.mark.parametrize("layout", list(BROKEN_LAYOUTS))
def test_each_broken_adapter_layout_turns_red_with_its_reason(ws_env, tmp_path, layout):
    make, says = BROKEN_LAYOUTS[layout]
    good = run_named(ws_env, GOOD_RUN)
    target = make(good_adapter(ws_env), tmp_path / "adapter")
    name = f"broken-{layout.replace(' ', '-')}"
    Workspace.open(ws_env).add_run(name, good.base_model, target)
    if layout == "missing folder":
        shutil.rmtree(target)

    at = select_run(start(INFERENCE), ws_env, name)
    assert at.error, page_text(at)
    assert at.error[0].value.startswith("Error: ")
    assert says in at.error[0].value, at.error[0].value
    assert by_label(at.button, "Generate").disabled
    assert by_label(at.text_area, "Prompt").disabled
    assert_still_works(at, ws_env)


def test_a_base_model_that_is_not_available_offline_says_so(ws_env):
    at = start(INFERENCE)
    by_label(at.text_input, "Base model").input("no-such-org/no-such-model").run()
    select_run(at, ws_env, GOOD_RUN)
    # Red at once, with the fix, and locked: never green and then a failure at Generate.
    assert at.error, page_text(at)
    assert "no-such-org/no-such-model is not available offline" in at.error[0].value
    assert "or none to answer on the run's own base" in at.error[0].value
    assert by_label(at.button, "Generate").disabled
    by_label(at.text_input, "Base model").input("").run()
    assert_still_works(at, ws_env)


def test_an_empty_prompt_is_refused_and_the_page_keeps_working(ws_env):
    at = ready(ws_env)
    generate(at, "  \n ")
    assert any("prompt" in w.value.lower() for w in at.warning), page_text(at)
    assert not at.session_state[state.CHAT_MESSAGES]
    assert_still_works(at, ws_env)


def test_a_prompt_far_longer_than_the_context_still_gets_a_reply(ws_env):
    at = ready(ws_env)
    long_prompt = " ".join(["What is the capital of France?"] * 400)
    generate(at, long_prompt)
    reply = at.session_state[state.CHAT_MESSAGES][-1]
    assert reply.status == "complete", reply
    assert reply.meta.get("notice"), reply.meta
    assert "to fit" in page_text(at)
    assert [s.value for s in at.success] == [READY]


def test_a_dataset_with_no_usable_columns_is_refused_by_the_cli(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("alpha,beta\n1,2\n3,4\n")
    argv = ["--workspace", str(tmp_path / "ws"), "datasets", "import", str(bad), "--name", "bad"]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot import")
    assert "found no prompt and response columns" in err
    assert "alpha" in err  # names the columns it saw
    assert Workspace.open(tmp_path / "ws").list_datasets() == []


def test_a_workspace_locked_by_another_process_says_busy_then_recovers(ws_env):
    at = ready(ws_env)
    child = hold_workspace_lock(ws_env / "ff.duckdb", 8)  # longer than the 5 s of retries
    try:
        at.run()
        assert not at.exception, at.exception
        assert at.error and "workspace is busy" in at.error[0].value, page_text(at)
        assert "try again in a moment" in at.error[0].value
    finally:
        child.wait(timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert not at.error
    assert_still_works(at, ws_env)


def test_a_trainer_registering_a_run_while_chatting_is_seen_after_refresh(ws_env, tmp_path):
    at = ready(ws_env)
    adapter = _copy_adapter(good_adapter(ws_env), tmp_path / "trained")
    base = run_named(ws_env, GOOD_RUN).base_model
    trainer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ff_lib",
            "--workspace",
            str(ws_env),
            "runs",
            "add",
            "--name",
            "trainer-run",
            "--base-model",
            base,
            "--adapter",
            str(adapter),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    generate(at, "What is the capital of Germany?")  # chatting while the trainer writes
    out, err = trainer.communicate(timeout=120)
    assert trainer.returncode == 0, err
    assert "lock" not in err.lower()
    assert at.session_state[state.CHAT_MESSAGES][-1].status == "complete"
    by_label(at.button, "Refresh runs").click().run()
    box = by_label(at.selectbox, "Training run")
    assert any("trainer-run" in option for option in box.options)
    assert not at.exception


# --- Safe by default ---
def test_streamlit_config_is_local_xsrf_protected_and_sends_nothing():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["enableCORS"] is True
    assert config["browser"]["gatherUsageStats"] is False


class _RunsCode:
    """A pickle payload: unpickling it writes `marker` (what a hostile .bin would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def test_a_pickled_bin_adapter_that_would_run_code_is_refused_without_running_it(
    demo_workspace,  # noqa: F811
    tmp_path,
):
    import torch
    from safetensors.torch import load_file

    demo = demo_workspace
    run = run_named(demo, GOOD_RUN)
    adapter = tmp_path / "evil-adapter"
    adapter.mkdir()
    shutil.copy(Path(run.adapter_path) / "adapter_config.json", adapter)
    tensors = load_file(Path(run.adapter_path) / "adapter_model.safetensors")
    marker = tmp_path / "pwned"
    torch.save({**tensors, "payload": _RunsCode(marker)}, adapter / "adapter_model.bin")
    assert not marker.exists()

    assert validate_adapter(adapter, run.base_model).ok  # a well-formed torch archive
    settings = PRESETS["Deterministic"]
    messages = [{"role": "user", "content": "hello"}]
    with pytest.raises(FFError):
        get_host().generate(run.base_model, messages, settings, adapter)
    assert not marker.exists(), "loading the adapter executed code from its pickle"


def test_a_base_model_asking_for_remote_code_never_runs_it(demo_workspace, tmp_path):  # noqa: F811
    demo = demo_workspace
    run = run_named(demo, GOOD_RUN)
    base = tmp_path / "base-with-code"
    shutil.copytree(run.base_model, base)
    marker = tmp_path / "pwned"
    (base / "evil_modeling.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('code ran')\n"
        "from transformers import LlamaForCausalLM as EvilForCausalLM\n"
    )
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil_modeling.EvilForCausalLM"}
    (base / "config.json").write_text(json.dumps(config))

    settings = PRESETS["Deterministic"]
    messages = [{"role": "user", "content": "hello"}]
    with contextlib.suppress(FFError):  # refusing the model is fine; running its code is not
        get_host().generate(str(base), messages, settings, None)
    assert not marker.exists(), "loading the base model imported its remote code"
