"""Checkpoint sweep: every checkpoint of a run, its final adapter and the base answer n dataset
rows in one batched pass; each is scored, and the best checkpoint is marked.

A run folder holds `checkpoint-N/` folders (the HF Trainer, TRL, Unsloth and Axolotl write
them), each with the adapter files and a `trainer_state.json` (transformers' TrainerState:
`global_step`, `log_history` entries with `loss` / `eval_loss` and `step`).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ff_lib.errors import InvalidInput, NotFound
from ff_lib.evaluation import DEFAULT_SCORE_ROWS, MAX_SCORE_ROWS, SCORE_PRESET, score_settings
from ff_lib.inference.adapters import CONFIG_FILE
from ff_lib.runs import CHECKPOINT, checkpoint_of, usable_run
from ff_lib.scoring import mean_scores, score_answer

STATE_FILE = "trainer_state.json"
FINAL = "final"  # the name of the run's own (final) adapter among the points


@dataclass(frozen=True)
class TrainerLog:
    """What a trainer_state.json says: the step and the last logged losses up to it."""

    step: int | None
    train_loss: float | None
    eval_loss: float | None
    history: tuple[dict, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class SweepPoint:
    """One adapter the sweep answers with: a checkpoint or the final adapter."""

    name: str
    step: int | None
    adapter_dir: Path
    log: TrainerLog


def read_trainer_state(folder: Path) -> TrainerLog:
    """The step and logged losses of `folder/trainer_state.json`; all None when it is absent."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return TrainerLog(None, None, None)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} cannot be read as JSON ({exc}): fix or remove it.") from exc
    history = tuple(e for e in state.get("log_history") or [] if isinstance(e, dict))
    step = state.get("global_step")
    step = step if isinstance(step, int) else None
    return TrainerLog(
        step, _last(history, "loss", step), _last(history, "eval_loss", step), history
    )


def _last(history: tuple[dict, ...], key: str, step: int | None) -> float | None:
    """The last logged `key` at or before `step`."""
    found = [e[key] for e in history if key in e and (step is None or e.get("step", 0) <= step)]
    return float(found[-1]) if found else None


def run_folder(adapter_path: str | Path) -> Path:
    """The folder that holds a run's checkpoints: the registered path itself when it holds
    `checkpoint-N` folders, else the folder above it (the adapter sits in `adapter/` below)."""
    path = Path(adapter_path).expanduser()
    if path.is_dir() and any(CHECKPOINT.match(c.name) for c in path.iterdir()):
        return path
    return path.parent


def has_checkpoints(folder: Path) -> bool:
    """Whether `folder` (or `folder/outputs`) holds a checkpoint-N folder with an adapter; reads
    no trainer_state.json (cheap enough for every rerun of a page)."""
    return bool(checkpoint_folders(folder))


def checkpoint_folders(folder: Path) -> list[tuple[str, int, Path]]:
    """(name, N, resolved folder) of each `checkpoint-N` folder holding an adapter, in `folder`
    or `folder/outputs`, by N; reads no trainer_state.json (cheap enough for every rerun)."""
    found = []
    for parent in (Path(folder), Path(folder) / "outputs"):
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            match = CHECKPOINT.match(child.name)
            if match and (child / CONFIG_FILE).is_file():
                found.append((child.name, int(match.group(1)), child.resolve()))
    return sorted(found, key=lambda f: f[1])


def find_checkpoints(folder: Path) -> list[SweepPoint]:
    """The `checkpoint-N` folders holding an adapter, in `folder` or `folder/outputs`, by step."""
    points = []
    for name, number, path in checkpoint_folders(folder):
        log = read_trainer_state(path)
        points.append(SweepPoint(name, log.step if log.step is not None else number, path, log))
    return sorted(points, key=lambda p: p.step)


def checkpoint_refusal(ws, run) -> str | None:
    """Why `run` cannot be swept when it is itself a checkpoint (its sibling checkpoint-N folders
    belong to the training run it came from), naming that run; None for a training run."""
    mark = checkpoint_of(run)
    if mark is None:
        return None
    parent = None
    if mark.parent_id is not None:
        try:
            parent = ws.get_run(mark.parent_id)
        except NotFound:
            parent = None
    head = f"Run '{run.name}' (id {run.id}) is {mark.name}"
    if parent is None:
        return (
            f"{head}, registered as a run: a checkpoint has no checkpoints of its own. "
            "Sweep the training run that saved it instead."
        )
    return (
        f"{head} of run '{parent.name}' (id {parent.id}): a checkpoint has no checkpoints of "
        f"its own. Sweep run '{parent.name}' instead (python -m ff_lib sweep --run {parent.id} "
        "--dataset ID)."
    )


def sweep_points(run, adapter_dir: str | Path) -> list[SweepPoint]:
    """The run's checkpoints then its final adapter (the one `adapter_dir` names), by step.

    Refused (InvalidInput) when the run folder holds no checkpoints."""
    folder = run_folder(run.adapter_path)
    points = find_checkpoints(folder)
    if not points:
        raise InvalidInput(
            f"Run '{run.name}' has no checkpoint-N folders in {folder}: nothing to sweep "
            "(save checkpoints while training, e.g. the Trainer's save_steps)."
        )
    final_dir = Path(adapter_dir).resolve()
    if any(p.adapter_dir == final_dir for p in points):
        return points  # the run's adapter is its newest checkpoint
    log = read_trainer_state(final_dir)
    return [*points, SweepPoint(FINAL, log.step, final_dir, log)]


