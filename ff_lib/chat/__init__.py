"""The conversation model shared by both pages (history, pairs, recording) and its exports."""

from ff_lib.chat.exports import (
    EXPORT_FORMATS,
    ExportFormat,
    export_bytes,
    export_filename,
    export_jsonl,
    export_markdown,
    export_text,
)
from ff_lib.chat.figures import blank_text_note, fold_blank_lines, reply_figures, reply_source
from ff_lib.chat.history import (
    ChatMessage,
    Turn,
    from_record,
    model_messages,
    now_iso,
    pairs,
    title_from,
)
from ff_lib.chat.recorder import (
    ReplyRecorder,
    ensure_conversation,
    load_history,
    record_message,
)
from ff_lib.chat.turn import ChatTurn, stop_turn, turn_meta

__all__ = [
    "EXPORT_FORMATS",
    "ChatMessage",
    "ChatTurn",
    "ExportFormat",
    "ReplyRecorder",
    "Turn",
    "blank_text_note",
    "fold_blank_lines",
    "ensure_conversation",
    "export_bytes",
    "export_filename",
    "export_jsonl",
    "export_markdown",
    "export_text",
    "from_record",
    "load_history",
    "model_messages",
    "now_iso",
    "pairs",
    "record_message",
    "stop_turn",
    "reply_figures",
    "reply_source",
    "title_from",
    "turn_meta",
]
