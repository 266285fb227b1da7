"""Every SQL statement of the workspace (but staging a dataset file: staging.py), each a
function of an open connection.

Values are always bound parameters. The only text put into SQL is the validated integer k of
a reservoir sample, which DuckDB does not accept as a parameter.
"""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb

from ff_lib.data.models import Conversation, Dataset, Message, SamplePair, TrainingRun

Connection = duckdb.DuckDBPyConnection


def utcnow() -> dt.datetime:
    """Now in UTC, naive, as TIMESTAMP columns hold it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.replace(tzinfo=dt.UTC)


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _loads(text: str | None, empty: Any) -> Any:
    return empty if text is None else json.loads(text)


# --- training runs ---------------------------------------------------------------------------

_RUN_COLUMNS = (
    "id, name, status, base_model, dataset_id, adapter_path, params, metrics, "
    "created_at, started_at, completed_at"
)


def _run(row: tuple) -> TrainingRun:
    return TrainingRun(
        id=row[0],
        name=row[1],
        status=row[2],
        base_model=row[3],
        dataset_id=row[4],
        adapter_path=None if row[5] is None else Path(row[5]),
        params=_loads(row[6], {}),
        metrics=_loads(row[7], {}),
        created_at=_aware(row[8]),
        started_at=_aware(row[9]),
        completed_at=_aware(row[10]),
    )


def list_runs(con: Connection, limit: int | None = None) -> list[TrainingRun]:
    sql = f"SELECT {_RUN_COLUMNS} FROM training_runs ORDER BY created_at DESC, id DESC"
    if limit is None:
        return [_run(r) for r in con.execute(sql).fetchall()]
    return [_run(r) for r in con.execute(sql + " LIMIT ?", [limit]).fetchall()]


def get_run(con: Connection, run_id: int) -> TrainingRun | None:
    row = con.execute(f"SELECT {_RUN_COLUMNS} FROM training_runs WHERE id = ?", [run_id]).fetchone()
    return None if row is None else _run(row)


def insert_run(
    con: Connection,
    *,
    name: str,
    status: str,
    base_model: str | None,
    dataset_id: int | None,
    adapter_path: str | None,
    params: dict,
    metrics: dict,
    created_at: dt.datetime,
    started_at: dt.datetime | None,
    completed_at: dt.datetime | None,
) -> TrainingRun:
    row = con.execute(
        f"""
        INSERT INTO training_runs (name, status, base_model, dataset_id, adapter_path, params,
                                   metrics, created_at, started_at, completed_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        RETURNING {_RUN_COLUMNS}
        """,
        [
            name,
            status,
            base_model,
            dataset_id,
            adapter_path,
            _json(params),
            _json(metrics),
            _naive_utc(created_at),
            _naive_utc(started_at),
            _naive_utc(completed_at),
        ],
    ).fetchone()
    return _run(row)


def update_run_status(con: Connection, run_id: int, status: str, now: dt.datetime) -> TrainingRun:
    """Set the status; `running` stamps started_at (once), `completed` stamps completed_at."""
    row = con.execute(
        f"""
        UPDATE training_runs SET
            status = ?,
            started_at = CASE WHEN ? = 'running' THEN coalesce(started_at, ?) ELSE started_at END,
            completed_at = CASE WHEN ? = 'completed' THEN ? ELSE completed_at END
        WHERE id = ?
        RETURNING {_RUN_COLUMNS}
        """,
        [status, status, now, status, now, run_id],
    ).fetchone()
    return _run(row)


def update_run_metrics(con: Connection, run_id: int, metrics: dict) -> TrainingRun:
    row = con.execute(
        f"UPDATE training_runs SET metrics = ? WHERE id = ? RETURNING {_RUN_COLUMNS}",
        [_json(metrics), run_id],
    ).fetchone()
    return _run(row)


def find_run_by_name(con: Connection, name: str) -> TrainingRun | None:
    row = con.execute(f"SELECT {_RUN_COLUMNS} FROM training_runs WHERE name = ?", [name]).fetchone()
    return None if row is None else _run(row)


def unique_run_name(con: Connection, name: str) -> str:
    """`name` when no run has it, else the first free 'name (2)', 'name (3)', ..."""
    taken = {
        r[0]
        for r in con.execute(
            "SELECT name FROM training_runs WHERE name = ? OR starts_with(name, ?)",
            [name, name + " ("],
        ).fetchall()
    }
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def rename_run(con: Connection, run_id: int, name: str) -> TrainingRun:
    row = con.execute(
        f"UPDATE training_runs SET name = ? WHERE id = ? RETURNING {_RUN_COLUMNS}", [name, run_id]
    ).fetchone()
    return _run(row)


def set_run_base(con: Connection, run_id: int, base_model: str) -> TrainingRun:
    row = con.execute(
        f"UPDATE training_runs SET base_model = ? WHERE id = ? RETURNING {_RUN_COLUMNS}",
        [base_model, run_id],
    ).fetchone()
    return _run(row)


def delete_run(con: Connection, run_id: int) -> int:
    """Remove the run; its conversations stay (their messages name the run in their meta) and
    lose only the link. How many conversations were unlinked."""
    unlinked = con.execute(
        "UPDATE conversations SET run_id = NULL WHERE run_id = ?", [run_id]
    ).fetchone()[0]
    con.execute("DELETE FROM training_runs WHERE id = ?", [run_id])
    return unlinked


def find_run_by_adapter_path(con: Connection, adapter_path: str) -> TrainingRun | None:
    row = con.execute(
        f"SELECT {_RUN_COLUMNS} FROM training_runs WHERE adapter_path = ? ORDER BY id LIMIT 1",
        [adapter_path],
    ).fetchone()
    return None if row is None else _run(row)


def run_names(con: Connection) -> dict[str, int]:
    """Every run name of the workspace -> the id of the (first) run holding it."""
    rows = con.execute("SELECT name, min(id) FROM training_runs GROUP BY name").fetchall()
    return {name: run_id for name, run_id in rows}


def find_finefoundry_run(con: Connection, db_file: str, finefoundry_id: str):
    """The run imported from this FineFoundry database with this id, if any."""
    row = con.execute(
        f"""
        SELECT {_RUN_COLUMNS} FROM training_runs
        WHERE json_extract_string(params, '$.finefoundry_id') = ?
          AND json_extract_string(params, '$.finefoundry_db') = ?
        ORDER BY id LIMIT 1
        """,
        [finefoundry_id, db_file],
    ).fetchone()
    return None if row is None else _run(row)


# --- datasets --------------------------------------------------------------------------------

_DATASET_COLUMNS = "id, name, source, row_count, created_at, skipped_rows"


def _dataset(row: tuple) -> Dataset:
    return Dataset(
        id=row[0],
        name=row[1],
        source=row[2],
        rows=row[3],
        created_at=_aware(row[4]),
        skipped=row[5],
    )


def list_datasets(con: Connection) -> list[Dataset]:
    rows = con.execute(
        f"SELECT {_DATASET_COLUMNS} FROM datasets ORDER BY created_at DESC, id DESC"
    ).fetchall()
    return [_dataset(r) for r in rows]


def get_dataset(con: Connection, dataset_id: int) -> Dataset | None:
    row = con.execute(
        f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE id = ?", [dataset_id]
    ).fetchone()
    return None if row is None else _dataset(row)


def count_datasets(con: Connection) -> int:
    return con.execute("SELECT count(*) FROM datasets").fetchone()[0]


def find_dataset_by_source(con: Connection, source: str) -> Dataset | None:
    row = con.execute(
        f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE source = ? ORDER BY id LIMIT 1", [source]
    ).fetchone()
    return None if row is None else _dataset(row)


def insert_dataset(con: Connection, name: str, source: str, created_at: dt.datetime) -> int:
    """A dataset with no rows yet; finish_dataset records its counts."""
    return con.execute(
        "INSERT INTO datasets (name, source, row_count, skipped_rows, created_at) "
        "VALUES (?, ?, 0, 0, ?) RETURNING id",
        [name, source, _naive_utc(created_at)],
    ).fetchone()[0]


def finish_dataset(con: Connection, dataset_id: int, skipped: int) -> Dataset:
    row = con.execute(
        f"""
        UPDATE datasets SET
            row_count = (SELECT count(*) FROM dataset_rows WHERE dataset_id = ?),
            skipped_rows = ?
        WHERE id = ?
        RETURNING {_DATASET_COLUMNS}
        """,
        [dataset_id, skipped, dataset_id],
    ).fetchone()
    return _dataset(row)


def insert_pairs(
    con: Connection, dataset_id: int, prompts: list[str | None], responses: list[str | None]
) -> int:
    """Append pairs in order, skipping empty prompts; how many were written."""
    return con.execute(
        """
        INSERT INTO dataset_rows (dataset_id, ordinal, prompt, response)
        SELECT ?, row_number() OVER (ORDER BY i), p, coalesce(r, '')
        FROM (SELECT unnest(?::VARCHAR[]) AS p, unnest(?::VARCHAR[]) AS r,
                     unnest(range(len(?::VARCHAR[]))) AS i)
        WHERE p IS NOT NULL AND trim(p) <> ''
        """,
        [dataset_id, prompts, responses, prompts],
    ).fetchone()[0]


def insert_synthetic_rows(con: Connection, dataset_id: int, rows: int) -> None:
    """`rows` generated pairs of realistic length, for benchmarks."""
    con.execute(
        """
        INSERT INTO dataset_rows (dataset_id, ordinal, prompt, response)
        SELECT ?, i + 1,
               'Question ' || i || ': explain why the sky looks blue at noon and red at dusk.',
               'Answer ' || i || ': sunlight scatters off air molecules; short blue wavelengths '
               || 'scatter most, and at dusk the longer path leaves mostly red light.'
        FROM range(?) AS t(i)
        """,
        [dataset_id, rows],
    )


def sample_pairs(con: Connection, dataset_id: int, k: int) -> list[SamplePair]:
    """k distinct random rows of one dataset by reservoir sampling (no full sort)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, not {k!r}")
    # The sample sits on a subquery: USING SAMPLE on the table itself would sample before
    # the WHERE and return fewer than k rows of this dataset.
    rows = con.execute(
        f"""
        SELECT prompt, response
        FROM (SELECT prompt, response FROM dataset_rows WHERE dataset_id = ?)
        USING SAMPLE reservoir({k:d} ROWS)
        """,
        [dataset_id],
    ).fetchall()
    return [SamplePair(prompt=p, response=r) for p, r in rows]


def dataset_pairs(con: Connection, dataset_id: int, limit: int | None) -> list[SamplePair]:
    sql = "SELECT prompt, response FROM dataset_rows WHERE dataset_id = ? ORDER BY ordinal"
    params: list[Any] = [dataset_id]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [SamplePair(prompt=p, response=r) for p, r in con.execute(sql, params).fetchall()]


# --- conversations and messages --------------------------------------------------------------

_CONVERSATION_SELECT = """
    SELECT c.id, c.title, c.run_id, c.created_at, c.updated_at,
           (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id), c.source
    FROM conversations c
"""


def _conversation(row: tuple) -> Conversation:
    return Conversation(
        id=row[0],
        title=row[1],
        run_id=row[2],
        created_at=_aware(row[3]),
        updated_at=_aware(row[4]),
        message_count=row[5],
        source=row[6] or "app",
    )


def insert_conversation(
    con: Connection,
    conversation_id: str,
    title: str | None,
    run_id: int | None,
    now: dt.datetime,
    source: str = "app",
) -> None:
    con.execute(
        "INSERT INTO conversations (id, title, run_id, created_at, updated_at, source) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [conversation_id, title, run_id, now, now, source],
    )


def get_conversation(con: Connection, conversation_id: str) -> Conversation | None:
    row = con.execute(_CONVERSATION_SELECT + " WHERE c.id = ?", [conversation_id]).fetchone()
    return None if row is None else _conversation(row)


def list_conversations(con: Connection, limit: int) -> list[Conversation]:
    rows = con.execute(
        _CONVERSATION_SELECT + " ORDER BY c.updated_at DESC, c.created_at DESC LIMIT ?", [limit]
    ).fetchall()
    return [_conversation(r) for r in rows]


def touch_conversation(con: Connection, conversation_id: str, now: dt.datetime) -> None:
    con.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [now, conversation_id])


