"""Compare up to four models side by side: which may sit beside a run, and one batched pass.

A side is a `RunCheck` (ff_lib.runs): the base alone (no adapter), a run on the same base, or a
checkpoint of one ('RUN@checkpoint-N'), which answers as a run: the one registered with its folder,
else a new run named after it (ff_lib.sweep.register_checkpoint, as the sweep's "Chat with").
Every side answers the same messages in one batched pass of the engine (all streams started
before any is read), so N sides cost about one reply's time, not N.
"""

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import InvalidInput
from ff_lib.inference.adapters import validate_adapter
from ff_lib.inference.base_identity import same_base
from ff_lib.runs import (
    CANNOT_ANSWER,
    RunCheck,
    _short,
    check_adapter_folder,
    check_base_only,
    check_run,
    checkpoint_of,
    find_run,
    run_choices,
    runs_for_choice,
)
from ff_lib.sweep import CHECKPOINT, checkpoint_folders, register_checkpoint, run_folder

MAX_SIDES = 4  # the selected run and up to three more
BASE = "base"  # the key of the base model, in the page's choice and on the command line
BASE_LABEL = "base model"
CHECKPOINT_MARK = "@"  # 'RUN@checkpoint-N' (or 'RUN@N'): a checkpoint of a run, by id or name


@dataclass(frozen=True)
class CompareChoice:
    """One model "Compare with" offers: the base (key 'base'), a run by its id, or a checkpoint
    of a run ('RUN_ID@checkpoint-N')."""

    key: str | int
    label: str
    ok: bool
    reason: str  # '' when ok


def base_name(base_model: str) -> str:
    """A base as a box's label shows it: a local folder by its name (the full path is on the
    page's model line), a hub id as it is."""
    path = Path(str(base_model)).expanduser()
    return path.name if path.is_absolute() or str(base_model).startswith(".") else str(base_model)


def base_side(base_model: str) -> RunCheck:
    """The base answering alone, on `base_model` (already known to be here)."""
    return RunCheck(True, "", None, BASE_LABEL, "", None, str(base_model))


# --- checkpoints as models --------------------------------------------------------------------
def is_checkpoint_key(key) -> bool:
    """Whether `key` names a checkpoint of a run ('RUN@checkpoint-N' or 'RUN@N')."""
    if not isinstance(key, str) or CHECKPOINT_MARK not in key:
        return False
    tail = key.rpartition(CHECKPOINT_MARK)[2]
    return bool(CHECKPOINT.match(tail)) or tail.isdigit()


def checkpoint_key(run_id: int, name: str) -> str:
    return f"{run_id}{CHECKPOINT_MARK}{name}"


def _own_checkpoints(run) -> list[tuple[str, int, Path]]:
    """The run's checkpoint-N folders; none for a run whose adapter is itself a checkpoint (one
    registered from a sweep or Compare: its sibling folders belong to the run it came from)."""
    if not run.adapter_path or checkpoint_of(run) is not None:
        return []
    return checkpoint_folders(run_folder(run.adapter_path))


def _checkpoints(runs: Iterable) -> list[tuple[object, str, Path]]:
    """(run, checkpoint name, folder) of every run's checkpoints, each folder once, by run."""
    seen: set[Path] = set()
    found = []
    for run in runs_for_choice(runs):
        for name, _, folder in _own_checkpoints(run):
            if folder not in seen:
                seen.add(folder)
                found.append((run, name, folder))
    return found


def _choice(key, label: str, check) -> CompareChoice:
    """A choice that can answer, or one listed with ✗ and its short reason (all of it kept)."""
    if check.ok:
        return CompareChoice(key, label, True, "")
    short = f"{CANNOT_ANSWER} {label} — {_short(check.message)}"
    return CompareChoice(key, short, False, check.message)


def _checkpoint_choice(run, name: str, folder: Path, base: str | None, validate) -> CompareChoice:
    check = check_adapter_folder(folder, base or run.base_model, validate)
    return _choice(checkpoint_key(run.id, name), f"{run.name} · {name}", check)


def _is_registered_checkpoint(run, folders: set[Path]) -> bool:
    """A run registered with a checkpoint's folder: offered as that checkpoint, not twice."""
    return bool(run.adapter_path) and Path(run.adapter_path).resolve() in folders


