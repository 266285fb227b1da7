"""Reading a FineFoundry database (SQLite, read-only): its training runs and its scrape sessions.

The schema is FineFoundry's own (SourceBox-LLC/FineFoundry, `src/db/core.py` `init_db()`):
  scrape_sessions(id, name, source, source_details, dataset_format, pair_count, created_at, ...)
  scraped_pairs(id, session_id, input_text, output_text, source_url, metadata_json, created_at)
  training_runs(id, name, status, base_model, dataset_source, dataset_id, storage_path,
                output_dir, adapter_path, checkpoint_path, hp_json, logs_json, started_at,
                completed_at, created_at, updated_at, metadata_json)
  evaluation_runs(training_run_id, benchmark, metrics_json, ...)
Older databases have no training_runs/evaluation_runs and no scrape_sessions.name (added later
by ALTER TABLE). What its code writes (`src/db/training_runs.py`, `src/helpers/training.py`):
status 'pending' -> 'running' -> 'completed' | 'failed'; created_at/updated_at by SQLite's
datetime('now') (UTC); started_at/completed_at by Python's datetime.now().isoformat() (the
local clock, no zone); dataset_source 'Database' with dataset_id a scrape session id, or
'Hugging Face' with dataset_id a repo id.
"""

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ff_lib.errors import FineFoundryImportError

