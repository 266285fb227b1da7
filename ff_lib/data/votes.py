"""The SQL of blind A/B votes (table `votes`, migration m006_votes); values always bound."""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from ff_lib.errors import InvalidInput

VERDICTS = ("a", "b", "tie", "both_bad")

_COLUMNS = (
    "id, prompt, answer_a, answer_b, model_a, model_b, swapped, verdict, meta_a, meta_b, created_at"
)


@dataclass(frozen=True)
class Vote:
    """One blind A/B verdict. model_a/model_b: who answered the side shown as A/B
    ({"key", "label", "run_id", "adapter"}); swapped: A was the second model chosen."""

    id: int
    prompt: str
    answer_a: str
    answer_b: str
    model_a: dict[str, Any]
    model_b: dict[str, Any]
    swapped: bool
    verdict: str  # one of VERDICTS
    meta_a: dict[str, Any]  # Reply.as_meta() of A's answer: adapter, sha256, settings, seed...
    meta_b: dict[str, Any]
    created_at: dt.datetime


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _vote(row: tuple) -> Vote:
    return Vote(
        id=row[0],
        prompt=row[1],
        answer_a=row[2],
        answer_b=row[3],
        model_a=json.loads(row[4]),
        model_b=json.loads(row[5]),
        swapped=bool(row[6]),
        verdict=row[7],
        meta_a=json.loads(row[8]),
        meta_b=json.loads(row[9]),
        created_at=row[10].replace(tzinfo=dt.UTC),
    )


def checked_vote(fields: dict) -> dict:
    """The vote's fields with the prompt trimmed; InvalidInput names what is wrong."""
    verdict = fields.get("verdict")
    if verdict not in VERDICTS:
        raise InvalidInput(f"unknown verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("the prompt of a vote must not be empty")
    for side in ("a", "b"):
        if not isinstance(fields.get(f"answer_{side}"), str):
            raise InvalidInput(f"answer {side.upper()} of a vote must be text")
        if not isinstance(fields.get(f"model_{side}"), dict):
            raise InvalidInput(f"model {side.upper()} of a vote must say who answered")
    return {**fields, "prompt": prompt.strip()}


def insert_vote(con: duckdb.DuckDBPyConnection, fields: dict, now: dt.datetime) -> Vote:
    """Store one vote; `fields` holds Vote's fields but id and created_at."""
    row = con.execute(
        f"""
        INSERT INTO votes (prompt, answer_a, answer_b, model_a, model_b, swapped, verdict,
                           meta_a, meta_b, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        RETURNING {_COLUMNS}
        """,
        [
            fields["prompt"],
            fields["answer_a"],
            fields["answer_b"],
            _json(fields["model_a"]),
            _json(fields["model_b"]),
            bool(fields["swapped"]),
            fields["verdict"],
            _json(fields.get("meta_a") or {}),
            _json(fields.get("meta_b") or {}),
            now,
        ],
    ).fetchone()
    return _vote(row)


def list_votes(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[Vote]:
    """Oldest first (the order they were cast)."""
    sql = f"SELECT {_COLUMNS} FROM votes ORDER BY created_at, id"
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_vote(r) for r in con.execute(sql, params).fetchall()]