def model_choices(runs: Iterable, validate: Callable = validate_adapter) -> list[CompareChoice]:
    """Every run (box order, ✗ and why on those that cannot answer), then every checkpoint of a
    run, each on its run's base: what a page offers as a model to answer on its own."""
    runs = list(runs)
    points = _checkpoints(runs)
    folders = {folder for _, _, folder in points}
    shown = [r for r in runs if not _is_registered_checkpoint(r, folders)]
    choices = [CompareChoice(c.id, c.label, c.ok, c.reason) for c in run_choices(shown, validate)]
    return choices + [_checkpoint_choice(r, n, f, None, validate) for r, n, f in points]


def checkpoint_run(ws, spec: str, notes: list[str] | None = None):
    """The run that answers as checkpoint `spec` ('RUN@checkpoint-N' or 'RUN@N', RUN a run's id
    or unique name): the one registered with its folder, else a new completed run named
    '<run>-checkpoint-N' (said in `notes`). InvalidInput when the run has no such checkpoint."""
    run_spec, _, name = spec.strip().rpartition(CHECKPOINT_MARK)
    name = f"checkpoint-{name}" if name.isdigit() else name
    parent = _run_by_spec(ws, run_spec)
    found = {n: (number, folder) for n, number, folder in _own_checkpoints(parent)}
    if name not in found:
        have = ", ".join(found) or "none"
        raise InvalidInput(f"Run '{parent.name}' has no {name} (its checkpoints: {have}).")
    number, folder = found[name]
    point = {"name": name, "step": number, "adapter_dir": str(folder)}
    return register_checkpoint(ws, parent, point, notes)


def compare_choices(
    main: RunCheck, runs: Iterable, validate: Callable = validate_adapter, checkpoints: bool = False
) -> list[CompareChoice]:
    """What may sit beside `main`: the base, then the other runs on its base (box order), then
    (with `checkpoints`) the checkpoints of runs on its base, main's run's first; one that cannot
    answer is listed with ✗ and why (choosing it is refused)."""
    choices = [CompareChoice(BASE, f"{BASE_LABEL} · {base_name(main.base_model)}", True, "")]
    runs = [
        r for r in runs if not r.base_model or same_base(r.base_model, main.base_model)
    ]  # another base cannot share the batch
    points = _checkpoints(runs) if checkpoints else []
    own = Path(main.adapter_dir).resolve() if main.adapter_dir else None
    mark = checkpoint_of(main.run) if main.run is not None else None
    family = {main.run_id, mark.parent_id if mark else None}
    points = sorted((p for p in points if p[2] != own), key=lambda p: p[0].id not in family)
    folders = {folder for _, _, folder in points} | ({own} if own and checkpoints else set())
    for run in runs_for_choice(runs):
        if run.id == main.run_id or _is_registered_checkpoint(run, folders):
            continue
        check = check_run(run, main.base_model, validate)
        choices.append(_choice(run.id, f"{run.name} (run {run.id})", check))
    return choices + [_checkpoint_choice(r, n, f, main.base_model, validate) for r, n, f in points]


def _refuse_other_base(main_base: str, check: RunCheck) -> None:
    run_base = getattr(check.run, "base_model", None) or check.base_model
    if run_base and not same_base(run_base, main_base):
        raise InvalidInput(
            f"Run {check.run_id} ({check.run_name}) is on base {run_base}, not {main_base}: "
            "models compared side by side share one base."
        )


def compare_sides(
    ws,
    main: RunCheck,
    keys: Sequence,
    validate: Callable = validate_adapter,
    notes: list[str] | None = None,
) -> list[RunCheck]:
    """The models chosen to sit beside `main` (keys: 'base', run ids or 'RUN@checkpoint-N'; a
    checkpoint is registered as a run if needed, said in `notes`), each ready to answer on main's base;
    InvalidInput names the first one refused and why."""
    if len(keys) > MAX_SIDES - 1:
        raise InvalidInput(
            f"{len(keys)} models chosen to compare with: at most {MAX_SIDES - 1} sit beside "
            "the selected run."
        )
    if len(set(keys)) != len(keys):
        raise InvalidInput("The same model is chosen twice in Compare with: choose each once.")
    sides = []
    for key in keys:
        if key == BASE:
            sides.append(base_side(main.base_model))
            continue
        run = checkpoint_run(ws, key, notes) if is_checkpoint_key(key) else ws.get_run(int(key))
        if run.id == main.run_id:
            raise InvalidInput("The selected run is already the first column: compare others.")
        if run.id in {s.run_id for s in sides}:
            raise InvalidInput(f"Run {run.id} ({run.name}) is chosen twice: choose each once.")
        check = check_run(run, main.base_model, validate)
        _refuse_other_base(main.base_model, check)
        if not check.ok:
            raise InvalidInput(f"Run {check.run_id} ({check.run_name}) cannot answer: "
                               f"{check.message}")  # fmt: skip
        sides.append(check)
    return sides


