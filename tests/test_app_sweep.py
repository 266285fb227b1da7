"""AppTest: "Sweep checkpoints on a dataset" on the Inference page, chat with the best, Home."""

import json
import shutil

import pytest

from ff_lib.data import Workspace
from tests.apptest_helpers import INFERENCE, private_copy, run_named, select_run, start
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

    runs_before = {r.name for r in Workspace.open(ws_env).list_runs()}
    at.button(key="sweep_chat_best").click().run()
    assert not at.exception, at.exception
    if best == "final":
        chosen = run_named(ws_env, "capitals-lora")
    else:
        chosen = run_named(ws_env, f"capitals-lora-{best}")
        assert chosen.name not in runs_before  # registered now
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
