"""The shared history as files: plain text, Markdown and JSONL (one message per line)."""

import json
import re
from dataclasses import dataclass

from ff_lib.chat.compared import BASE_LABEL, compared_sides, side_note
from ff_lib.chat.figures import reply_figures
from ff_lib.chat.history import ChatMessage

ROLE_TITLES = {"user": "Prompt", "assistant": "Response", "system": "System"}

# Meta keys every JSONL line carries, present (null) even when the meta lacks them.
JSONL_META_KEYS = ("run", "base_model", "adapter", "settings", "stats")

_HTML_SPECIALS = re.compile(r"[&<>]")
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


@dataclass(frozen=True)
class ExportFormat:
    """How one export format is offered for download."""

    label: str
    extension: str
    mime: str


EXPORT_FORMATS = {
    "Text": ExportFormat("Text", "txt", "text/plain"),
    "Markdown": ExportFormat("Markdown", "md", "text/markdown"),
    "JSONL": ExportFormat("JSONL", "jsonl", "application/jsonl"),
}


def _status_note(m: ChatMessage) -> str:
    """' [interrupted]', ' [error: the reason]' ('' for a complete message)."""
    if m.status == "complete":
        return ""
    reason = (m.meta or {}).get("error") if m.status == "error" else None
    return f" [{m.status}: {reason}]" if reason else f" [{m.status}]"


def side_title(side: dict) -> str:
    """'Base model response', 'capitals-lora response': a compared side's title (a run's name
    as it is written; only our own label starts a sentence)."""
    label = str(side.get("label") or "other model")
    if label in (BASE_LABEL, "other model"):
        label = label.capitalize()
    return f"{label} response"


def export_text(messages: list[ChatMessage]) -> str:
    """The history as plain text: 'Prompt:' / 'Response:' blocks, content as is; a compared
    turn's other answers follow its reply, each titled by its model ('Base model response:')."""
    blocks = []
    for m in messages:
        head = f"{ROLE_TITLES[m.role]}{_status_note(m)}"
        if m.created_at:
            head += f" ({m.created_at})"
        block = f"{head}:\n{m.content}"
        figures = reply_figures(m.meta) if m.role == "assistant" else ""
        if figures:
            block += f"\n-- {figures}"
        blocks.append(block)
        for side in compared_sides(m.meta) if m.role == "assistant" else []:
            block = f"{side_title(side)}{side_note(side)}:\n{side.get('text') or ''}"
            if figures := reply_figures(side.get("meta") or {}):
                block += f"\n-- {figures}"
            blocks.append(block)
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _escape_markdown_html(text: str) -> str:
    """Escape &, <, > outside fenced code blocks so a viewer shows text, never runs HTML."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append(line)
        elif fenced:
            out.append(line)
        else:
            out.append(_HTML_SPECIALS.sub(lambda c: _HTML_ESCAPES[c.group()], line))
    return "\n".join(out)


def export_markdown(messages: list[ChatMessage], title: str = "FF Playground chat") -> str:
    """The history as Markdown: a heading per message, HTML in the content escaped."""
    parts = [f"# {_escape_markdown_html(title)}"]
    for m in messages:
        parts.append(f"## {ROLE_TITLES[m.role]}{_status_note(m)}")
        parts.append(_escape_markdown_html(m.content) if m.content else "_(empty)_")
        figures = reply_figures(m.meta) if m.role == "assistant" else ""
        if figures:
            parts.append(f"*{_escape_markdown_html(figures)}*")
        for side in compared_sides(m.meta) if m.role == "assistant" else []:
            parts.append(f"### {_escape_markdown_html(side_title(side) + side_note(side))}")
            text = side.get("text") or ""
            parts.append(_escape_markdown_html(text) if text else "_(empty)_")
            if figures := reply_figures(side.get("meta") or {}):
                parts.append(f"*{_escape_markdown_html(figures)}*")
    return "\n\n".join(parts) + "\n"


def jsonl_record(m: ChatMessage) -> dict:
    """One JSONL line's object: role, content, timestamp, status, then every meta key; a compared
    reply's other sides as `compare_replies` (each with its provenance), older ones read alike."""
    record = {"role": m.role, "content": m.content, "timestamp": m.created_at, "status": m.status}
    for key in JSONL_META_KEYS:
        record[key] = m.meta.get(key)
    for key, value in m.meta.items():
        if key != "base_reply":
            record.setdefault(key, value)
    if sides := compared_sides(m.meta):
        record["compare_replies"] = sides
    return record


def export_jsonl(messages: list[ChatMessage]) -> bytes:
    """The history as UTF-8 JSONL, one message per line, non-ASCII written as is."""
    lines = [
        json.dumps(jsonl_record(m), ensure_ascii=False, default=str, sort_keys=False)
        for m in messages
    ]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def export_bytes(messages: list[ChatMessage], fmt: str) -> bytes:
    """The history in the format named by an EXPORT_FORMATS key, as UTF-8 bytes."""
    if fmt == "Text":
        return export_text(messages).encode("utf-8")
    if fmt == "Markdown":
        return export_markdown(messages).encode("utf-8")
    if fmt == "JSONL":
        return export_jsonl(messages)
    raise ValueError(f"Unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}.")


def export_filename(conversation_id: str | None, fmt: str) -> str:
    """'ff-chat-<first 8 of the id>.<ext>' for a download."""
    stem = f"ff-chat-{conversation_id[:8]}" if conversation_id else "ff-chat"
    return f"{stem}.{EXPORT_FORMATS[fmt].extension}"
