"""AppTest: "Sweep checkpoints on a dataset" on the Inference page, chat with the best, Home."""

import json
import shutil

import pytest

from ff_lib.data import Workspace
from ff_lib.sweep import find_checkpoints, register_checkpoint, run_folder
from tests.apptest_helpers import (
    INFERENCE,
    page_text,
    private_copy,
    run_named,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow
LABEL = "Sweep checkpoints on a dataset"


@pytest.fixture(scope="module")
def sweep_app_demo(demo_workspace, tmp_path_factory):  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "sweep-app")


@pytest.fixture
def ws_env(sweep_app_demo, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(sweep_app_demo))
    return sweep_app_demo


def test_sweep_draws_the_chart_and_chat_with_best_selects_it(ws_env):
    at = select_run(start(INFERENCE), ws_env, "capitals-lora")
    assert [e for e in at.expander if e.label == LABEL]
    at.number_input(key="sweep_rows").set_value(3).run()
    at.button(key="sweep_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2, "no Altair charts drawn"  # the scores, the logged loss beside them
    scores, loss = (json.loads(c.proto.spec) for c in charts)
    assert scores["title"] == "Scores by checkpoint" and "best: " in charts[0].proto.spec
    assert loss["title"] == "Logged loss" and "train loss" in str(charts[1].proto)
    assert scores["usermeta"]["embedOptions"]["renderer"] == "svg"  # its labels are text
    table = at.dataframe[-1].value
    assert list(table["name"]) == [
        "checkpoint-50", "checkpoint-100", "checkpoint-150", "final", "base"]  # fmt: skip
    best = table[table["best"]]["name"].item()
    assert best != "checkpoint-50"
    assert any(m.value.startswith(f"**Best: {best}**") for m in at.markdown)
    dataset = Workspace.open(ws_env).get_dataset(run_named(ws_env, "capitals-lora").dataset_id)
    assert f"of run capitals-lora on 3 rows of {dataset.name};" in page_text(at)

    runs_before = {r.name for r in Workspace.open(ws_env).list_runs()}
    at.button(key="sweep_chat_best").click().run()
    assert not at.exception, at.exception
    if best == "final":
        chosen = run_named(ws_env, "capitals-lora")
    else:
        chosen = run_named(ws_env, f"capitals-lora-{best}")
        assert chosen.name not in runs_before  # registered now, and said so
        note = f"registered {best} of capitals-lora as run '{chosen.name}' (id {chosen.id})"
        assert note in [t.value for t in at.toast]
    assert at.session_state["inf_run"] == chosen.id
    assert at.selectbox(key="inf_run").value == chosen.id

    home = start()
    assert not home.exception, home.exception
    assert any(h.value == "Checkpoint sweeps" for h in home.subheader)


def test_no_sweep_for_a_run_without_checkpoints(ws_env, tmp_path):
    run = run_named(ws_env, "capitals-lora")
    lone = tmp_path / "lone" / "adapter"
    shutil.copytree(run.adapter_path, lone)
    Workspace.open(ws_env).add_run("lone", run.base_model, str(lone), status="completed")
    at = select_run(start(INFERENCE), ws_env, "lone")
    assert at.selectbox(key="inf_run").value == run_named(ws_env, "lone").id
    assert [e for e in at.expander if e.label == "Score this run on a dataset"]
    assert not [e for e in at.expander if e.label == LABEL]


def test_sweep_dataset_follows_the_chosen_run(ws_env):
    """Pirate first (as "Use latest completed run" may pick), then capitals: the sweep must not
    stay on pirate's dataset (it reported a silent wrong best checkpoint)."""
    pirate, capitals = run_named(ws_env, "pirate-lora"), run_named(ws_env, "capitals-lora")
    assert pirate.dataset_id != capitals.dataset_id
    at = select_run(start(INFERENCE), ws_env, "pirate-lora")
    assert at.selectbox(key="sweep_dataset").value == pirate.dataset_id
    at = select_run(at, ws_env, "capitals-lora")
    assert at.selectbox(key="sweep_dataset").value == capitals.dataset_id
    assert at.selectbox(key="score_dataset").value == capitals.dataset_id  # as Score does
    at.selectbox(key="sweep_dataset").select(pirate.dataset_id).run()  # a choice made here
    at.number_input(key="sweep_rows").set_value(2).run()  # stays while the run does
    assert at.selectbox(key="sweep_dataset").value == pirate.dataset_id


def test_a_checkpoint_run_offers_no_sweep_and_names_the_run_to_sweep(ws_env):
    ws = Workspace.open(ws_env)
    run = run_named(ws_env, "capitals-lora")
    point = find_checkpoints(run_folder(run.adapter_path))[0]
    ckpt = register_checkpoint(ws, run, {"name": point.name, "step": point.step,
                                         "adapter_dir": str(point.adapter_dir)})  # fmt: skip
    at = select_run(start(INFERENCE), ws_env, ckpt.name)
    assert at.selectbox(key="inf_run").value == ckpt.id
    assert not [e for e in at.expander if e.label == LABEL]
    text = page_text(at)
    assert f"is checkpoint-50 of run 'capitals-lora' (id {run.id})" in text
    assert "Sweep run 'capitals-lora' instead" in text
