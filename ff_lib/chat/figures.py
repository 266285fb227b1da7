"""One-line summaries of a reply's figures and of a message's provenance, for people."""

import re
import unicodedata
from collections import Counter

# Names of the blank characters a model commonly emits (others are named by Unicode).
_BLANK_NAMES = {" ": "space", "\n": "newline", "\t": "tab", "\r": "carriage return"}


def _number(value, digits: int = 1) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def reply_figures(meta: dict) -> str:
    """'42 tokens · 18.3 tokens/s · adapter run-name' from a reply's meta ('' when none)."""
    stats = meta.get("stats") or {}
    parts = []
    if stats.get("new_tokens") is not None:
        tokens = f"{_number(stats['new_tokens'])} tokens"
        if meta.get("finish_reason") == "length":  # it did not end: the limit cut it
            tokens += " (max reached)"
        parts.append(tokens)
    if stats.get("tokens_per_s") is not None:
        parts.append(f"{_number(stats['tokens_per_s'])} tokens/s")
    if stats.get("ttft_s") is not None:
        parts.append(f"first token {_number(stats['ttft_s'], 2)} s")
    source = reply_source(meta)
    if source:
        parts.append(source)
    engine = reply_engine(meta)
    if engine:
        parts.append(engine)
    return " · ".join(parts)


def reply_engine(meta: dict) -> str:
    """'vLLM at HOST:PORT, model capitals' for a reply from a remote engine ('' in-process)."""
    engine = meta.get("engine")
    if not engine or engine == "in-process":
        return ""
    model = meta.get("adapter_name") if meta.get("adapter") else "the base"
    return f"{engine}, model {model}"


def reply_source(meta: dict) -> str:
    """'adapter NAME' or 'base model' for a reply, '' when the meta does not say."""
    if "adapter" not in meta and "run" not in meta:
        return ""
    adapter = meta.get("adapter")
    if not adapter:
        return "base model"
    run = meta.get("run")
    name = run.get("name") if isinstance(run, dict) else run
    return f"adapter {name or adapter}"


def blank_text_note(text: str) -> str:
    """'only whitespace: 128 newlines' for a text of blank characters only; '' otherwise.

    An empty text gives '' too: it has nothing to describe (views say '(no text)').
    """
    if not text or text.strip():
        return ""
    parts = []
    for char, count in Counter(text).most_common():
        name = _BLANK_NAMES.get(char) or unicodedata.name(char, f"U+{ord(char):04X}").lower()
        parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return "only whitespace: " + ", ".join(parts)


_BLANK_RUN = re.compile(r"(?:[ \t]*\n){4,}")


def fold_blank_lines(text: str) -> str:
    """The text for display with each run of more than three line breaks (and the blanks among
    them) shown as one line that counts them: a reply that opens with 170 newlines is not three
    screens of white. The stored text is never changed."""

    def fold(match: re.Match) -> str:
        return f"\n[… {match.group().count(chr(10))} line breaks …]\n"

    return _BLANK_RUN.sub(fold, text)