def best_point(points: list[dict]) -> dict:
    """The point with the highest exact match, then token F1 (the earliest on a tie)."""
    return max(points, key=lambda p: (p["scores"]["exact_match"], p["scores"]["token_f1"],
                                      -points.index(p)))  # fmt: skip


def sweep_run(host, ws, run_id: int, dataset_id: int, *, n: int = DEFAULT_SCORE_ROWS,
              quantization: str = "auto", max_new_tokens: int | None = None) -> dict:  # fmt: skip
    """Sweep a run's checkpoints on the first n rows of a dataset; the sweep is stored in the
    workspace and its document returned (`points` by step with scores and logged losses,
    `base`, `best`, `sweep_id`)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SCORE_ROWS:
        raise InvalidInput(f"Rows to sweep must be between 1 and {MAX_SCORE_ROWS} (got {n!r}).")
    main = usable_run(ws, run_id, None)
    refusal = checkpoint_refusal(ws, main.run)
    if refusal:
        raise InvalidInput(refusal)
    points = sweep_points(main.run, main.adapter_dir)
    dataset = ws.get_dataset(dataset_id)
    pairs = ws.dataset_pairs(dataset_id, limit=n)
    if not pairs:
        raise InvalidInput(f"Dataset {dataset.name} has no rows to sweep.")
    settings = score_settings(max_new_tokens)
    adapters = [p.adapter_dir for p in points] + [None]
    jobs = [
        {
            "base_model": main.base_model,
            "messages": [{"role": "user", "content": pair.prompt}],
            "settings": settings,
            "adapter_dir": adapter,
            "quantization": quantization,
        }
        for adapter in adapters
        for pair in pairs
    ]
    replies = host.generate_many(jobs)
    texts = [r.text for r in replies]
    means = [
        mean_scores(
            score_answer(text, pair.response)
            for text, pair in zip(texts[i * len(pairs) : (i + 1) * len(pairs)], pairs, strict=True)
        )
        for i in range(len(adapters))
    ]
    docs = [_point_doc(p, s) for p, s in zip(points, means, strict=False)]
    best = best_point(docs)
    doc = {
        "run": {"id": main.run_id, "name": main.run_name},
        "dataset": {"id": dataset.id, "name": dataset.name},
        "n": len(pairs),
        "base_model": main.base_model,
        "preset": SCORE_PRESET,
        "points": docs,
        "base": {"scores": means[-1]},
        "best": {"name": best["name"], "step": best["step"]},
        "loss_history": _loss_history(points),
    }
    return {**doc, "sweep_id": ws.add_sweep(doc).id}


def _point_doc(point: SweepPoint, scores: dict) -> dict:
    return {
        "name": point.name,
        "step": point.step,
        "adapter_dir": str(point.adapter_dir),
        "scores": scores,
        "train_loss": point.log.train_loss,
        "eval_loss": point.log.eval_loss,
    }


def _loss_history(points: list[SweepPoint]) -> list[dict]:
    """The logged train/eval losses of the newest trainer_state.json that has any."""
    for point in reversed(points):
        if point.log.history:
            keys = ("step", "loss", "eval_loss")
            return [{k: e[k] for k in keys if k in e} for e in point.log.history if "step" in e]
    return []


# --- exports, chart data, registering a checkpoint ---------------------------------------------
CSV_COLUMNS = ("name", "step", "exact_match", "token_f1", "rouge_l", "train_loss", "eval_loss",
               "best", "adapter_dir")  # fmt: skip


def sweep_table(doc: dict) -> list[dict]:
    """One flat row per point then the base: the table and the CSV export."""
    best = doc["best"]["name"]
    rows = [
        {"name": p["name"], "step": p["step"], **p["scores"], "train_loss": p["train_loss"],
         "eval_loss": p["eval_loss"], "best": p["name"] == best, "adapter_dir": p["adapter_dir"]}
        for p in doc["points"]
    ]  # fmt: skip
    rows.append({"name": "base", "step": None, **doc["base"]["scores"], "train_loss": None,
                 "eval_loss": None, "best": False, "adapter_dir": None})  # fmt: skip
    return rows


def sweep_csv(doc: dict) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sweep_table(doc))
    return out.getvalue()


def score_series(doc: dict) -> list[dict]:
    """Long-form rows (step, metric, value, name) of each point's scores, for a line chart;
    a point without a step is left out of the chart (it stays in the table)."""
    return [
        {"step": p["step"], "metric": metric, "value": value, "name": p["name"]}
        for p in doc["points"]
        if p["step"] is not None
        for metric, value in p["scores"].items()
    ]


def register_checkpoint(ws, run, point: dict, notes: list[str] | None = None):
    """The run whose adapter is this point's folder: an existing one, else a new completed run
    named after the run and the checkpoint (made unique by the workspace); a new one is said
    out loud in `notes` (registration_note)."""
    folder = Path(point["adapter_dir"]).resolve()
    for other in ws.list_runs():
        if other.adapter_path and Path(other.adapter_path).resolve() == folder:
            return other
    new = ws.add_run(
        f"{run.name}-{point['name']}",
        run.base_model,
        str(folder),
        status="completed",
        dataset_id=run.dataset_id,
        params={**(run.params or {}), "checkpoint_of": run.id, "step": point["step"]},
    )
    if notes is not None:
        notes.append(registration_note(run, point["name"], new))
    return new


def registration_note(parent, name: str, new) -> str:
    """What a page or the CLI says when a checkpoint is first registered as a run."""
    return f"registered {name} of {parent.name} as run '{new.name}' (id {new.id})"
