"""AppTest: Score on the Inference page, scorecards on Home, the adapter effect, replay on Full Chat."""

import json

import pytest

from ff_lib.data import Workspace
from ff_lib.ui.evaluation import diff_html
from tests.apptest_helpers import (
    FULL_CHAT,
    INFERENCE,
    by_label,
    deterministic,
    effect_captions,
    private_copy,
    run_id,
    run_named,
    select_run,
    start,
)

pytestmark = pytest.mark.slow
CAPITALS_RUN, PIRATE_RUN = "capitals-lora", "pirate-lora"


@pytest.fixture(scope="module")
def eval_demo(demo_workspace, tmp_path_factory):
    """A private copy of the demo: scoring and measuring write to the workspace."""
    return private_copy(demo_workspace, tmp_path_factory, "eval-app")


@pytest.fixture
def ws_env(eval_demo, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(eval_demo))
    return eval_demo


def test_score_shows_base_vs_run_and_lands_on_home(ws_env):
    at = select_run(start(INFERENCE), ws_env, CAPITALS_RUN)
    assert not at.button(key="score_button").disabled
    assert at.selectbox(key="score_dataset").value is not None  # the run's own dataset
    at.number_input(key="score_rows").set_value(3).run()
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    means = {row["Model"]: row for _, row in at.dataframe[-2].value.iterrows()}
    assert means[CAPITALS_RUN]["Exact match"] == 1.0
    assert means["base model"]["Exact match"] == 0.0
    rows = at.dataframe[-1].value
    assert len(rows) == 3 and {"Prompt", "Expected", CAPITALS_RUN} <= set(rows.columns)
    assert any("Scorecard" in m.value for m in at.markdown)

    home = start()
    assert any(h.value == "Scorecards" for h in home.subheader)
    assert any(m.value == f"**{CAPITALS_RUN}**" for m in home.markdown)


def test_score_two_compared_runs_with_chart_and_disagreement_filter(ws_env):
    copy = Workspace.open(ws_env).add_run(
        "pirate-copy", str(run_named(ws_env, PIRATE_RUN).base_model),
        str(run_named(ws_env, PIRATE_RUN).adapter_path),
    )  # fmt: skip
    at = select_run(start(INFERENCE), ws_env, CAPITALS_RUN)
    compare = by_label(at.multiselect, "Compare with runs")
    broken = run_id(ws_env, "capitals-lora-broken")
    assert any(o.startswith("✗ capitals-lora-broken") for o in compare.options), compare.options
    compare.set_value([broken]).run()  # a ✗ run is refused with its reason
    at.number_input(key="score_rows").set_value(2).run()
    at.button(key="score_button").click().run()
    assert any("truncated" in e.value for e in at.error), [e.value for e in at.error]

    compare = by_label(at.multiselect, "Compare with runs")
    compare.set_value([run_id(ws_env, PIRATE_RUN), copy.id]).run()
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    means = at.dataframe[-2].value
    assert list(means["Model"]) == ["base model", CAPITALS_RUN, PIRATE_RUN, "pirate-copy"]
    charts = at.get("vega_lite_chart")
    assert charts, "no bar chart of the means"
    spec = json.loads(charts[-1].proto.spec)
    assert spec["mark"]["type"] == "bar"
    assert {spec["encoding"][c]["field"] for c in ("x", "xOffset", "y")} == {
        "Metric",
        "Model",
        "Score",
    }
    assert len(at.dataframe[-1].value) == 2
    at.toggle(key="score_disagree").set_value(True).run()
    rows = at.dataframe[-1].value
    assert len(rows) == 2  # the capitals run and the pirates never agree
    assert (rows[PIRATE_RUN] == rows["pirate-copy"]).all()  # same adapter, same greedy answers


def test_resume_button_completes_an_interrupted_scorecard(ws_env):
    from ff_lib import scorecards
    from tests.test_scorecards import FakeHost

    ws = Workspace.open(ws_env)
    with pytest.raises(KeyboardInterrupt):
        scorecards.score_run(FakeHost(stop_after=2), ws, run_id(ws_env, CAPITALS_RUN), 1, n=2)
    card = ws.list_scorecards(run_id(ws_env, CAPITALS_RUN))[0]
    at = select_run(start(INFERENCE), ws_env, CAPITALS_RUN)
    assert any(f"Scorecard {card.id} (interrupted)" in c.value for c in at.caption)
    at.button(key=f"score_resume_{card.id}").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert ws.get_scorecard(card.id).status == "complete"
    assert any(f"**Scorecard {card.id}**" in m.value for m in at.markdown)
    assert not [b for b in at.button if b.key == f"score_resume_{card.id}"]


def test_score_is_locked_without_a_validated_run(ws_env):
    at = start(INFERENCE)
    assert at.button(key="score_button").disabled


def test_effect_line_says_how_much_the_adapter_changes(ws_env):
    at = select_run(start(INFERENCE), ws_env, PIRATE_RUN)
    captions = effect_captions(at)
    assert any(c.startswith("adapter changes 100% of tokens") for c in captions), captions
    assert not any("almost no effect" in w.value for w in at.warning)


def test_measuring_the_effect_loads_the_base_and_the_line_says_how_it_runs(
    demo_workspace,  # noqa: F811
    tmp_path_factory,
    monkeypatch,
):
    """The measure loads the base during the run that shows it: the line above says how it
    runs now, not "loads at the first prompt" until the next rerun."""
    from ff_lib.inference import get_host

    fresh = private_copy(demo_workspace, tmp_path_factory, "effect-load")  # nothing measured
    monkeypatch.setenv("FF_WORKSPACE", str(fresh))
    get_host().release()
    at = select_run(start(INFERENCE), fresh, PIRATE_RUN)
    assert any("loads at the first prompt" in c.value for c in at.caption)
    assert any(c.startswith("adapter changes") for c in effect_captions(at))
    lines = [c.value for c in at.caption if c.value.startswith("Adapter `")]
    assert len(lines) == 1 and lines[0].endswith("· float32 on CPU"), lines


def test_replay_a_conversation_against_another_run(ws_env):
    at = deterministic(select_run(start(INFERENCE), ws_env, CAPITALS_RUN))
    at.switch_page(FULL_CHAT).run()
    at.chat_input(key="full_chat_input").set_value("What is the capital of France?").run()
    assert not at.exception, at.exception
    at.selectbox(key="replay_run").select(run_id(ws_env, PIRATE_RUN)).run()
    at.button(key="replay_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    assert "0/1 answers unchanged" in captions and "0 base model loads" in captions
    diffs = [h.proto.body for h in at.html if "ff-diff" in h.proto.body]
    stored, replayed = diffs[-2:]
    assert "The capital of France is Paris." in stored.replace("<mark>", "").replace("</mark>", "")
    assert "<mark>" in replayed and "Arr" in replayed


def test_diff_html_escapes_model_text():
    out = diff_html([("<script>alert(1)</script> & ", True), ("fine", False)])
    assert "<script>" not in out
    assert "<mark>&lt;script&gt;alert(1)&lt;/script&gt; &amp; </mark>fine" in out
