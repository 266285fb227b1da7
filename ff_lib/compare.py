"""Compare up to four models side by side: which may sit beside a run, and one batched pass.

A side is a `RunCheck` (ff_lib.runs): the base alone (no adapter) or a run on the same base.
Every side answers the same messages in one batched pass of the engine (all streams started
before any is read), so N sides cost about one reply's time, not N.
"""

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ff_lib.errors import InvalidInput, NotFound
from ff_lib.inference.adapters import validate_adapter
from ff_lib.inference.base_identity import same_base
from ff_lib.runs import CANNOT_ANSWER, RunCheck, _short, check_base_only, check_run, runs_for_choice

MAX_SIDES = 4  # the selected run and up to three more
BASE = "base"  # the key of the base model, in the page's choice and on the command line
BASE_LABEL = "base model"


@dataclass(frozen=True)
class CompareChoice:
    """One model "Compare with" offers: the base (key 'base') or a run by its id."""

    key: str | int
    label: str
    ok: bool
    reason: str  # '' when ok


def base_side(base_model: str) -> RunCheck:
    """The base answering alone, on `base_model` (already known to be here)."""
    return RunCheck(True, "", None, BASE_LABEL, "", None, str(base_model))


def compare_choices(
    main: RunCheck, runs: Iterable, validate: Callable = validate_adapter
) -> list[CompareChoice]:
    """What may sit beside `main`: the base, then the other runs on its base (box order);
    a run that cannot answer is listed with ✗ and why (choosing it is refused)."""
    choices = [CompareChoice(BASE, f"{BASE_LABEL} · {main.base_model}", True, "")]
    for run in runs_for_choice(runs):
        if run.id == main.run_id or (
            run.base_model and not same_base(run.base_model, main.base_model)
        ):
            continue
        check = check_run(run, main.base_model, validate)
        label = f"{run.name} (run {run.id})"
        if check.ok:
            choices.append(CompareChoice(run.id, label, True, ""))
        else:
            short = _short(check.message)
            choices.append(CompareChoice(run.id, f"{CANNOT_ANSWER} {label} — {short}", False,
                                         check.message))  # fmt: skip
    return choices


def _refuse_other_base(main_base: str, check: RunCheck) -> None:
    run_base = getattr(check.run, "base_model", None) or check.base_model
    if run_base and not same_base(run_base, main_base):
        raise InvalidInput(
            f"Run {check.run_id} ({check.run_name}) is on base {run_base}, not {main_base}: "
            "models compared side by side share one base."
        )


def compare_sides(
    ws, main: RunCheck, keys: Sequence, validate: Callable = validate_adapter
) -> list[RunCheck]:
    """The models chosen to sit beside `main` (keys: 'base' or run ids), each ready to answer
    on main's base; InvalidInput names the first one refused and why."""
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
        if key == main.run_id:
            raise InvalidInput("The selected run is already the first column: compare others.")
        check = check_run(ws.get_run(int(key)), main.base_model, validate)
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
    runs = ws.list_runs()
    if spec.isdigit():
        try:
            return ws.get_run(int(spec))
        except NotFound:
            pass
    named = [r for r in runs if r.name == spec]
    if len(named) == 1:
        return named[0]
    raise InvalidInput(
        f"Unknown model {spec!r}: give 'base', a run's id or a run's name "
        "(python -m ff_lib runs list)."
    )


def resolve_models(ws, specs: Sequence[str], base_model: str | None = None) -> list[RunCheck]:
    """The models named on the command line ('base', run ids or names), in the order given.

    The base is `base_model`, else the first run's; every run must be on it. Refused (InvalidInput)
    when more than MAX_SIDES, when one is unknown, cannot answer or is on another base.
    """
    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        raise InvalidInput("No models: give --models base,RUN,... (up to four).")
    if len(specs) > MAX_SIDES:
        raise InvalidInput(f"{len(specs)} models given: compare at most {MAX_SIDES} at once.")
    runs = {s: _run_by_spec(ws, s) for s in specs if s != BASE}
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
            }
        )
    return {"answers": answers}


__all__ = [
    "BASE",
    "MAX_SIDES",
    "CompareChoice",
    "answer_together",
    "base_side",
    "compare_choices",
    "compare_json",
    "compare_sides",
    "resolve_models",
    "side_provenance",
]
