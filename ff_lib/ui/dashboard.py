"""What Home shows, gathered in one place: runs and their adapter checks, datasets, chats."""

from collections import Counter
from dataclasses import dataclass, field

from ff_lib.chat import export_bytes, from_record
from ff_lib.data import RUN_STATUSES
from ff_lib.runs import CANNOT_ANSWER, check_run, checkpoint_of
from ff_lib.ui import resources

RECENT_RUNS = 15
RECENT_CONVERSATIONS = 10
STATUS_MARKS = {
    "completed": "🟢 completed",
    "running": "🔵 running",
    "pending": "⚪ pending",
    "failed": "🔴 failed",
    "cancelled": "🟠 cancelled",
}


@dataclass(frozen=True)
class Dashboard:
    run_counts: dict  # status -> count of training runs, every status present
    run_rows: list  # dicts for the runs table, newest first
    datasets: list
    conversations: list
    runs: list = field(default_factory=list)  # every run, newest first
    checkpoint_runs: int = 0  # checkpoints registered as runs (not counted in run_counts)
    # (name, why) of each completed run that cannot answer: the table's cell cuts the reason.
    cannot_answer: list = field(default_factory=list)


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def adapter_cell(run, why: str | None) -> str:
    """'✅ ok', or '✗ <why it cannot answer>' for the runs table (`why`: why_not(run))."""
    if not run.adapter_path:
        return "— none"
    return "✅ ok" if why is None else f"{CANNOT_ANSWER} {why}"


def why_not(run) -> str | None:
    """Why the run's adapter cannot answer (a completed run: as a whole), None when it can or
    it has no adapter (adapter checks are cached)."""
    if not run.adapter_path:
        return None
    if run.status == "completed":
        check = check_run(run, None, resources.check_adapter)
        return None if check.ok else check.message
    check = resources.check_adapter(str(run.adapter_path), run.base_model)
    return None if check.ok else check.reason


def load_dashboard(ws) -> Dashboard:
    """Everything Home shows, read over one short-lived connection."""
    with ws.session():
        runs = ws.list_runs()
        datasets = ws.list_datasets()
        conversations = ws.list_conversations(limit=RECENT_CONVERSATIONS)
    marks = [checkpoint_of(r) is not None for r in runs]
    counts = Counter(r.status for r, mark in zip(runs, marks, strict=True) if not mark)
    listed = [(r, why_not(r)) for r in runs[:RECENT_RUNS]]  # each run checked once
    rows = [
        {
            "Name": r.name,
            "Status": STATUS_MARKS.get(r.status, r.status),
            "Base model": r.base_model or "—",
            "Adapter": adapter_cell(r, why),
            "Completed at": _when(r.completed_at),
        }
        for r, why in listed
    ]
    return Dashboard(
        run_counts={s: counts.get(s, 0) for s in RUN_STATUSES},
        run_rows=rows,
        datasets=datasets,
        conversations=conversations,
        runs=runs,
        checkpoint_runs=sum(marks),
        cannot_answer=[(r.name, why) for r, why in listed if r.status == "completed" and why],
    )


def conversation_messages(ws, conversation_id: str) -> list:
    """The stored messages of one conversation as ChatMessages (for its export)."""
    return [from_record(m) for m in ws.messages(conversation_id)]


def conversation_export(ws, conversation_id: str, fmt: str) -> bytes:
    """One stored conversation in an export format, read when its download is clicked."""
    return export_bytes(conversation_messages(ws, conversation_id), fmt)
