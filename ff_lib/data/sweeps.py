"""The SQL of checkpoint sweeps (table `sweeps`, migration m007_sweeps); values always bound."""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import duckdb

_COLUMNS = "id, run_id, dataset_id, n, document, created_at"


@dataclass(frozen=True)
class Sweep:
    """One stored sweep: `document` is ff_lib.sweep.sweep_run's (points, base, best, ...)."""

    id: int
    run_id: int
    dataset_id: int
    n: int
    document: dict[str, Any]
    created_at: dt.datetime


def _sweep(row: tuple) -> Sweep:
    return Sweep(row[0], row[1], row[2], row[3], json.loads(row[4]),
                 row[5].replace(tzinfo=dt.UTC))  # fmt: skip


def insert_sweep(con: duckdb.DuckDBPyConnection, document: dict, now: dt.datetime) -> Sweep:
    row = con.execute(
        f"""
        INSERT INTO sweeps (run_id, dataset_id, n, document, created_at)
        VALUES (?, ?, ?, ?, ?)
        RETURNING {_COLUMNS}
        """,
        [
            document["run"]["id"],
            document["dataset"]["id"],
            document["n"],
            json.dumps(document, ensure_ascii=False, default=str),
            now,
        ],
    ).fetchone()
    return _sweep(row)


def list_sweeps(con: duckdb.DuckDBPyConnection, run_id: int | None = None) -> list[Sweep]:
    """Newest first; every run's when run_id is None."""
    sql = f"SELECT {_COLUMNS} FROM sweeps"
    params: list[Any] = []
    if run_id is not None:
        sql += " WHERE run_id = ?"
        params.append(int(run_id))
    sql += " ORDER BY created_at DESC, id DESC"
    return [_sweep(r) for r in con.execute(sql, params).fetchall()]
