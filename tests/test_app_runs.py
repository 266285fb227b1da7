"""AppTest: the run you choose is the run that answers, and a run that cannot answer says why."""

import datetime as dt

import duckdb
import pytest

from ff_lib.compare import checkpoint_run
from ff_lib.data import Workspace
from ff_lib.ui import state
from tests.apptest_helpers import INFERENCE, READY, by_label, page_text, private_copy, start
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow
GONE_BASE = "/gone/models/tiny-base"


def add_raw_run(con, name: str, base: str, adapter: str, minutes: int) -> int:
    """A run written straight into the table, as an older FF Playground or a trainer could."""
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    return con.execute(
        "INSERT INTO training_runs (name, status, base_model, adapter_path, created_at, "
        "completed_at) VALUES (?, 'completed', ?, ?, ?, ?) RETURNING id",
        [name, base, adapter, when, when],
    ).fetchone()[0]


@pytest.fixture(scope="module")
def twins(demo_workspace, tmp_path_factory):  # noqa: F811
    """The demo as a workspace from before unique names: a newer 'pirate-lora' (on the
    capitals adapter) beside the demo's own, and a newest run whose base is not here."""
    folder = private_copy(demo_workspace, tmp_path_factory, "runs")
    con = duckdb.connect(str(folder / "ff.duckdb"))
    con.execute("DROP INDEX IF EXISTS training_runs_name_unique")
    con.execute("DELETE FROM schema_migrations WHERE name >= 'm003'")
    base, capitals, pirate = con.execute(
        "SELECT any_value(base_model), "
        "max(adapter_path) FILTER (name = 'capitals-lora'), "
        "max(adapter_path) FILTER (name = 'pirate-lora') FROM training_runs"
    ).fetchone()
    newer = add_raw_run(con, "pirate-lora", base, capitals, minutes=1)
    lost = add_raw_run(con, "lost-base", GONE_BASE, capitals, minutes=2)
    con.close()
    return {"folder": folder, "newer": newer, "lost": lost, "capitals": capitals, "pirate": pirate}


@pytest.fixture
def ws_env(twins, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(twins["folder"]))
    return twins


def test_choosing_the_newer_of_two_same_named_runs_answers_with_it(ws_env):
    at = start(INFERENCE)
    box = by_label(at.selectbox, "Training run")
    box.select(ws_env["newer"]).run()
    assert not at.exception, at.exception
    chosen = at.session_state[state.MODEL_SELECTION]
    assert chosen.run_id == ws_env["newer"]
    assert chosen.adapter_dir == ws_env["capitals"]
    assert READY in page_text(at)
    assert f"Adapter `{ws_env['capitals']}`" in page_text(at)
    # The older run keeps its name; the newer one was renamed on open, and the box says which.
    labels = by_label(at.selectbox, "Training run").options
    assert "pirate-lora (2) · completed" in labels and "pirate-lora · completed" in labels


def test_a_run_whose_base_is_missing_is_red_locked_and_names_the_fix(ws_env):
    at = start(INFERENCE)
    box = by_label(at.selectbox, "Training run")
    lost_label = next(o for o in box.options if o.startswith("✗ lost-base · completed"))
    assert GONE_BASE in lost_label
    box.select(ws_env["lost"]).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(
        GONE_BASE in e and f"python -m ff_lib runs set-base {ws_env['lost']} BASE" in e
        for e in errors
    ), errors
    assert READY not in page_text(at)
    assert by_label(at.button, "Generate").disabled
    assert by_label(at.text_area, "Prompt").disabled


def test_use_latest_skips_runs_that_cannot_answer(ws_env):
    at = start(INFERENCE)
    by_label(at.button, "Use latest completed run").click().run()
    assert not at.exception, at.exception
    # The newest completed run has no base here; the newest that can answer is the twin.
    assert at.session_state[state.INF_RUN] == ws_env["newer"]
    assert READY in page_text(at)