def side_provenance(check: RunCheck) -> dict:
    """What a stored side records of who answered: label, run id, adapter folder."""
    return {"label": check.label, "run_id": check.run_id, "adapter": check.adapter_dir}


# --- the command line ------------------------------------------------------------------------
def _run_by_spec(ws, spec: str):
    """A run by its id or its (unique) name; InvalidInput when there is none."""
    run = find_run(ws, spec)
    if run is None:
        raise InvalidInput(
            f"Unknown model {spec!r}: give 'base', a run's id or a run's name "
            "(python -m ff_lib runs list)."
        )
    return run


def resolve_models(
    ws, specs: Sequence[str], base_model: str | None = None, notes: list[str] | None = None
) -> list[RunCheck]:
    """The models named on the command line ('base', run ids or names), in the order given.

    The base is `base_model`, else the first run's; every run must be on it. A checkpoint
    ('RUN@checkpoint-N') answers as the run registered with its folder (registered now if none
    is, said in `notes`). Refused (InvalidInput) when more than MAX_SIDES, when one is unknown, cannot answer or
    is on another base.
    """
    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        raise InvalidInput("No models: give --models base,RUN,... (up to four).")
    if len(specs) > MAX_SIDES:
        raise InvalidInput(f"{len(specs)} models given: compare at most {MAX_SIDES} at once.")
    runs = {
        s: checkpoint_run(ws, s, notes) if is_checkpoint_key(s) else _run_by_spec(ws, s)
        for s in specs
        if s != BASE
    }
    base = (base_model or "").strip() or next(
        (r.base_model for r in runs.values() if r.base_model), None
    )
    if not base:
        raise InvalidInput("No base model: pass --base-model, or name a run that has one.")
    checks = []
    for spec in specs:
        if spec == BASE:
            checks.append(check_base_only(base).raise_if_refused())
            checks[-1] = dataclasses.replace(checks[-1], run_name=BASE_LABEL)
            continue
        check = check_run(runs[spec], base)
        _refuse_other_base(base, check)
        checks.append(check.raise_if_refused())
    return checks


# --- answering -------------------------------------------------------------------------------
def answer_together(host, sides: Sequence[RunCheck], messages: list[dict], settings,
                    quantization: str = "auto") -> list:  # fmt: skip
    """Every side's Reply to `messages`, decoded together in one batched pass (order kept)."""
    if not sides:
        raise InvalidInput("Nothing to compare: choose at least one model.")
    base = sides[0].base_model
    jobs = [
        {
            "base_model": base,
            "messages": messages,
            "settings": settings,
            "adapter_dir": side.adapter_path,
            "quantization": quantization,
        }
        for side in sides
    ]
    return host.generate_many(jobs)


def compare_json(specs: Sequence[str], sides: Sequence[RunCheck], replies: Sequence) -> dict:
    """The `compare --json` document: one answer per model, in the order given."""
    answers = []
    for spec, side, reply in zip(specs, sides, replies, strict=True):
        answers.append(
            {
                "model": spec,
                "text": reply.text,
                "stats": dataclasses.asdict(reply.stats),
                "label": side.label,
                "run_id": side.run_id,
                "adapter": side.adapter_dir,
                "base_model": reply.base_model,
                "settings": reply.settings,
                "seed": reply.seed,
                "finish_reason": reply.finish_reason,  # "eos" | "length" | "stopped"
                "notice": reply.notice,
                "warnings": list(side.warnings),
                "describe": reply.describe,
                "engine": reply.engine,
            }
        )
    return {"answers": answers}


__all__ = [
    "BASE",
    "MAX_SIDES",
    "CompareChoice",
    "answer_together",
    "base_side",
    "checkpoint_key",
    "checkpoint_run",
    "compare_choices",
    "compare_json",
    "compare_sides",
    "is_checkpoint_key",
    "model_choices",
    "resolve_models",
    "side_provenance",
]
