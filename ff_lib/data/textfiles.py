"""Text dataset files before DuckDB reads them: their encoding, and problems on the file's own lines.

DuckDB reads UTF-8 only and reports a non-UTF-8 file as "CSV Error on Line: 2" (the header's
line shown), a JSON record cut short on the line where its parser stopped. So the bytes are
checked here first: UTF-8 (with or without a BOM) is read in place; UTF-16 with a BOM is
unambiguous and is decoded; any other bytes are refused, naming the line, unless the user names
the encoding (an 8-bit file could be Windows-1252, Latin-1, Cyrillic, ...: never guessed).
"""

import codecs
import csv
import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ff_lib.errors import DatasetImportError

CHUNK = 1 << 20
RESAVE = (
    "re-save it as UTF-8 (Excel: Save As > 'CSV UTF-8 (Comma delimited)'; an editor: "
    "Save with Encoding > UTF-8), or name its encoding with --encoding (e.g. cp1252, latin-1)"
)


def _chunks(path: Path, compressed: bool) -> Iterator[bytes]:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as raw:
            while chunk := raw.read(CHUNK):
                yield chunk
    except (OSError, EOFError) as exc:  # a truncated or non-gzip .gz
        raise DatasetImportError(f"cannot import {path}: cannot read it: {exc}") from exc


def _check_utf8(path: Path, compressed: bool) -> None:
    """Refuse bytes that are not UTF-8, naming the first bad line and byte."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines_before = 0
    for chunk in _chunks(path, compressed):
        if b"\x00" in chunk:
            raise DatasetImportError(
                f"cannot import {path}: the file holds NUL bytes — it looks like UTF-16 "
                f"without a byte-order mark; {RESAVE.replace('cp1252, latin-1', 'utf-16-le')}"
            )
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            line = lines_before + exc.object[: exc.start].count(b"\n") + 1
            byte = exc.object[exc.start]
            raise DatasetImportError(
                f"cannot import {path}: the file is not UTF-8 — line {line} has the byte "
                f"0x{byte:02x}, as Excel's plain 'CSV' (Windows-1252) or a Latin-1 file "
                f"writes 'é' and the like; {RESAVE}"
            ) from exc
        lines_before += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise DatasetImportError(
            f"cannot import {path}: the file is not UTF-8 — it ends inside a character; {RESAVE}"
        ) from exc


def _transcode(path: Path, compressed: bool, encoding: str, workdir: Path) -> Path:
    """A UTF-8 copy of the file (uncompressed), decoded with `encoding`."""
    handle, name = tempfile.mkstemp(dir=workdir, suffix=".utf8")
    os.close(handle)
    target = Path(name)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        with target.open("w", encoding="utf-8", newline="") as out:
            for chunk in _chunks(path, compressed):
                out.write(decoder.decode(chunk))
            out.write(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        raise DatasetImportError(
            f"cannot import {path}: it is not valid {encoding} either ({exc.reason} at byte "
            f"0x{exc.object[exc.start]:02x}); {RESAVE}"
        ) from exc
    return target


def utf8_file(
    path: Path, compressed: bool, encoding: str | None, workdir: Path
) -> tuple[Path, bool, str | None]:
    """The file DuckDB should read, whether it is still compressed, and a note on decoding."""
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError as exc:
            raise DatasetImportError(
                f"cannot import {path}: unknown encoding {encoding!r} "
                "(e.g. utf-8, cp1252, latin-1, utf-16)"
            ) from exc
        if name != "utf-8":
            note = f"decoded from {encoding} as asked"
            return _transcode(path, compressed, encoding, workdir), False, note
    head = next(_chunks(path, compressed), b"")[:4]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        note = "decoded from UTF-16 (the file starts with its byte-order mark)"
        return _transcode(path, compressed, "utf-16", workdir), False, note
    _check_utf8(path, compressed)
    return path, compressed, None


def _text_lines(path: Path, compressed: bool) -> Iterator[str]:
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as lines:
        yield from lines


def json_problem(path: Path, compressed: bool, newline_delimited: bool) -> str | None:
    """The first malformed JSON record, on the line where it starts; None if all parse."""
    if not newline_delimited:
        try:
            json.loads("".join(_text_lines(path, compressed)))
        except ValueError as exc:
            return f"malformed JSON on line {getattr(exc, 'lineno', '?')}: {exc}"
        return None
    for number, line in enumerate(_text_lines(path, compressed), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            return f"line {number} is not one JSON record ({exc.args[0].split(':')[0]})"
    return None


def csv_problem(path: Path, compressed: bool, delimiter: str | None) -> str | None:
    """The first row whose field count differs from the header's, on its own line number."""
    text = io.StringIO("".join(_text_lines(path, compressed)))
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text.read(CHUNK), delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
        text.seek(0)
    reader = csv.reader(text, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return None
    start = reader.line_num
    for row in reader:
        if row and len(row) != len(header):
            return (
                f"line {start + 1} has {len(row)} fields where the header has {len(header)} "
                f"(a stray {delimiter!r} or an unclosed quote?)"
            )
        start = reader.line_num
    return None
