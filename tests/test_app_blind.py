"""AppTest: the Blind test page on the demo, driven by its labels: pick two models, Generate
(one batched pass), vote, the reveal, the tally, the DPO download; refusals."""

import json
from pathlib import Path

import pytest

from ff_lib.data import Workspace
from ff_lib.inference import get_host
from ff_lib.ui import state
from ff_lib.ui.blind import shown_answer
from tests.apptest_helpers import (
    GOOD_RUN,
    by_label,
    page_text,
    private_copy,
    run_id,
    run_named,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow

BLIND = "pages/3_Blind_Test.py"
OTHER_RUN = "pirate-lora"
BROKEN = "capitals-lora-broken"
PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def app_workspace(demo_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "blind")


@pytest.fixture
def ws_env(app_workspace, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(app_workspace))
    return app_workspace


def blind_page(folder: Path, first: str, second):
    at = start(BLIND)
    by_label(at.selectbox, "First model").select(run_id(folder, first)).run()
    by_label(at.selectbox, "Second model").select(second).run()
    by_label(at.radio, "Preset").set_value("Deterministic").run()
    by_label(at.slider, "Max new tokens").set_value(16).run()
    assert not at.exception, at.exception
    return at


def test_home_links_to_the_blind_test(ws_env):
    at = start()
    assert "Blind test" in {link.label for link in at.get("page_link")}


def test_pick_generate_vote_reveal_and_tally(ws_env):
    at = blind_page(ws_env, GOOD_RUN, "base")
    before = len(Workspace.open(ws_env).list_votes())
    by_label(at.text_area, "Prompt").input(PROMPT).run()
    engine = get_host()._engine
    if engine is not None:  # shared by the tests of this process: count this Generate only
        engine.scheduler.max_batch_seen = 0
    by_label(at.button, "Generate").click().run()
    assert not at.exception, at.exception
    assert get_host()._engine.scheduler.max_batch_seen >= 2  # both answers in one batch

    pair = at.session_state[state.BLIND_PAIR]
    assert {pair.model_a["key"], pair.model_b["key"]} == {f"run:{run_id(ws_env, GOOD_RUN)}", "base"}
    shown = [t.value for t in at.text]
    assert shown == [shown_answer(pair.answer_a), shown_answer(pair.answer_b)]
    assert "A was" not in page_text(at) and "Vote stored" not in page_text(at)  # still blind

    by_label(at.button, "A better").click().run()
    assert not at.exception, at.exception
    revealed = page_text(at)
    assert f"A was **{pair.model_a['label']}**" in revealed
    assert f"B was **{pair.model_b['label']}**" in revealed
    assert by_label(at.button, "B better").disabled  # one vote per pair

    votes = Workspace.open(ws_env).list_votes()
    assert len(votes) == before + 1
    vote = votes[-1]
    assert (vote.prompt, vote.verdict, vote.answer_a) == (PROMPT, "a", pair.answer_a)
    assert vote.swapped == pair.swapped
    run_side = vote.meta_a if vote.model_a["key"] != "base" else vote.meta_b
    base_side = vote.meta_b if vote.model_a["key"] != "base" else vote.meta_a
    assert run_side["adapter_sha256"] and base_side["adapter"] is None
    assert run_side["settings"]["max_new_tokens"] == 16 and "seed" in run_side

    table = at.dataframe[0].value
    winner = table[table["Model"] == pair.model_a["label"]].iloc[0]
    assert (winner["Wins"], winner["Win rate"]) == (1, "100%")
    assert winner["95% interval"] == "21% – 100%"  # Wilson, 1 of 1
    assert "ties and “both bad” are left out" in page_text(at)
    download = by_label(at.get("download_button"), "Download DPO pairs (JSONL)")
    assert not download.disabled


def test_another_model_chosen_after_a_round_does_not_show_that_round(ws_env):
    """The last round's answers (and its reveal) were other models': choosing another first
    or second model leaves them off the page instead of under the new names."""
    at = blind_page(ws_env, GOOD_RUN, "base")
    by_label(at.text_area, "Prompt").input(PROMPT).run()
    by_label(at.button, "Generate").click().run()
    by_label(at.button, "A better").click().run()
    assert "Vote stored" in page_text(at)
    by_label(at.selectbox, "Second model").select(run_id(ws_env, OTHER_RUN)).run()
    assert not at.exception, at.exception
    assert "Vote stored" not in page_text(at) and not at.text
    assert "Generate to see two answers" in page_text(at)
    by_label(at.button, "Generate").click().run()
    by_label(at.selectbox, "First model").select(run_id(ws_env, OTHER_RUN)).run()
    assert at.session_state[state.BLIND_PAIR] is None and not at.text


def test_max_new_tokens_stops_at_the_first_models_context(ws_env):
    at = blind_page(ws_env, GOOD_RUN, "base")
    assert by_label(at.slider, "Max new tokens").max == 512  # the demo base's whole context


def test_a_tie_is_stored_but_not_a_dpo_pair(ws_env):
    at = blind_page(ws_env, GOOD_RUN, run_id(ws_env, OTHER_RUN))
    by_label(at.text_area, "Prompt").input("Say hello.").run()
    by_label(at.button, "Generate").click().run()
    by_label(at.button, "Tie").click().run()
    assert not at.exception, at.exception
    assert "Vote stored: Tie" in page_text(at)
    votes = Workspace.open(ws_env).list_votes()
    assert votes[-1].verdict == "tie"
    assert "left out 1 tie(s)" in page_text(at)
    lines = [json.loads(line) for line in _dpo(votes)]
    assert all(set(line) == {"prompt", "chosen", "rejected"} for line in lines)
    assert "Say hello." not in {line["prompt"] for line in lines}


def _dpo(votes):
    from ff_lib.votes import dpo_export

    return dpo_export(votes).jsonl().decode().splitlines()


def test_draw_a_prompt_fills_the_prompt_from_the_dataset(ws_env):
    at = start(BLIND)
    by_label(at.button, "Draw a prompt").click().run()
    assert not at.exception, at.exception
    prompt = by_label(at.text_area, "Prompt").value
    ds = by_label(at.selectbox, "Dataset").value
    rows = {p.prompt for p in Workspace.open(ws_env).dataset_pairs(ds)}
    assert prompt in rows


def test_a_run_that_cannot_answer_is_refused_and_generate_stays_off(ws_env):
    at = start(BLIND)
    by_label(at.selectbox, "First model").select(run_id(ws_env, BROKEN)).run()
    assert not at.exception, at.exception
    assert at.error and BROKEN in at.error[0].value
    assert by_label(at.button, "Generate").disabled


def test_an_empty_prompt_is_refused_with_a_message(ws_env):
    at = blind_page(ws_env, GOOD_RUN, "base")
    by_label(at.button, "Generate").click().run()
    assert not at.exception, at.exception
    assert "The prompt is empty" in page_text(at)
    assert at.session_state[state.BLIND_PAIR] is None


def test_a_second_model_that_cannot_answer_is_refused_with_its_reason(ws_env):
    at = start(BLIND)
    by_label(at.selectbox, "First model").select(run_id(ws_env, GOOD_RUN)).run()
    second = by_label(at.selectbox, "Second model")
    broken = run_id(ws_env, BROKEN)
    assert second.options[0].startswith("base model")
    assert any(o.startswith(f"✗ {BROKEN} (run {broken})") for o in second.options)
    second.select(broken).run()
    assert not at.exception, at.exception
    assert at.error and f"Run {broken} ({BROKEN}) cannot answer" in at.error[0].value
    assert by_label(at.button, "Generate").disabled


def test_checkpoint_against_checkpoint_reveals_which_checkpoint_answered(ws_env):
    capitals = run_id(ws_env, GOOD_RUN)
    at = start(BLIND)
    first = by_label(at.selectbox, "First model")
    assert f"{GOOD_RUN} · checkpoint-50" in first.options  # checkpoints after the runs
    first.select(f"{capitals}@checkpoint-50").run()
    assert not at.exception, at.exception
    assert any("registered checkpoint-50" in t.value for t in at.toast)  # said out loud
    second = by_label(at.selectbox, "Second model")
    assert f"{GOOD_RUN} · checkpoint-150" in second.options
    assert f"{GOOD_RUN} · checkpoint-50" not in second.options  # the first model itself
    second.select(f"{capitals}@checkpoint-150").run()
    by_label(at.radio, "Preset").set_value("Deterministic").run()
    by_label(at.slider, "Max new tokens").set_value(16).run()
    by_label(at.text_area, "Prompt").input(PROMPT).run()
    by_label(at.button, "Generate").click().run()
    by_label(at.button, "Both bad").click().run()
    assert not at.exception, at.exception
    pair = at.session_state[state.BLIND_PAIR]
    labels = sorted(m["label"].split(" (run ")[0] for m in (pair.model_a, pair.model_b))
    assert labels == [f"{GOOD_RUN}-checkpoint-150", f"{GOOD_RUN}-checkpoint-50"]
    assert f"A was **{pair.model_a['label']}**" in page_text(at)
    vote = Workspace.open(ws_env).list_votes()[-1]
    adapters = sorted(Path(m["adapter"]).name for m in (vote.model_a, vote.model_b))
    assert adapters == ["checkpoint-150", "checkpoint-50"]


def test_a_preset_sets_max_new_tokens_and_the_dataset_is_the_first_model_s(ws_env):
    at = start(BLIND)
    by_label(at.selectbox, "First model").select(run_id(ws_env, GOOD_RUN)).run()
    by_label(at.radio, "Preset").set_value("Deterministic").run()
    assert by_label(at.slider, "Max new tokens").value == 128  # the preset's, as on Inference
    capitals = run_named(ws_env, GOOD_RUN).dataset_id
    assert by_label(at.selectbox, "Dataset").value == capitals


def test_identical_answers_are_said_and_a_vote_between_them_is_no_dpo_pair(ws_env):
    capitals = run_id(ws_env, GOOD_RUN)
    at = start(BLIND)
    by_label(at.selectbox, "First model").select(capitals).run()
    by_label(at.selectbox, "Second model").select(f"{capitals}@checkpoint-150").run()
    by_label(at.radio, "Preset").set_value("Deterministic").run()
    by_label(at.text_area, "Prompt").input("What is the capital of France?").run()
    by_label(at.button, "Generate").click().run()
    pair = at.session_state[state.BLIND_PAIR]
    assert pair.answer_a.strip() == pair.answer_b.strip()  # both trained past this answer
    assert "A and B gave the same answer" in page_text(at)
    by_label(at.button, "A better").click().run()
    assert not at.exception, at.exception
    assert "1 vote(s) between identical answers" in page_text(at)
