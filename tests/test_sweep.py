"""Checkpoint sweep: discovery, trainer_state.json, the best point, the demo's checkpoints, the
batched pass, storage (m007_sweeps) and the `sweep` CLI."""

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from transformers import TrainerState

from ff_lib.data import Workspace
from ff_lib.data.migrations import migrate
from ff_lib.errors import InvalidInput
from ff_lib.inference import get_host
from ff_lib.sweep import (
    CSV_COLUMNS,
    FINAL,
    best_point,
    find_checkpoints,
    read_trainer_state,
    register_checkpoint,
    run_folder,
    sweep_csv,
    sweep_run,
)
from tests.apptest_helpers import private_copy, run_named
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_cli_eval import cli


def _state(folder: Path, step: int, history: list[dict]) -> None:
    """A trainer_state.json written by transformers' own TrainerState, as the Trainer does."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    TrainerState(global_step=step, max_steps=30, log_history=history).save_to_json(
        str(folder / "trainer_state.json")
    )


HISTORY = [
    {"epoch": 0.5, "grad_norm": 1.2, "learning_rate": 1e-4, "loss": 2.5, "step": 10},
    {"epoch": 0.5, "eval_loss": 2.7, "eval_runtime": 1.0, "step": 10},
    {"epoch": 1.0, "grad_norm": 0.9, "learning_rate": 5e-5, "loss": 1.5, "step": 20},
    {"epoch": 1.5, "grad_norm": 0.7, "learning_rate": 1e-5, "loss": 1.1, "step": 30},
    {"epoch": 1.5, "eval_loss": 1.9, "step": 30},
]


def test_checkpoints_found_by_step_with_their_logged_losses(tmp_path):
    run = tmp_path / "run"
    _state(run / "checkpoint-30", 30, HISTORY)
    _state(run / "checkpoint-10", 10, HISTORY[:2])
    _state(run / "checkpoint-20", 20, HISTORY[:3])
    (run / "checkpoint-40").mkdir()  # no adapter in it: not a checkpoint
    (run / "adapter").mkdir()
    assert run_folder(run / "adapter") == run
    assert run_folder(run) == run
    points = find_checkpoints(run)
    assert [(p.name, p.step) for p in points] == [
        ("checkpoint-10", 10), ("checkpoint-20", 20), ("checkpoint-30", 30)]  # fmt: skip
    assert (points[0].log.train_loss, points[0].log.eval_loss) == (2.5, 2.7)
    assert (points[1].log.train_loss, points[1].log.eval_loss) == (1.5, 2.7)
    assert (points[2].log.train_loss, points[2].log.eval_loss) == (1.1, 1.9)


def test_trainer_state_absent_or_broken(tmp_path):
    assert read_trainer_state(tmp_path).step is None
    (tmp_path / "trainer_state.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="trainer_state.json"):
        read_trainer_state(tmp_path)


def test_best_is_the_highest_exact_match_then_token_f1():
    def point(name, em, f1):
        return {"name": name, "step": 0, "scores": {"exact_match": em, "token_f1": f1}}

    points = [point("a", 0.5, 0.9), point("b", 0.8, 0.1), point("c", 0.8, 0.5), point("d", 0.2, 1)]
    assert best_point(points)["name"] == "c"
    assert best_point([point("a", 1, 1), point("b", 1, 1)])["name"] == "a"  # earliest on a tie


def test_m007_creates_the_sweeps_table_on_a_blank_database():
    con = duckdb.connect(":memory:")
    assert "m007_sweeps" in migrate(con)
    columns = {r[0] for r in con.execute("DESCRIBE sweeps").fetchall()}
    assert {"id", "run_id", "dataset_id", "n", "document", "created_at"} <= columns


@pytest.fixture(scope="module")
def sweep_demo(demo_workspace, tmp_path_factory):  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "sweep")


def test_demo_runs_hold_checkpoints_with_trainer_state(sweep_demo):
    run = run_named(sweep_demo, "capitals-lora")
    points = find_checkpoints(run_folder(run.adapter_path))
    assert [p.step for p in points] == [50, 100, 150]
    final = read_trainer_state(Path(run.adapter_path))
    assert final.step == 200 and final.train_loss is not None
    assert [e["step"] for e in final.history] == list(range(10, 201, 10))
    assert points[0].log.train_loss > final.train_loss


@pytest.mark.slow
def test_demo_sweep_best_is_not_the_first_and_scores_highest(sweep_demo):
    ws = Workspace.open(sweep_demo)
    run, host = run_named(sweep_demo, "capitals-lora"), get_host()
    host.load_base(run.base_model)
    host._engine.scheduler.max_batch_seen = 0
    doc = sweep_run(host, ws, run.id, run.dataset_id, n=20, max_new_tokens=48)
    assert host._engine.scheduler.max_batch_seen > 1  # one batched pass, not a loop
    assert [p["name"] for p in doc["points"]] == [
        "checkpoint-50", "checkpoint-100", "checkpoint-150", FINAL]  # fmt: skip
    assert [p["step"] for p in doc["points"]] == [50, 100, 150, 200]
    best = next(p for p in doc["points"] if p["name"] == doc["best"]["name"])
    assert best["name"] != "checkpoint-50"
    key = (best["scores"]["exact_match"], best["scores"]["token_f1"])
    assert all(key >= (p["scores"]["exact_match"], p["scores"]["token_f1"]) for p in doc["points"])
    assert key > (doc["points"][0]["scores"]["exact_match"], doc["points"][0]["scores"]["token_f1"])
    assert best["scores"]["exact_match"] > doc["base"]["scores"]["exact_match"]
    stored = ws.list_sweeps(run.id)[0]
    assert stored.id == doc["sweep_id"] and stored.document["best"] == doc["best"]


def test_cli_sweep_json_shape(capsys, sweep_demo):
    ws = Workspace.open(sweep_demo)
    run = run_named(sweep_demo, "pirate-lora")
    args = ("sweep", "--run", run.id, "--dataset", run.dataset_id, "-n", 3,
            "--max-new-tokens", 12, "--json")  # fmt: skip
    code, out, err = cli(capsys, ws, *args)
    assert code == 0, err
    doc = json.loads(out)
    assert {"points", "base", "best"} <= set(doc)
    for point in doc["points"]:
        assert {"name", "step", "adapter_dir", "scores", "train_loss", "eval_loss"} <= set(point)
        assert set(point["scores"]) == {"exact_match", "token_f1", "rouge_l"}
    assert [p["step"] for p in doc["points"]] == [50, 100, 150, 200]
    assert doc["points"][-1]["name"] == FINAL
    assert set(doc["base"]["scores"]) == {"exact_match", "token_f1", "rouge_l"}
    assert set(doc["best"]) == {"name", "step"}


def test_cli_sweep_refuses_a_run_without_checkpoints(capsys, sweep_demo, tmp_path):
    ws = Workspace.open(sweep_demo)
    run = run_named(sweep_demo, "capitals-lora")
    lone = tmp_path / "lone" / "adapter"
    shutil.copytree(run.adapter_path, lone)
    other = ws.add_run("lone-adapter", run.base_model, str(lone), status="completed",
                       dataset_id=run.dataset_id)  # fmt: skip
    code, out, err = cli(capsys, ws, "sweep", "--run", other.id, "--dataset", run.dataset_id)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no checkpoint-N folders" in err


def test_register_checkpoint_once_and_csv_export(sweep_demo):
    ws = Workspace.open(sweep_demo)
    run = run_named(sweep_demo, "pirate-lora")
    point = find_checkpoints(run_folder(run.adapter_path))[1]
    doc_point = {"name": point.name, "step": point.step, "adapter_dir": str(point.adapter_dir)}
    first = register_checkpoint(ws, run, doc_point)
    assert first.name == "pirate-lora-checkpoint-100" and first.status == "completed"
    assert register_checkpoint(ws, run, doc_point).id == first.id  # not registered twice
    scores = {"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0}
    doc = {"points": [{**doc_point, "scores": scores, "train_loss": 0.1, "eval_loss": None}],
           "base": {"scores": scores}, "best": {"name": point.name, "step": 100}}  # fmt: skip
    lines = sweep_csv(doc).splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 3
    assert lines[1].startswith("checkpoint-100,100,1.0,1.0,1.0,0.1,,True,")


def test_cli_sweep_refuses_a_checkpoint_run_and_names_its_training_run(capsys, sweep_demo):
    """A run registered from a checkpoint (Compare, "Chat with this checkpoint") has no
    checkpoints: sweeping it must not sweep its later siblings as if they were its own."""
    ws = Workspace.open(sweep_demo)
    run = run_named(sweep_demo, "capitals-lora")
    point = find_checkpoints(run_folder(run.adapter_path))[0]
    ckpt = register_checkpoint(ws, run, {"name": point.name, "step": point.step,
                                         "adapter_dir": str(point.adapter_dir)})  # fmt: skip
    args = ("sweep", "--run", ckpt.id, "--dataset", run.dataset_id, "-n", 2)
    code, out, err = cli(capsys, ws, *args)
    assert code == 1 and out == ""
    assert f"'{ckpt.name}' (id {ckpt.id}) is checkpoint-50 of run 'capitals-lora'" in err
    assert f"sweep --run {run.id} " in err
    assert ws.list_sweeps(ckpt.id) == []  # nothing stored under the checkpoint run
