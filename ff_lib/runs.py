"""A run checked and ready to answer: the one shape the pages, the CLI, scorecards and replay use.

`RunCheck` says whether a training run (or, from the CLI, a bare adapter folder or a base alone)
can answer, and if not, why and what fixes it. It holds the adapter's validation result
(`AdapterCheck`) and the run it was made from.
"""

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ff_lib.errors import InvalidInput
from ff_lib.inference.adapters import AdapterCheck, validate_adapter
from ff_lib.inference.base_identity import base_availability

READY_MESSAGE = "Adapter validated. Ready for inference."
STATUS_PHRASES = {
    "pending": "has not started",
    "running": "is still running",
    "failed": "failed",
    "cancelled": "was cancelled",
}
CANNOT_ANSWER = "✗"
LABEL_REASON_CHARS = 70
# A trainer's checkpoint folder (HF Trainer, TRL, Unsloth, Axolotl): `checkpoint-<step>`.
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class CheckpointOf:
    """A run that is one checkpoint of a training run (registered from a sweep or Compare)."""

    name: str  # 'checkpoint-50'
    parent_id: int | None  # the training run it came from; None when registered by hand


def checkpoint_of(run) -> CheckpointOf | None:
    """What marks a checkpoint run: `params.checkpoint_of` (set by
    ff_lib.sweep.register_checkpoint) or an adapter folder named `checkpoint-N`. None for a
    training run: the one test the sweep, "Use latest completed run" and Home's counts share."""
    params = getattr(run, "params", None) or {}
    parent = params.get("checkpoint_of")
    folder = Path(str(run.adapter_path)).name if getattr(run, "adapter_path", None) else ""
    if not CHECKPOINT.match(folder) and not isinstance(parent, int):
        return None
    step = params.get("step")
    name = folder if CHECKPOINT.match(folder) else f"checkpoint-{step}"
    return CheckpointOf(name, parent if isinstance(parent, int) else None)


@dataclass(frozen=True)
class RunCheck:
    """The outcome of checking a run for answering; `ok` means the chat controls may unlock."""

    ok: bool
    message: str  # READY_MESSAGE, or the one-line reason it cannot answer and what fixes it
    run_id: int | None  # None for an adapter folder or a base given outside any run (CLI)
    run_name: str
    run_status: str
    adapter_dir: str | None = None  # the folder really loaded (may be one level down)
    base_model: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    adapter: AdapterCheck | None = None  # the adapter's validation, when it got that far
    run: object | None = None  # the ff_lib.data.TrainingRun it was made from

    @property
    def label(self) -> str:
        """What answers, for tables and scorecards: the run's name."""
        return self.run_name

    @property
    def adapter_path(self) -> Path | None:
        """The adapter folder to load, None when the base answers alone."""
        return None if self.adapter_dir is None else Path(self.adapter_dir)

    def raise_if_refused(self) -> "RunCheck":
        """Self when ok; else InvalidInput with the same one-line message (CLI, scorecards)."""
        if not self.ok:
            raise InvalidInput(self.message)
        return self

    def as_meta(self) -> dict:
        """The provenance stored with each reply of this run."""
        return {"run": {"id": self.run_id, "name": self.run_name}}


def set_base_command(run_id: int | None) -> str:
    """The command that gives a run the base it should answer on."""
    return f"python -m ff_lib runs set-base {run_id} BASE"


def _base_fix(run_id: int | None, own_base: str | None = None) -> str:
    """How to fix a base that is not here: another base; for a base chosen instead of the
    run's own (`own_base`), leaving it out; for the run's own, giving the run another."""
    if run_id is None:
        return "Pass --base-model with a local model folder or a cached model id."
    if own_base:
        return (
            f"Fix: give another base model, or none to answer on the run's own base ({own_base})."
        )
    return (
        f"Fix: `{set_base_command(run_id)}` (a local model folder or a cached model id), "
        "or choose another base model."
    )


def check_run(
    run, base_model: str | None = None, validate: Callable = validate_adapter
) -> RunCheck:
    """Check `run` for answering with `base_model` (None or '' means the run's own base).

    `validate(path, base_model)` is ff_lib.inference.validate_adapter or a cached wrapper of it.
    Ready means: completed, adapter valid, base available here and the adapter's shapes fit it.
    """
    base = (base_model or "").strip() or run.base_model or None
    refused = RunCheck(False, "", run.id, run.name, run.status, base_model=base, run=run)
    if run.status != "completed":
        state = STATUS_PHRASES.get(run.status, f"has status {run.status}")
        message = (
            f"Run '{run.name}' {state} (status: {run.status}): only a completed run has an "
            "adapter to use. Pick a completed run."
        )
        return dataclasses.replace(refused, message=message)
    if not run.adapter_path:
        message = (
            f"Run '{run.name}' has no adapter path: register it again with its adapter folder."
        )
        return dataclasses.replace(refused, message=message)
    check = validate(str(run.adapter_path), base)
    return _from_adapter(refused, check, base)


