"""Checkpoints as models to compare: offered beside a run (keyed 'RUN@checkpoint-N'), answering
as the run registered with their folder (registered once, named after the checkpoint), on the
Blind test's boxes and in `compare --models` (the demo's checkpoint-50/100/150)."""

import json
from pathlib import Path

import pytest

from ff_lib import compare
from ff_lib.data import Workspace
from ff_lib.errors import InvalidInput
from ff_lib.runs import check_run
from tests.apptest_helpers import private_copy, run_named
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_cli_eval import cli

CAPITALS, PIRATE = "capitals-lora", "pirate-lora"
STEPS = ("checkpoint-50", "checkpoint-100", "checkpoint-150")


@pytest.fixture
def demo_copy(demo_workspace, tmp_path_factory) -> Path:  # noqa: F811
    """A fresh copy per test: registering a checkpoint writes a run."""
    return private_copy(demo_workspace, tmp_path_factory, "ckpt")


def main_check(folder: Path, name: str = CAPITALS):
    return check_run(run_named(folder, name))


def test_compare_offers_each_checkpoint_of_runs_on_the_base_the_run_s_own_first(demo_copy):
    ws = Workspace.open(demo_copy)
    capitals, pirate = run_named(demo_copy, CAPITALS), run_named(demo_copy, PIRATE)
    choices = compare.compare_choices(main_check(demo_copy), ws.list_runs(), checkpoints=True)
    points = [c for c in choices if compare.is_checkpoint_key(c.key)]
    assert [(c.key, c.label, c.ok) for c in points] == [
        *[(f"{capitals.id}@{s}", f"{CAPITALS} · {s}", True) for s in STEPS],
        *[(f"{pirate.id}@{s}", f"{PIRATE} · {s}", True) for s in STEPS],
    ]
    assert choices[0].key == compare.BASE and pirate.id in [c.key for c in choices]
    plain = compare.compare_choices(main_check(demo_copy), ws.list_runs())
    assert not any(compare.is_checkpoint_key(c.key) for c in plain)  # scorecards: runs only


def test_a_checkpoint_answers_as_a_run_registered_once_and_is_not_offered_twice(demo_copy):
    ws = Workspace.open(demo_copy)
    main = main_check(demo_copy)
    key = f"{main.run_id}@checkpoint-100"
    before = len(ws.list_runs())
    (side,) = compare.compare_sides(ws, main, [key])
    assert side.label == f"{CAPITALS}-checkpoint-100"  # the column says which checkpoint
    assert Path(side.adapter_dir).name == "checkpoint-100" and side.run_id is not None
    assert side.run.params["checkpoint_of"] == main.run_id and side.run.params["step"] == 100
    assert compare.compare_sides(ws, main, [key])[0].run_id == side.run_id  # registered once
    assert len(ws.list_runs()) == before + 1

    keys = [c.key for c in compare.compare_choices(main, ws.list_runs(), checkpoints=True)]
    assert key in keys and side.run_id not in keys  # the same model, offered once, key kept
    with pytest.raises(InvalidInput, match="chosen twice"):
        compare.compare_sides(ws, main, [key, side.run_id])

    as_main = check_run(ws.get_run(side.run_id))  # chatting with the checkpoint itself
    beside = [c.key for c in compare.compare_choices(as_main, ws.list_runs(), checkpoints=True)]
    assert key not in beside and main.run_id in beside
    points = [k for k in beside if compare.is_checkpoint_key(k)]  # the run it came from first
    assert points[:2] == [f"{main.run_id}@checkpoint-50", f"{main.run_id}@checkpoint-150"]


def test_checkpoint_specs_by_name_or_step_and_refusals(demo_copy):
    ws = Workspace.open(demo_copy)
    sides = compare.resolve_models(ws, [f"{CAPITALS}@50", f"{CAPITALS}@checkpoint-150", "base"])
    assert [s.label for s in sides] == [
        f"{CAPITALS}-checkpoint-50", f"{CAPITALS}-checkpoint-150", "base model"]  # fmt: skip
    with pytest.raises(InvalidInput, match=r"has no checkpoint-7 \(its checkpoints: checkpoint-50"):
        compare.resolve_models(ws, [f"{CAPITALS}@checkpoint-7"])
    with pytest.raises(InvalidInput, match="Unknown model 'nope'"):
        compare.resolve_models(ws, ["nope@checkpoint-50"])
    assert not compare.is_checkpoint_key("team@home")  # a run name with an @ stays a name


def test_model_choices_list_runs_then_checkpoints_each_folder_once(demo_copy):
    ws = Workspace.open(demo_copy)
    capitals = run_named(demo_copy, CAPITALS)
    registered = compare.checkpoint_run(ws, f"{capitals.id}@checkpoint-50")
    choices = compare.model_choices(ws.list_runs())
    keys = [c.key for c in choices]
    assert registered.id not in keys and keys.count(f"{capitals.id}@checkpoint-50") == 1
    assert capitals.id in keys and keys.index(capitals.id) < keys.index(
        f"{capitals.id}@checkpoint-50"
    )
    assert len([k for k in keys if compare.is_checkpoint_key(k)]) == 6


@pytest.mark.slow
def test_cli_compare_json_names_the_checkpoint_that_answered(capsys, demo_copy):
    models = f"{CAPITALS}@checkpoint-50,{CAPITALS},base"
    code, out, err = cli(capsys, Workspace.open(demo_copy), "compare", "--prompt", "What is the capital of France?",
                         "--models", models, "--preset", "Deterministic", "--max-new-tokens", "16",
                         "--json")  # fmt: skip
    assert code == 0, err
    answers = json.loads(out)["answers"]
    assert [a["model"] for a in answers] == models.split(",")
    assert answers[0]["label"] == f"{CAPITALS}-checkpoint-50"
    assert Path(answers[0]["adapter"]).name == "checkpoint-50"
    assert answers[1]["adapter"].endswith("adapter") and answers[2]["adapter"] is None
    assert all(a["stats"]["new_tokens"] > 0 for a in answers)
    # The first use registered a run, and said so (on stderr: stdout stays one JSON document).
    ckpt = run_named(demo_copy, f"{CAPITALS}-checkpoint-50")
    assert (f"note: registered checkpoint-50 of {CAPITALS} as run '{ckpt.name}' (id {ckpt.id})"
            in err)  # fmt: skip
    notes: list[str] = []  # the second time the run is there already: nothing to say
    sides = compare.resolve_models(Workspace.open(demo_copy), models.split(","), None, notes)
    assert notes == [] and sides[0].run_id == ckpt.id
