"""Which models the API serves: the workspace's runs that can answer, and their base models.

One id each: a run by its unique name, a base by the id or folder its runs name. A run is
listed as vLLM lists a LoRA adapter: `parent` = its base, `root` = its adapter folder.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ff_lib.inference.adapters import validate_adapter
from ff_lib.inference.base_identity import base_availability
from ff_lib.runs import check_run
from ff_lib.serve.errors import APIError, cannot_answer, model_not_found

OWNED_BY = "ff-playground"


@dataclass(frozen=True)
class ServedModel:
    """A model id the API answers with, and what answers it."""

    id: str
    base_model: str
    adapter_dir: str | None  # None: the base answers alone
    created: int  # Unix seconds: the run's completion (or creation); a base: its first run's
    run_id: int | None = None
    run_name: str | None = None

    def card(self) -> dict:
        """The /v1/models entry (vLLM's ModelCard fields: id, object, created, owned_by,
        root, parent)."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": OWNED_BY,
            "root": self.adapter_dir or self.base_model,
            "parent": None if self.adapter_dir is None else self.base_model,
        }


def _created(run) -> int:
    return int((run.completed_at or run.created_at).timestamp())


def _run_model(run, check) -> ServedModel:
    return ServedModel(
        id=run.name,
        base_model=check.base_model,
        adapter_dir=check.adapter_dir,
        created=_created(run),
        run_id=run.id,
        run_name=run.name,
    )


def _bases(runs) -> dict[str, int]:
    """Base id -> created, over every run that names its base (oldest run first)."""
    bases: dict[str, int] = {}
    for run in sorted(runs, key=lambda r: r.created_at):
        if run.base_model and run.base_model not in bases:
            bases[run.base_model] = int(run.created_at.timestamp())
    return bases


def list_models(ws, validate: Callable = validate_adapter) -> list[ServedModel]:
    """The bases available here, then every run that can answer (newest first)."""
    runs = ws.list_runs()
    served = [
        ServedModel(id=base, base_model=base, adapter_dir=None, created=created)
        for base, created in _bases(runs).items()
        if base_availability(base)[1] is None
    ]
    for run in runs:
        if run.status == "completed" and (check := check_run(run, None, validate)).ok:
            served.append(_run_model(run, check))
    return served


def resolve_model(ws, model: str, validate: Callable = validate_adapter) -> ServedModel:
    """The model named `model`: a run by name or a base by id. 404 when neither, 422 when it
    cannot answer (with the validation's message), 400 when the name means both."""
    runs = ws.list_runs()
    run = next((r for r in runs if r.name == model), None)
    bases = _bases(runs)
    if run is not None and model in bases:
        raise APIError(
            400,
            f"{model!r} names both a run and a base model: rename the run "
            f"(`python -m ff_lib runs rename {run.id} NEW_NAME`).",
            param="model",
            code="model_ambiguous",
        )
    if run is not None:
        check = check_run(run, None, validate)
        if not check.ok:
            raise cannot_answer(check.message)
        return _run_model(run, check)
    if model in bases:
        problem = base_availability(model)[1]
        if problem:
            raise cannot_answer(problem)
        return ServedModel(id=model, base_model=model, adapter_dir=None, created=bases[model])
    raise model_not_found(model)
