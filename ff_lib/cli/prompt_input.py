"""Text from the terminal (arguments, a prompt file, stdin), refused when it is not UTF-8.

Python hands over argv bytes that are not UTF-8 as lone surrogates ('caf\\udce9'), which the
tokenizer cannot encode: checked here, so the user gets one line naming the byte, never a
traceback from deep inside generation.
"""

import argparse
import sys
from pathlib import Path

from ff_lib.errors import InvalidInput

FIX = "save or type it as UTF-8 (a terminal set to UTF-8, an editor's 'Save as UTF-8')"


def checked_text(text: str, where: str) -> str:
    """`text` as given, or InvalidInput when it carries bytes that were not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = text[exc.start : exc.end].encode("utf-8", "surrogateescape")
        line = text.count("\n", 0, exc.start) + 1
        at = f"line {line}" if "\n" in text else f"character {exc.start + 1}"
        raise InvalidInput(
            f"{where} is not valid UTF-8: byte 0x{raw[0]:02x} at {at}; {FIX}"
        ) from None
    return text


def decoded(data: bytes, where: str, lines: bool = True) -> str:
    """UTF-8 bytes (a BOM allowed) as text, or InvalidInput naming the line of the bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        on = f" on line {line}" if lines else ""
        raise InvalidInput(
            f"{where} is not valid UTF-8: byte 0x{data[exc.start]:02x}{on}; {FIX}"
        ) from None


def read_prompt_file(name: str) -> str:
    """The whole of a prompt file, or of stdin for '-'."""
    if name == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream (tests, embedding): already decoded
            return checked_text(sys.stdin.read(), "the prompt on stdin")
        return decoded(stream.read(), "the prompt on stdin")
    path = Path(name).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the prompt file {path}: {exc.strerror}") from exc
    return decoded(data, f"the prompt file {path}")


def prompt_from(args) -> str:
    """The prompt of --prompt or --prompt-file (arguments are checked by check_arguments)."""
    if getattr(args, "prompt_file", None) is not None:
        return read_prompt_file(args.prompt_file)
    return checked_text(args.prompt, "--prompt")


def read_line(number: int) -> str:
    """Line `number` of stdin ('' at its end), or InvalidInput when it is not UTF-8."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return checked_text(sys.stdin.readline(), f"line {number} of the input")
    return decoded(stream.readline(), f"line {number} of the input", lines=False)


def _labels(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> how the user wrote it (--name, FILE), over every subcommand."""
    labels: dict[str, str] = {}
    for action in parser._actions:  # argparse keeps its actions here; no public accessor
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                labels.update(_labels(sub))
        elif action.option_strings:
            labels.setdefault(action.dest, action.option_strings[-1])
        else:
            labels.setdefault(action.dest, str(action.metavar or action.dest.upper()))
    return labels


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every text argument must be UTF-8 (a name or path with other bytes would fail deep
    inside DuckDB or the tokenizer, as a traceback)."""
    labels = None
    for dest, value in vars(args).items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                labels = labels or _labels(parser)
                checked_text(value, labels.get(dest, dest))
