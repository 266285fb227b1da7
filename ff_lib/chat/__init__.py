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
from ff_lib.chat.figures import reply_figures, reply_source
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

__all__ = [
    "EXPORT_FORMATS",
    "ChatMessage",
    "ExportFormat",
    "ReplyRecorder",
    "Turn",
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
    "reply_figures",
    "reply_source",
    "title_from",
]
