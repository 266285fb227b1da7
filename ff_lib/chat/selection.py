"""Which run answers: a training run checked for use (completed, adapter valid, base model known)."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ff_lib.errors import InvalidInput

READY_MESSAGE = "Adapter validated. Ready for inference."
STATUS_PHRASES = {
    "pending": "has not started",
    "running": "is still running",
    "failed": "failed",
    "cancelled": "was cancelled",
}


@dataclass(frozen=True)
class RunCheck:
    """The outcome of choosing a run; `ok` means the chat controls may unlock."""

    ok: bool
    message: str  # READY_MESSAGE, or the one-line reason it cannot be used
    run_id: int
    run_name: str
    run_status: str
    adapter_dir: str | None = None  # the folder really loaded (may be one level down)
    base_model: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def raise_if_refused(self) -> "RunCheck":
        """Self when ok; else InvalidInput with the same one-line message (CLI, scorecards)."""
        if not self.ok:
            raise InvalidInput(self.message)
        return self

    def as_meta(self) -> dict:
        """The provenance stored with each reply of this run."""
        return {"run": {"id": self.run_id, "name": self.run_name}}


def check_run(run, base_model: str | None, validate: Callable) -> RunCheck:
    """Check `run` for inference with `base_model` (None or '' means the run's own base).

    `validate(path, base_model)` is ff_lib.inference.validate_adapter or a cached wrapper of it.
    """
    base = (base_model or "").strip() or run.base_model or None
    refused = RunCheck(False, "", run.id, run.name, run.status, base_model=base)
    if run.status != "completed":
        state = STATUS_PHRASES.get(run.status, f"has status {run.status}")
        message = (
            f"Run '{run.name}' {state} (status: {run.status}): only a completed run has an "
            "adapter to use. Pick a completed run."
        )
        return _replace(refused, message=message)
    if not run.adapter_path:
        message = (
            f"Run '{run.name}' has no adapter path: register it again with its adapter folder."
        )
        return _replace(refused, message=message)
    check = validate(str(run.adapter_path), base)
    if not check.ok:
        return _replace(refused, message=check.reason, warnings=tuple(check.warnings))
    base = base or check.base_model
    if not base:
        message = "No base model: type one in Base model (the adapter does not name its base)."
        return _replace(refused, message=message, warnings=tuple(check.warnings))
    return RunCheck(
        True,
        READY_MESSAGE,
        run.id,
        run.name,
        run.status,
        adapter_dir=str(check.adapter_dir),
        base_model=base,
        warnings=tuple(check.warnings),
    )


def _replace(check: RunCheck, **changes) -> RunCheck:
    return RunCheck(**{**check.__dict__, **changes})


def runs_for_choice(runs: Iterable) -> list:
    """Runs in the order the `Training run` box lists them: completed first, newest first."""
    runs = list(runs)
    return [r for r in runs if r.status == "completed"] + [
        r for r in runs if r.status != "completed"
    ]


def latest_usable_run(runs: Iterable, validate: Callable):
    """The most recent completed run whose adapter validates, or None."""
    for run in runs:
        usable = run.status == "completed" and run.adapter_path
        if usable and validate(str(run.adapter_path), run.base_model).ok:
            return run
    return None


def run_label(run) -> str:
    """'name · status' for a select box."""
    return f"{run.name} · {run.status}"