def _from_adapter(refused: RunCheck, check: AdapterCheck, base: str | None) -> RunCheck:
    """The run check once its adapter was validated against `base`."""
    refused = dataclasses.replace(refused, warnings=tuple(check.warnings), adapter=check)
    if not check.ok:
        return dataclasses.replace(refused, message=check.reason)
    base = base or check.base_model
    if not base:
        message = "No base model: type one in Base model (the adapter does not name its base)."
        return dataclasses.replace(refused, message=message)
    if check.base_problem:
        own = refused.run.base_model if refused.run is not None else None
        fix = _base_fix(refused.run_id, own if own and own != base else None)
        message = f"{check.base_problem} {fix}"
        return dataclasses.replace(refused, message=message, base_model=base)
    return dataclasses.replace(
        refused, ok=True, message=READY_MESSAGE, adapter_dir=str(check.adapter_dir), base_model=base
    )


def check_adapter_folder(
    path, base_model: str | None = None, validate: Callable = validate_adapter
) -> RunCheck:
    """An adapter folder outside any run (CLI `--adapter`, a checkpoint), checked like a run's."""
    refused = RunCheck(False, "", None, Path(str(path)).name, "completed", base_model=base_model)
    base = (base_model or "").strip() or None
    return _from_adapter(refused, validate(str(path), base), base)


def check_base_only(base_model: str | None) -> RunCheck:
    """The base model answering alone (CLI `--no-adapter`)."""
    base = (base_model or "").strip()
    if not base:
        raise InvalidInput("No base model: pass --base-model with a local folder or a model id.")
    _, problem = base_availability(base)
    if problem:
        return RunCheck(False, f"{problem} {_base_fix(None)}", None, "base model", "", None, base)
    return RunCheck(True, READY_MESSAGE, None, "base model", "", None, base)


def usable_run(ws, run_id: int, base_model: str | None = None) -> RunCheck:
    """The run of the workspace, ready to answer; InvalidInput says why it cannot."""
    return check_run(ws.get_run(run_id), base_model).raise_if_refused()


# --- lists of runs ----------------------------------------------------------------------------
def runs_for_choice(runs: Iterable) -> list:
    """Runs in the order the `Training run` box lists them: completed first, newest first."""
    runs = list(runs)
    return [r for r in runs if r.status == "completed"] + [
        r for r in runs if r.status != "completed"
    ]


def latest_usable_run(
    runs: Iterable, validate: Callable = validate_adapter, checkpoints: bool = False
):
    """The most recent completed training run that can answer (adapter valid, base here), or
    None; a checkpoint registered as a run is not a training run and is skipped (with
    `checkpoints`, only checkpoint runs are looked at: what to name when no training run can)."""
    for run in runs:
        if run.status != "completed" or (checkpoint_of(run) is not None) != checkpoints:
            continue
        if check_run(run, None, validate).ok:
            return run
    return None


@dataclass(frozen=True)
class RunChoice:
    """One run as a select box or a table shows it: ✗ and the reason when it cannot answer."""

    id: int
    label: str
    ok: bool
    reason: str  # '' when ok


def _short(text: str, limit: int = LABEL_REASON_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def run_choice(run, validate: Callable = validate_adapter) -> RunChoice:
    """'name · status', or '✗ name · status — why it cannot answer'."""
    check = check_run(run, None, validate)
    label = f"{run.name} · {run.status}"
    if check.ok:
        return RunChoice(run.id, label, True, "")
    return RunChoice(
        run.id, f"{CANNOT_ANSWER} {label} — {_short(check.message)}", False, check.message
    )


def run_choices(runs: Iterable, validate: Callable = validate_adapter) -> list[RunChoice]:
    """Choices in box order (completed first), each label unique so no choice can alias another."""
    choices = [run_choice(r, validate) for r in runs_for_choice(runs)]
    seen: dict[str, int] = {}
    for choice in choices:
        seen[choice.label] = seen.get(choice.label, 0) + 1
    return [
        c if seen[c.label] == 1 else dataclasses.replace(c, label=f"{c.label} (run {c.id})")
        for c in choices
    ]


def missing_bases(runs: Iterable) -> dict[str, list[int]]:
    """Base model -> ids of the given runs whose base cannot be loaded here."""
    missing: dict[str, list[int]] = {}
    for run in runs:
        if run.base_model and base_availability(run.base_model)[1]:
            missing.setdefault(run.base_model, []).append(run.id)
    return missing


def find_run(ws, ref: str):
    """A run by its id or its (unique) name; None when there is none."""
    ref = str(ref).strip()
    runs = ws.list_runs()
    if ref.isdigit():
        by_id = [r for r in runs if r.id == int(ref)]
        if by_id:
            return by_id[0]
    named = [r for r in runs if r.name == ref]
    return named[0] if len(named) == 1 else None


def run_by_ref(ws, ref: str):
    """find_run for the CLI's --run; InvalidInput naming what to give when there is none."""
    run = find_run(ws, ref)
    if run is None:
        raise InvalidInput(
            f"Unknown run {ref!r}: give a run's id or its name (python -m ff_lib runs list)."
        )
    return run
