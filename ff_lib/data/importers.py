"""Dataset files (JSONL, JSON, CSV, Parquet) read by DuckDB's own readers into prompt/response rows."""

from dataclasses import dataclass
from pathlib import Path

import duckdb

from ff_lib.data import store
from ff_lib.errors import DatasetImportError

FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PROMPT_COLUMNS = ("prompt", "instruction", "question", "input")
RESPONSE_COLUMNS = ("response", "output", "answer", "completion")
CHAT_COLUMNS = ("messages", "conversations")


@dataclass(frozen=True)
class ColumnChoice:
    """Which staged columns become the prompt and the response (or one chat column)."""

    prompt: str | None = None
    response: str | None = None
    extra_input: str | None = None  # joined to the prompt: Alpaca's instruction + input
    chat: str | None = None


def file_format(path: Path) -> str:
    """'jsonl' | 'json' | 'csv' | 'parquet' from the file's extension."""
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(FORMATS_BY_SUFFIX)
        raise DatasetImportError(
            f"cannot import {path}: unknown file type {path.suffix or '(none)'!r} (use {known})"
        )
    return fmt


def check_file(path: Path) -> str:
    """The file's format, or DatasetImportError when it is missing or empty."""
    if not path.exists():
        raise DatasetImportError(f"cannot import {path}: the file does not exist")
    if not path.is_file():
        raise DatasetImportError(f"cannot import {path}: not a file")
    fmt = file_format(path)
    if path.stat().st_size == 0:
        raise DatasetImportError(f"cannot import {path}: the file is empty")
    return fmt


def choose_columns(
    path: Path,
    columns: list[str],
    prompt_column: str | None = None,
    response_column: str | None = None,
) -> ColumnChoice:
    """Map the file's columns to prompt/response by name (case-insensitive), or refuse."""
    by_lower = {c.lower(): c for c in columns}
    found = ", ".join(columns) or "(none)"

    def explicit(name: str, flag: str) -> str:
        column = by_lower.get(name.lower())
        if column is None:
            raise DatasetImportError(
                f"cannot import {path}: {flag} {name!r} is not a column of the file "
                f"(columns: {found})"
            )
        return column

    def first(names: tuple[str, ...]) -> str | None:
        return next((by_lower[n] for n in names if n in by_lower), None)

    prompt = explicit(prompt_column, "--prompt-column") if prompt_column else None
    response = explicit(response_column, "--response-column") if response_column else None
    extra_input = None
    if prompt is None:
        prompt = first(PROMPT_COLUMNS)
        instruction, inp = by_lower.get("instruction"), by_lower.get("input")
        if prompt == instruction and inp is not None and prompt is not None:
            extra_input = inp
    if response is None:
        response = first(RESPONSE_COLUMNS)
    if prompt is not None and response is not None:
        return ColumnChoice(prompt=prompt, response=response, extra_input=extra_input)
    chat = first(CHAT_COLUMNS)
    if chat is not None and prompt_column is None and response_column is None:
        return ColumnChoice(chat=chat)
    missing = "a prompt column" if prompt is None else "a response column"
    if prompt is None and response is None:
        missing = "prompt and response columns"
    raise DatasetImportError(
        f"cannot import {path}: found no {missing} "
        f"(expected {'|'.join(PROMPT_COLUMNS)} and {'|'.join(RESPONSE_COLUMNS)}, "
        f"or a messages/conversations list; columns: {found}) "
        f"— name them with --prompt-column/--response-column"
    )


def _reader_problem(exc: duckdb.Error) -> str:
    """DuckDB's first line, without its 'Invalid Input Error: ' style prefix."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    head, sep, rest = line.partition(" Error: ")
    return rest if sep and len(head) < 30 else line


def import_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    dataset_id: int,
    prompt_column: str | None = None,
    response_column: str | None = None,
) -> tuple[int, int]:
    """Copy a checked file's pairs into dataset_id inside the caller's transaction;
    (rows written, rows skipped for an empty prompt). Refuses a file with no usable row."""
    fmt = check_file(path)
    try:
        columns, total = store.stage_file(con, path, fmt)
    except duckdb.Error as exc:
        raise DatasetImportError(f"cannot import {path}: {_reader_problem(exc)}") from exc
    if total == 0:
        raise DatasetImportError(f"cannot import {path}: the file has no rows")
    choice = choose_columns(path, columns, prompt_column, response_column)
    try:
        if choice.chat is not None:
            written = store.insert_staged_chat(con, dataset_id, choice.chat)
        else:
            written = store.insert_staged_columns(
                con, dataset_id, choice.prompt, choice.response, choice.extra_input
            )
    except duckdb.Error as exc:
        raise DatasetImportError(f"cannot import {path}: {_reader_problem(exc)}") from exc
    if written == 0:
        what = "user turn" if choice.chat else f"non-empty {choice.prompt!r}"
        raise DatasetImportError(
            f"cannot import {path}: none of its {total} rows has a {what} to use as the prompt"
        )
    return written, total - written
