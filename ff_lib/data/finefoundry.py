"""Reading a FineFoundry database (SQLite): its training runs and its scraped datasets.

FineFoundry's schema is not pinned anywhere we can see, so columns are found by name among
the usual spellings, and anything unrecognised is kept in the run's params.
"""

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ff_lib.errors import FineFoundryImportError

RUN_ID = ("id", "run_id")
RUN_NAME = ("name", "run_name", "title")
RUN_STATUS = ("status", "state")
RUN_BASE_MODEL = ("base_model", "base_model_name", "base_model_id", "model_name", "model")
RUN_ADAPTER = ("adapter_path", "adapter_dir", "output_dir", "output_path", "save_path")
RUN_CREATED = ("created_at", "created", "timestamp")
RUN_STARTED = ("started_at", "start_time")
RUN_COMPLETED = ("completed_at", "finished_at", "ended_at", "end_time")
RUN_PARAMS = ("params", "config", "hyperparameters", "hparams", "training_config")
RUN_METRICS = ("metrics", "results")
RUN_SESSION = ("dataset_id", "session_id", "scrape_session_id")
SESSION_NAME = ("name", "title", "source", "url", "board")
PAIR_PROMPT = ("input", "prompt", "question", "instruction")
PAIR_RESPONSE = ("output", "response", "answer", "completion")
PAIR_SESSION = ("session_id", "scrape_session_id")

STATUS_MAP = {
    "completed": "completed",
    "complete": "completed",
    "success": "completed",
    "succeeded": "completed",
    "done": "completed",
    "finished": "completed",
    "running": "running",
    "training": "running",
    "in_progress": "running",
    "pending": "pending",
    "queued": "pending",
    "created": "pending",
    "new": "pending",
    "failed": "failed",
    "error": "failed",
    "errored": "failed",
    "crashed": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "stopped": "cancelled",
    "aborted": "cancelled",
    "killed": "cancelled",
}


@dataclass(frozen=True)
class ForeignRun:
    source_id: str
    name: str
    status: str
    base_model: str | None
    adapter_path: str | None
    session_id: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None


@dataclass(frozen=True)
class ForeignDataset:
    session_id: str
    name: str
    created_at: dt.datetime | None
    prompts: list[str | None] = field(default_factory=list)
    responses: list[str | None] = field(default_factory=list)


def parse_time(value: Any) -> dt.datetime | None:
    """ISO text or epoch seconds/milliseconds -> aware UTC; naive text is taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        value = float(value)  # epoch seconds stored in a TEXT column
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _json_dict(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return {"value": value}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _pick(row: sqlite3.Row, names: tuple[str, ...]) -> Any:
    keys = {k.lower(): k for k in row.keys()}  # noqa: SIM118 (a Row iterates values)
    for name in names:
        if name in keys and row[keys[name]] not in (None, ""):
            return row[keys[name]]
    return None


def _has(columns: set[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in columns), None)


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    rows = con.execute("SELECT name FROM pragma_table_info(?)", [table]).fetchall()
    return {r[0].lower() for r in rows}


def _runs(con: sqlite3.Connection) -> list[ForeignRun]:
    used = set(RUN_ID + RUN_NAME + RUN_STATUS + RUN_BASE_MODEL + RUN_ADAPTER + RUN_CREATED)
    used |= set(RUN_STARTED + RUN_COMPLETED + RUN_PARAMS + RUN_METRICS + RUN_SESSION)
    runs = []
    for row in con.execute("SELECT rowid AS ff_rowid, * FROM training_runs ORDER BY rowid"):
        source_id = _pick(row, RUN_ID)
        source_id = str(row["ff_rowid"] if source_id is None else source_id)
        raw_status = _pick(row, RUN_STATUS)
        status = STATUS_MAP.get(str(raw_status).strip().lower(), "pending")
        params = _json_dict(_pick(row, RUN_PARAMS))
        extra = {
            k: row[k]
            for k in row.keys()  # noqa: SIM118 (a Row iterates values)
            if k.lower() not in used and k != "ff_rowid" and row[k] is not None
        }
        metrics = _json_dict(_pick(row, RUN_METRICS))
        session = _pick(row, RUN_SESSION)
        runs.append(
            ForeignRun(
                source_id=source_id,
                name=str(_pick(row, RUN_NAME) or f"finefoundry-run-{source_id}"),
                status=status,
                base_model=_pick(row, RUN_BASE_MODEL),
                adapter_path=_pick(row, RUN_ADAPTER),
                session_id=None if session is None else str(session),
                params={**params, "finefoundry_status": raw_status, "finefoundry": extra},
                metrics=metrics,
                created_at=parse_time(_pick(row, RUN_CREATED)),
                started_at=parse_time(_pick(row, RUN_STARTED)),
                completed_at=parse_time(_pick(row, RUN_COMPLETED)),
            )
        )
    return runs


def _datasets(con: sqlite3.Connection, tables: set[str], db_file: Path) -> list[ForeignDataset]:
    columns = _columns(con, "scraped_pairs")
    prompt_col, response_col = _has(columns, PAIR_PROMPT), _has(columns, PAIR_RESPONSE)
    if prompt_col is None or response_col is None:
        raise FineFoundryImportError(
            f"cannot import {db_file}: scraped_pairs has no "
            f"{'input/prompt' if prompt_col is None else 'output/response'} column "
            f"(columns: {', '.join(sorted(columns))})"
        )
    session_col = _has(columns, PAIR_SESSION)
    sessions: dict[str, sqlite3.Row] = {}
    if "scrape_sessions" in tables:
        for row in con.execute("SELECT rowid AS ff_rowid, * FROM scrape_sessions"):
            key = _pick(row, ("id",))
            sessions[str(row["ff_rowid"] if key is None else key)] = row
    grouped: dict[str, ForeignDataset] = {}
    for row in con.execute("SELECT * FROM scraped_pairs ORDER BY rowid"):
        session_id = str(row[session_col]) if session_col else "all"
        dataset = grouped.get(session_id)
        if dataset is None:
            session = sessions.get(session_id)
            label = _pick(session, SESSION_NAME) if session is not None else None
            dataset = ForeignDataset(
                session_id=session_id,
                name=str(label or f"finefoundry-session-{session_id}"),
                created_at=parse_time(_pick(session, RUN_CREATED)) if session else None,
            )
            grouped[session_id] = dataset
        prompt, response = row[prompt_col], row[response_col]
        dataset.prompts.append(None if prompt is None else str(prompt))
        dataset.responses.append(None if response is None else str(response))
    return list(grouped.values())


def read_finefoundry(db_file: Path) -> tuple[list[ForeignRun], list[ForeignDataset]]:
    """Runs and datasets of a FineFoundry database, read-only; refuses a file without them."""
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
        runs = _runs(con) if "training_runs" in tables else []
        datasets = _datasets(con, tables, db_file) if "scraped_pairs" in tables else []
    except sqlite3.DatabaseError as exc:
        raise FineFoundryImportError(f"cannot import {db_file}: {exc}") from exc
    finally:
        con.close()
    return runs, datasets
