"""Mirroring the shared history to the workspace as it happens, streamed replies included."""

import time
from collections.abc import Callable, Iterable, Iterator

from ff_lib.chat.history import ChatMessage, from_record, title_from
from ff_lib.errors import FFError

# How often the stored text of a streaming reply is brought up to date (seconds).
SAVE_INTERVAL_S = 1.0


def ensure_conversation(ws, conversation_id: str | None, first_prompt: str, run_id=None) -> str:
    """The conversation id to write to, creating the conversation at its first message."""
    if conversation_id:
        return conversation_id
    return ws.create_conversation(title=title_from(first_prompt), run_id=run_id).id


def record_message(ws, conversation_id: str, role: str, content: str, meta=None) -> ChatMessage:
    """Store one complete message and return it as a ChatMessage."""
    return from_record(ws.add_message(conversation_id, role, content, meta=meta or {}))


def load_history(ws, conversation_id: str) -> list[ChatMessage]:
    """The stored messages of a conversation, oldest first (NotFound for an unknown id)."""
    ws.get_conversation(conversation_id)
    return [from_record(m) for m in ws.messages(conversation_id)]


class ReplyRecorder:
    """One assistant reply: stored as 'streaming' first, its text saved as it grows, then final.

    Iterate `pieces(stream)` (e.g. with st.write_stream) and close it when the caller stops; the
    stored message ends 'complete', 'interrupted' (closed early) or 'error' (an FFError).
    """

    def __init__(
        self,
        ws,
        conversation_id: str,
        meta: dict | None = None,
        interval_s: float = SAVE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ws = ws
        self.meta = dict(meta or {})
        self.interval_s = interval_s
        self.clock = clock
        self.text = ""
        self.error: str | None = None
        self.finished = False
        stored = ws.add_message(
            conversation_id, "assistant", "", meta=self.meta, status="streaming"
        )
        self.message: ChatMessage = from_record(stored)

    def pieces(self, stream: Iterable[str]) -> Iterator[str]:
        """Yield the stream's pieces, saving the text at most every `interval_s` seconds."""
        status, final_meta = "interrupted", {}
        last_save = self.clock()
        try:
            for piece in stream:
                self.text += piece
                yield piece
                if self.clock() - last_save >= self.interval_s:
                    self.ws.update_message(self.message.id, self.text, "streaming")
                    last_save = self.clock()
            reply = getattr(stream, "reply", None)
            final_meta = reply.as_meta() if reply is not None else {}
            if reply is not None and reply.text:
                self.text = reply.text
            status = "complete"
        except FFError as exc:
            status, final_meta, self.error = "error", {"error": str(exc)}, str(exc)
            raise
        finally:
            if status == "interrupted":
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            self._finish(status, final_meta)

    def fail(self, reason: str) -> None:
        """End the reply as 'error' when generation failed before it streamed anything."""
        if not self.finished:
            self.error = reason
            self._finish("error", {"error": reason})

    def stop(self) -> None:
        """End the reply as 'interrupted' unless it already ended (e.g. never started)."""
        if not self.finished:
            self._finish("interrupted", {})

    def attach_base_reply(self, text: str, meta: dict) -> None:
        """Store the base model's answer to the same prompt with this reply (compare mode)."""
        self.meta["base_reply"] = {"text": text, **meta}
        stored = self.ws.update_message(
            self.message.id,
            self.message.content,
            self.message.status,
            meta={**self.message.meta, "base_reply": self.meta["base_reply"]},
        )
        self.message = from_record(stored)

    def _finish(self, status: str, final_meta: dict) -> None:
        self.finished = True
        meta = {**self.meta, **final_meta}
        stored = self.ws.update_message(self.message.id, self.text, status, meta=meta)
        self.message = from_record(stored)
