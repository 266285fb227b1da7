"""The other sides of a compared turn as a reply stores them, and older replies read the same way.

A reply compared with other models keeps them in `meta["compare_replies"]`: a list, in column
order, of {label, run_id, adapter, text, status, meta} (+ `note` when a side was not answered),
`meta` being that side's own settings, figures and provenance. Replies stored before N-way compare
hold one base side under `meta["base_reply"]`; `compared_sides` reads both shapes, so those keep
rendering and exporting without a rewrite of the workspace.
"""

NOT_ANSWERED = "not answered"
PENDING = "pending"  # stored while the turn streams; ended (or marked not answered) by close()
STOPPED_NOTE = "the turn was stopped before this model answered"
FAILED_NOTE = "the first reply failed, so this model was not asked"
BASE_LABEL = "base model"

_ENDING_KEYS = ("text", "status", "note", "error")


def side_entry(provenance: dict, text: str, status: str, meta: dict | None = None, **extra) -> dict:
    """One stored side: who answered (label, run_id, adapter), what, how it ended."""
    return {
        "label": provenance.get("label"),
        "run_id": provenance.get("run_id"),
        "adapter": provenance.get("adapter"),
        "text": text,
        "status": status,
        **extra,
        "meta": dict(meta or {}),
    }


def _from_base_reply(base: dict) -> dict:
    """A pre-N-way `base_reply` as a side: the base model, its figures moved under `meta`."""
    meta = {k: v for k, v in base.items() if k not in _ENDING_KEYS}
    extra = {k: base[k] for k in ("note", "error") if base.get(k)}
    provenance = {"label": BASE_LABEL, "run_id": None, "adapter": None}
    return side_entry(provenance, base.get("text") or "", base.get("status", "complete"), meta,
                      **extra)  # fmt: skip


def compared_sides(meta: dict) -> list[dict]:
    """The other sides of a reply, in column order ([] for a reply that was not compared)."""
    sides = meta.get("compare_replies")
    if sides:
        return [dict(s) for s in sides]
    base = meta.get("base_reply")
    return [_from_base_reply(base)] if base else []


def side_note(side: dict) -> str:
    """' [interrupted]' or ' [not answered: why]' after a side's title; '' when complete."""
    status = side.get("status", "complete")
    if status == "complete":
        return ""
    note = side.get("note") or side.get("error")
    return f" [{status}: {note}]" if note else f" [{status}]"


def first_label(meta: dict) -> str:
    """The first column's title: the run's name, else 'Fine-tuned'."""
    run = meta.get("run")
    name = run.get("name") if isinstance(run, dict) else None
    return name or "Fine-tuned"