def rename_conversation(con: Connection, conversation_id: str, title: str, now: dt.datetime):
    con.execute(
        "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
        [title, now, conversation_id],
    )


def delete_conversation(con: Connection, conversation_id: str) -> None:
    con.execute("DELETE FROM messages WHERE conversation_id = ?", [conversation_id])
    con.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])


_MESSAGE_COLUMNS = "id, conversation_id, role, content, status, meta, created_at"


def _message(row: tuple) -> Message:
    return Message(
        id=row[0],
        conversation_id=row[1],
        role=row[2],
        content=row[3],
        status=row[4],
        meta=_loads(row[5], {}),
        created_at=_aware(row[6]),
    )


def insert_message(
    con: Connection,
    conversation_id: str,
    role: str,
    content: str,
    status: str,
    meta: dict,
    now: dt.datetime,
) -> Message:
    row = con.execute(
        f"""
        INSERT INTO messages (conversation_id, role, content, status, meta, created_at)
        VALUES (?, ?, ?, ?, ?, ?)
        RETURNING {_MESSAGE_COLUMNS}
        """,
        [conversation_id, role, content, status, _json(meta), now],
    ).fetchone()
    return _message(row)


def get_message(con: Connection, message_id: int) -> Message | None:
    row = con.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", [message_id]
    ).fetchone()
    return None if row is None else _message(row)


def update_message(
    con: Connection, message_id: int, content: str, status: str, meta: dict
) -> Message:
    row = con.execute(
        f"""
        UPDATE messages SET content = ?, status = ?, meta = ?
        WHERE id = ?
        RETURNING {_MESSAGE_COLUMNS}
        """,
        [content, status, _json(meta), message_id],
    ).fetchone()
    return _message(row)


def list_messages(con: Connection, conversation_id: str) -> list[Message]:
    rows = con.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? "
        "ORDER BY created_at, id",
        [conversation_id],
    ).fetchall()
    return [_message(r) for r in rows]
