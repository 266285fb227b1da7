"""Dataset files (JSONL, JSON, CSV, TSV, Parquet; .gz too) read by DuckDB's own readers into
prompt/response rows, saying which columns made the prompt and why any row was left out."""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ff_lib.data import staging, textfiles
from ff_lib.errors import DatasetImportError

FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TEXT_FORMATS = ("jsonl", "json", "csv", "tsv")
PROMPT_COLUMNS = ("prompt", "instruction", "question", "input")
# Joined after the prompt by a blank line: Alpaca's `input`, Dolly's `context`.
CONTEXT_COLUMNS = ("input", "context")
# A system prompt (OpenOrca's `system_prompt`) is not the user's prompt: named, not joined.
SYSTEM_COLUMNS = ("system_prompt", "system")
RESPONSE_COLUMNS = ("response", "output", "answer", "completion")
CHAT_COLUMNS = ("messages", "conversations")


@dataclass(frozen=True)
class ColumnChoice:
    """Which staged columns become the prompt and the response (or one chat column)."""

    prompt: str | None = None
    response: str | None = None
    context: tuple[str, ...] = ()  # joined to the prompt: Alpaca's input, Dolly's context
    chat: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileImport:
    """What one file gave: rows written, rows skipped by reason, and what was chosen."""

    written: int
    skipped: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def file_format(path: Path) -> tuple[str, bool]:
    """('jsonl' | 'json' | 'csv' | 'tsv' | 'parquet', gzip-compressed) from the file's name."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes = suffixes[:-1]
    fmt = FORMATS_BY_SUFFIX.get(suffixes[-1] if suffixes else "")
    if fmt is None or (compressed and fmt not in TEXT_FORMATS):
        known = ", ".join(FORMATS_BY_SUFFIX)
        raise DatasetImportError(
            f"cannot import {path}: unknown file type {''.join(path.suffixes) or '(none)'!r} "
            f"(use {known}, or .jsonl.gz, .json.gz, .csv.gz, .tsv.gz)"
        )
    return fmt, compressed


def check_file(path: Path) -> tuple[str, bool]:
    """The file's format and compression, or DatasetImportError when it is missing or empty."""
    if not path.exists():
        raise DatasetImportError(f"cannot import {path}: the file does not exist")
    if not path.is_file():
        raise DatasetImportError(f"cannot import {path}: not a file")
    kind = file_format(path)
    if path.stat().st_size == 0:
        raise DatasetImportError(f"cannot import {path}: the file is empty")
    return kind


def _prompt_layout(prompt: str, by_lower: dict[str, str]) -> tuple[tuple[str, ...], list[str]]:
    """The context columns joined to an auto-chosen prompt, and notes saying so."""
    context = tuple(by_lower[c] for c in CONTEXT_COLUMNS if c in by_lower and by_lower[c] != prompt)
    notes = []
    if context:
        joined = " + ".join(repr(c) for c in (prompt, *context))
        notes.append(f"prompt = {joined}, joined by a blank line")
    for name in SYSTEM_COLUMNS:
        if name in by_lower:
            notes.append(
                f"column {by_lower[name]!r} (a system prompt) is not imported: "
                f"the prompt is {' + '.join(repr(c) for c in (prompt, *context))}"
            )
    return context, notes


def _unused(
    by_lower: dict[str, str], names: tuple[str, ...], used: tuple[str, ...], what: str
) -> list[str]:
    """A note for each column a layout could use as the `what` that this import leaves out."""
    chosen = " + ".join(repr(c) for c in used)
    return [
        f"column {by_lower[n]!r} is not imported: the {what} is {chosen} "
        f"(choose with --{what}-column)"
        for n in names
        if n in by_lower and by_lower[n] not in used
    ]


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
    context, notes = (), []
    if prompt is None:
        prompt = first(PROMPT_COLUMNS)
        if prompt is not None:
            context, notes = _prompt_layout(prompt, by_lower)
    if response is None:
        response = first(RESPONSE_COLUMNS)
    if prompt is not None and response is not None:
        if prompt_column is None:
            notes += _unused(by_lower, PROMPT_COLUMNS, (prompt, *context), "prompt")
        if response_column is None:
            notes += _unused(by_lower, RESPONSE_COLUMNS, (response,), "response")
        return ColumnChoice(prompt, response, context, notes=tuple(notes))
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


def _text_problem(path: Path, fmt: str, compressed: bool) -> str | None:
    """A problem found by reading the text ourselves, on the file's own line numbers."""
    if fmt in ("json", "jsonl"):
        return textfiles.json_problem(path, compressed, newline_delimited=fmt == "jsonl")
    if fmt in ("csv", "tsv"):
        return textfiles.csv_problem(path, compressed, "\t" if fmt == "tsv" else None)
    return None


def _stage(con, path: Path, encoding: str | None) -> tuple[list[str], int, list[str]]:
    """Stage the file as ff_import (UTF-8 checked first); (columns, rows, notes)."""
    fmt, compressed = check_file(path)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ff-import-") as workdir:
        read, read_compressed = path, compressed
        if fmt in TEXT_FORMATS:
            read, read_compressed, note = textfiles.utf8_file(
                path, compressed, encoding, Path(workdir)
            )
            notes += [note] if note else []
        try:
            columns, total = staging.stage_file(con, read, fmt, read_compressed)
        except duckdb.Error as exc:
            problem = _text_problem(read, fmt, read_compressed) or _reader_problem(exc)
            raise DatasetImportError(f"cannot import {path}: {problem}") from exc
        if fmt == "csv" and len(columns) == 1 and "," in columns[0]:
            # DuckDB's sniffer gave up on the delimiter and read each line as one field.
            problem = _text_problem(read, fmt, read_compressed)
            if problem:
                raise DatasetImportError(f"cannot import {path}: {problem}")
    return columns, total, notes


def import_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    dataset_id: int,
    prompt_column: str | None = None,
    response_column: str | None = None,
    encoding: str | None = None,
) -> FileImport:
    """Copy a checked file's pairs into dataset_id inside the caller's transaction; refuses a
    file with no usable row."""
    columns, total, notes = _stage(con, path, encoding)
    if total == 0:
        raise DatasetImportError(f"cannot import {path}: the file has no rows")
    choice = choose_columns(path, columns, prompt_column, response_column)
    try:
        if choice.chat is not None:
            written, skipped = staging.insert_staged_chat(con, dataset_id, choice.chat)
        else:
            written, skipped = staging.insert_staged_columns(
                con, dataset_id, choice.prompt, choice.response, choice.context
            )
    except duckdb.Error as exc:
        raise DatasetImportError(f"cannot import {path}: {_reader_problem(exc)}") from exc
    if written == 0:
        why = "; ".join(f"{n} row(s): {reason}" for reason, n in skipped.items())
        raise DatasetImportError(
            f"cannot import {path}: none of its {total} rows can be used ({why})"
        )
    return FileImport(written, skipped, tuple(notes) + choice.notes)
