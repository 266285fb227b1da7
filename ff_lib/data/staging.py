"""SQL that reads a dataset file into the workspace: DuckDB's readers stage it as the temp
table ff_import, and its rows are copied into a dataset, each row left out counted by reason.

The only text put into SQL is a column name read back from the staged file itself (quoted as
an identifier); values are bound parameters.
"""

from pathlib import Path

import duckdb

Connection = duckdb.DuckDBPyConnection

# Every row is text to us: CSV is read as VARCHAR (so "007" and "1.50" stay as written, and a
# column of numbers that turns to text after the sniffer's sample is not refused), and JSON
# types are detected over the whole file (a field of numbers then text becomes JSON, read as
# text by _as_text) at about 1 s per million rows.
_READERS = {
    "jsonl": "CREATE TEMP TABLE ff_import AS SELECT * FROM "
    "read_json_auto(?, format = 'newline_delimited', compression = ?, sample_size = -1)",
    "json": "CREATE TEMP TABLE ff_import AS SELECT * FROM "
    "read_json_auto(?, compression = ?, sample_size = -1)",
    "csv": "CREATE TEMP TABLE ff_import AS SELECT * FROM "
    "read_csv_auto(?, compression = ?, header = true, all_varchar = true)",
    "tsv": "CREATE TEMP TABLE ff_import AS SELECT * FROM "
    "read_csv_auto(?, compression = ?, header = true, all_varchar = true, delim = '\t')",
    "parquet": "CREATE TEMP TABLE ff_import AS SELECT * FROM read_parquet(?)",
}
READER_FORMATS = tuple(_READERS)
EMPTY_PROMPT = "the prompt is empty"
TOOL_CALL = "the assistant turn has no text (a tool call)"


def stage_file(
    con: Connection, path: Path, fmt: str, compressed: bool = False
) -> tuple[list[str], int]:
    """Read a file with DuckDB's own reader into the temp table ff_import; (columns, rows)."""
    args = [str(path)] if fmt == "parquet" else [str(path), "gzip" if compressed else "none"]
    con.execute(_READERS[fmt], args)
    columns = [row[0] for row in con.execute("DESCRIBE ff_import").fetchall()]
    count = con.execute("SELECT count(*) FROM ff_import").fetchone()[0]
    return columns, count


def _ident(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _as_text(con: Connection, column: str) -> str:
    """A staged column as plain text. A JSON column (a field holding numbers and text) gives
    its strings unquoted: CAST would keep the JSON quotes ('"Paris"')."""
    types = dict(
        con.execute("SELECT column_name, column_type FROM (DESCRIBE ff_import)").fetchall()
    )
    if types.get(column) == "JSON":
        return f"({_ident(column)} ->> '$')"
    return f"CAST({_ident(column)} AS VARCHAR)"


def _insert_staged_pairs(con: Connection, dataset_id: int) -> tuple[int, dict[str, int]]:
    """Move ff_pairs(rid, p, r, why) rows without a `why` into the dataset, in file order."""
    written = con.execute(
        """
        INSERT INTO dataset_rows (dataset_id, ordinal, prompt, response)
        SELECT ?, row_number() OVER (ORDER BY rid), p, coalesce(r, '')
        FROM ff_pairs WHERE why IS NULL
        """,
        [dataset_id],
    ).fetchone()[0]
    skipped = con.execute(
        "SELECT why, count(*) FROM ff_pairs WHERE why IS NOT NULL GROUP BY why ORDER BY why"
    ).fetchall()
    con.execute("DROP TABLE ff_pairs")
    return written, dict(skipped)


def insert_staged_columns(
    con: Connection,
    dataset_id: int,
    prompt_column: str,
    response_column: str,
    context_columns: tuple[str, ...] = (),
) -> tuple[int, dict[str, int]]:
    """Copy staged rows in file order; each context column (Alpaca's input, Dolly's context)
    is joined to the prompt by a blank line. (rows written, {reason: rows skipped})."""
    prompt = _as_text(con, prompt_column)
    for column in context_columns:
        extra = _as_text(con, column)
        prompt = (
            f"CASE WHEN {extra} IS NULL OR trim({extra}) = '' THEN {prompt} "
            f"ELSE {prompt} || chr(10) || chr(10) || {extra} END"
        )
    con.execute(
        f"""
        CREATE TEMP TABLE ff_pairs AS
        SELECT rid, p, r, CASE WHEN p IS NULL OR trim(p) = '' THEN ? END AS why
        FROM (SELECT rowid AS rid, {prompt} AS p, {_as_text(con, response_column)} AS r
              FROM ff_import)
        """,
        [EMPTY_PROMPT],
    )
    return _insert_staged_pairs(con, dataset_id)


# A turn's text: a string, or OpenAI's content parts ([{"type": "text", "text": ...}, ...])
# with their text parts joined by a newline (read as VARCHAR they gave the parts' JSON).
_TURN_TEXT = """CASE json_type(coalesce(t.content, t.value))
        WHEN 'ARRAY' THEN array_to_string(
            json_extract_string(coalesce(t.content, t.value), '$[*].text'), chr(10))
        ELSE coalesce(t.content, t.value) ->> '$' END"""


def insert_staged_chat(con: Connection, dataset_id: int, column: str) -> tuple[int, dict[str, int]]:
    """From a list of turns (role/content, with text or content parts, or ShareGPT from/value),
    the first user turn and the first assistant turn after it; a row whose assistant turn has no text (a tool call)
    is skipped. (rows written, {reason: rows skipped})."""
    con.execute(
        f"""
        CREATE TEMP TABLE ff_pairs AS
        WITH raw AS (
            SELECT rowid AS rid,
                   from_json(to_json({_ident(column)}),
                             '[{{"role":"VARCHAR","content":"JSON",
                                 "from":"VARCHAR","value":"JSON"}}]') AS turns
            FROM ff_import
        ), norm AS (
            SELECT rid, list_transform(turns, lambda t: {{
                'role': CASE lower(coalesce(t.role, t."from"))
                            WHEN 'human' THEN 'user'
                            WHEN 'gpt' THEN 'assistant'
                            WHEN 'bot' THEN 'assistant'
                            WHEN 'model' THEN 'assistant'
                            ELSE lower(coalesce(t.role, t."from")) END,
                'content': {_TURN_TEXT}}}) AS turns
            FROM raw
        ), pos AS (
            SELECT rid, turns, list_position(list_transform(turns, lambda t: t.role), 'user') AS u
            FROM norm
        ), pairs AS (
            SELECT rid, turns[u].content AS p,
                   list_filter(list_slice(turns, u + 1, len(turns)),
                               lambda t: t.role = 'assistant') AS answers
            FROM pos
        )
        SELECT rid, p, answers[1].content AS r,
               CASE WHEN p IS NULL OR trim(p) = '' THEN ?
                    WHEN len(answers) > 0
                         AND (answers[1].content IS NULL OR trim(answers[1].content) = '')
                    THEN ? END AS why
        FROM pairs
        """,
        [EMPTY_PROMPT, TOOL_CALL],
    )
    return _insert_staged_pairs(con, dataset_id)