def test_score_and_replay_boxes_mark_runs_that_cannot_answer(ws_env):
    at = start(INFERENCE)
    by_label(at.selectbox, "Training run").select(ws_env["newer"]).run()
    compare = by_label(at.multiselect, "Compare with runs")
    labels = compare.options
    # Score compares runs on the selected run's base: lost-base (another base) is not offered.
    assert not any("lost-base" in label for label in labels)
    assert any(label.startswith("✗ capitals-lora-broken (run ") for label in labels)
    assert any(label.startswith("pirate-lora (run ") for label in labels)


def test_home_removes_a_run_only_after_confirmation(ws_env):
    ws = Workspace.open(ws_env["folder"])
    lost = ws.get_run(ws_env["lost"])
    chat = ws.create_conversation("kept", run_id=lost.id)
    ws.add_message(
        chat.id, "assistant", "an old answer", meta={"run": {"id": lost.id, "name": lost.name}}
    )
    means = {"exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0}
    summary = {"models": {"run": {"label": lost.name}}, "means": {"run": means}, "n": 0}
    ws.add_scorecard(lost.id, ws.list_datasets()[0].id, summary, [])
    at = start()
    by_label(at.selectbox, "Run to remove").select(lost.id).run()
    by_label(at.button, "Remove run").click().run()
    assert "This removes run" in page_text(at) and "lost-base · completed" in page_text(at)
    by_label(at.button, "Cancel").click().run()
    assert lost.id in [r.id for r in ws.list_runs()]  # nothing happens without a confirmation

    by_label(at.button, "Remove run").click().run()
    by_label(at.button, "Remove").click().run()
    assert not at.exception, at.exception
    assert lost.id not in [r.id for r in ws.list_runs()]
    assert "lost-base" not in list(at.dataframe[0].value["Name"])
    assert [m.content for m in ws.messages(chat.id)] == ["an old answer"]
    assert "**lost-base (removed)**" in [m.value for m in at.markdown]  # its scorecard stays


def test_a_registered_checkpoint_is_not_the_latest_run_nor_counted_as_one(
    demo_workspace,  # noqa: F811
    tmp_path_factory,
    monkeypatch,
):
    """`compare ... capitals-lora@checkpoint-50` registers a run: "Use latest completed run"
    must not pick it, and Home counts it apart from the training runs."""
    folder = private_copy(demo_workspace, tmp_path_factory, "ckpt-runs")
    monkeypatch.setenv("FF_WORKSPACE", str(folder))
    home = start()
    before = {m.label: m.value for m in home.metric}["Runs completed"]
    at = start(INFERENCE)
    by_label(at.button, "Use latest completed run").click().run()
    latest = at.session_state[state.INF_RUN]

    ckpt = checkpoint_run(Workspace.open(folder), "capitals-lora@checkpoint-50")
    at = start(INFERENCE)
    by_label(at.button, "Use latest completed run").click().run()
    assert not at.exception, at.exception
    assert at.session_state[state.INF_RUN] == latest != ckpt.id

    home = start()
    assert {m.label: m.value for m in home.metric}["Runs completed"] == before
    assert ("Runs count training runs only: 1 checkpoint registered as a run is listed below "
            "but not counted.") in page_text(home)  # fmt: skip
    assert ckpt.name in list(home.dataframe[0].value["Name"])


def test_use_latest_names_the_checkpoint_when_no_training_run_can_answer(
    demo_workspace,  # noqa: F811
    tmp_path_factory,
    monkeypatch,
):
    folder = private_copy(demo_workspace, tmp_path_factory, "ckpt-only")
    monkeypatch.setenv("FF_WORKSPACE", str(folder))
    ws = Workspace.open(folder)
    ckpt = checkpoint_run(ws, "capitals-lora@checkpoint-50")
    for run in ws.list_runs():
        if run.id != ckpt.id:
            ws.set_run_status(run.id, "failed")
    at = start(INFERENCE)
    by_label(at.button, "Use latest completed run").click().run()
    assert not at.exception, at.exception
    assert at.session_state[state.INF_RUN] != ckpt.id  # not picked silently
    assert f"choose it in Training run (the newest that can answer: '{ckpt.name}')" in (
        page_text(at)
    )