# FineFoundry's status words -> ours. The first four are what its training code writes; its UI
# also knows 'cancelled'. Any other word is reported, never guessed.
STATUS_MAP = {
    "pending": "pending",
    "running": "running",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
REQUIRED = {
    "scrape_sessions": ("id", "source"),
    "scraped_pairs": ("session_id", "input_text", "output_text"),
    "training_runs": ("id", "name", "status"),
}
SOURCE_DATABASE = "Database"
SOURCE_HUGGING_FACE = "Hugging Face"


@dataclass(frozen=True)
class ForeignRun:
    """One row of FineFoundry's training_runs, read as it is; `status` is its own word."""

    source_id: str
    name: str
    status: str | None
    base_model: str | None
    adapter_path: str | None
    dataset_source: str | None
    dataset_ref: str | None  # a scrape session id or a Hugging Face repo id
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    local_times: bool  # started/completed came from FineFoundry's local clock


@dataclass(frozen=True)
class ForeignDataset:
    """One scrape session and its pairs in FineFoundry's order."""

    session_id: str
    name: str
    created_at: dt.datetime | None
    prompts: list[str | None] = field(default_factory=list)
    responses: list[str | None] = field(default_factory=list)


def parse_utc(value: Any) -> dt.datetime | None:
    """SQLite's datetime('now') text ('YYYY-MM-DD HH:MM:SS', UTC) -> aware UTC."""
    parsed = _iso(value)
    if parsed is None:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def parse_local(value: Any) -> dt.datetime | None:
    """Python's datetime.now().isoformat() (this machine's clock, no zone) -> aware UTC."""
    parsed = _iso(value)
    if parsed is None:
        return None
    # A naive datetime's astimezone() reads it in the local zone, DST included.
    return parsed.astimezone(dt.UTC)


def _iso(value: Any) -> dt.datetime | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None


def _json(value: str | None, what: str, notes: list[str]) -> Any:
    if value is None or value == "":
        return None
    try:
        return json.loads(value)
    except ValueError:
        notes.append(f"{what} is not JSON; kept as text")
        return value


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    rows = con.execute("SELECT name FROM pragma_table_info(?)", [table]).fetchall()
    return {r[0].lower() for r in rows}


def _check_columns(con: sqlite3.Connection, tables: set[str], db_file: Path) -> None:
    for table, needed in REQUIRED.items():
        if table not in tables:
            continue
        have = _columns(con, table)
        missing = [c for c in needed if c not in have]
        if missing:
            raise FineFoundryImportError(
                f"cannot import {db_file}: {table} has no {', '.join(missing)} column "
                f"(columns: {', '.join(sorted(have))}) — this is not a database FineFoundry "
                "writes; open it once with FineFoundry to bring its schema up to date"
            )


def _evaluations(con: sqlite3.Connection, tables: set[str]) -> dict[int, list[dict]]:
    """FineFoundry's benchmark results per training run id (its evaluation_runs table)."""
    if "evaluation_runs" not in tables:
        return {}
    found: dict[int, list[dict]] = {}
    rows = con.execute(
        "SELECT training_run_id, benchmark, num_samples, metrics_json, created_at "
        "FROM evaluation_runs WHERE training_run_id IS NOT NULL AND is_base_eval = 0 ORDER BY id"
    )
    for row in rows:
        metrics = _json(row["metrics_json"], "an evaluation's metrics_json", [])
        entry = {"benchmark": row["benchmark"], "num_samples": row["num_samples"]}
        entry.update({"metrics": metrics, "created_at": row["created_at"]})
        found.setdefault(row["training_run_id"], []).append(entry)
    return found


def _run(row: sqlite3.Row, evaluations: list[dict]) -> ForeignRun:
    v = dict(row)  # columns that an older schema lacks read as None
    problems: list[str] = []
    hp = _json(v.get("hp_json"), "hp_json", problems)
    facts = {
        "status": v.get("status"),
        "dataset_source": v.get("dataset_source"),
        "dataset_id": v.get("dataset_id"),
        "storage_path": v.get("storage_path"),
        "output_dir": v.get("output_dir"),
        "checkpoint_path": v.get("checkpoint_path"),
        "metadata": _json(v.get("metadata_json"), "metadata_json", problems),
        "logs": _json(v.get("logs_json"), "logs_json", problems),
        "updated_at": v.get("updated_at"),
        "hp_json": None if hp is None or isinstance(hp, dict) else hp,
        "problems": problems or None,
    }
    params = dict(hp) if isinstance(hp, dict) else {}
    params["finefoundry"] = {k: x for k, x in facts.items() if x not in (None, "")}
    ref = str(v.get("dataset_id") or "").strip()
    return ForeignRun(
        source_id=str(v["id"]),
        name=str(v.get("name") or "").strip() or f"finefoundry-run-{v['id']}",
        status=v.get("status"),
        base_model=v.get("base_model") or None,
        adapter_path=v.get("adapter_path") or None,
        dataset_source=v.get("dataset_source") or None,
        dataset_ref=ref or None,
        params=params,
        metrics={"finefoundry_evaluations": evaluations} if evaluations else {},
        created_at=parse_utc(v.get("created_at")),
        started_at=parse_local(v.get("started_at")),
        completed_at=parse_local(v.get("completed_at")),
        local_times=bool(v.get("started_at") or v.get("completed_at")),
    )


def _runs(con: sqlite3.Connection, tables: set[str]) -> list[ForeignRun]:
    evaluations = _evaluations(con, tables)
    return [
        _run(row, evaluations.get(row["id"], []))
        for row in con.execute("SELECT * FROM training_runs ORDER BY id")
    ]


def _session_label(row: sqlite3.Row) -> str:
    name = dict(row).get("name")  # added to scrape_sessions later, by ALTER TABLE
    if name and str(name).strip():
        return str(name).strip()
    details = (row["source_details"] or "").strip()
    return f"{row['source']} {details}".strip()


def _datasets(con: sqlite3.Connection, tables: set[str]) -> list[ForeignDataset]:
    grouped: dict[str, ForeignDataset] = {}
    if "scrape_sessions" in tables:
        for row in con.execute("SELECT * FROM scrape_sessions ORDER BY id"):
            grouped[str(row["id"])] = ForeignDataset(
                session_id=str(row["id"]),
                name=_session_label(row),
                created_at=parse_utc(row["created_at"]),
            )
    pairs = con.execute("SELECT session_id, input_text, output_text FROM scraped_pairs ORDER BY id")
    for session_id, prompt, response in pairs:
        key = str(session_id)
        if key not in grouped:  # pairs of a deleted session (foreign keys were off)
            grouped[key] = ForeignDataset(
                key, f"FineFoundry session {key} (no session record)", None
            )
        grouped[key].prompts.append(None if prompt is None else str(prompt))
        grouped[key].responses.append(None if response is None else str(response))
    labels = [d.name for d in grouped.values()]
    return [
        d
        if labels.count(d.name) == 1
        else ForeignDataset(
            d.session_id, f"{d.name} (session {d.session_id})", d.created_at, d.prompts, d.responses
        )
        for d in grouped.values()
    ]


def read_finefoundry(db_file: Path) -> tuple[list[ForeignRun], list[ForeignDataset]]:
    """Runs and scrape sessions of a FineFoundry database, read-only; refuses anything else."""
    if not db_file.is_file():
        raise FineFoundryImportError(f"cannot import {db_file}: the file does not exist")
    try:
        con = sqlite3.connect(db_file.as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise FineFoundryImportError(f"cannot import {db_file}: {exc}") from exc
    con.row_factory = sqlite3.Row
    try:
        tables = {
            r[0].lower() for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "training_runs" not in tables and "scraped_pairs" not in tables:
            raise FineFoundryImportError(
                f"cannot import {db_file}: not a FineFoundry database — it has neither a "
                f"training_runs nor a scraped_pairs table "
                f"(tables: {', '.join(sorted(tables)) or 'none'})"
            )
        _check_columns(con, tables, db_file)
        runs = _runs(con, tables) if "training_runs" in tables else []
        datasets = _datasets(con, tables) if "scraped_pairs" in tables else []
    except sqlite3.DatabaseError as exc:
        raise FineFoundryImportError(f"cannot import {db_file}: {exc}") from exc
    finally:
        con.close()
    return runs, datasets
