"""One turn as it is recorded: the prompt, the reply as it streams, and in compare mode the other
models' answers beside it. Pages render the pieces; this module owns what is stored (no streamlit).

A page can be cut off mid-reply: Stop (or any click while a reply streams) starts a new run of the
script in a new thread while the old one unwinds. The old run finishes the turn with `close()`; the
new one calls `stop_turn()` to end it at the next piece and wait for the final message, so the
partial reply shows at once, marked interrupted, never as "still being written".
"""

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Sequence

from ff_lib.chat.compared import FAILED_NOTE, NOT_ANSWERED, PENDING, STOPPED_NOTE, side_entry
from ff_lib.chat.history import ChatMessage
from ff_lib.chat.recorder import ReplyRecorder, ensure_conversation, record_message
from ff_lib.errors import FFError

# Turns being written by this process, by reply id: a later run of the page finds them here.
_open_turns: dict[int, "ChatTurn"] = {}
_open_guard = threading.Lock()


def turn_meta(run_meta: dict, base_model, adapter_dir, settings: dict) -> dict:
    """What every reply of a turn records before it streams: run, base, adapter, settings."""
    return {
        **run_meta,
        "base_model": None if base_model is None else str(base_model),
        "adapter": None if adapter_dir is None else str(adapter_dir),
        "settings": dict(settings),
    }


class ChatTurn:
    """A prompt stored now, its reply stored as 'streaming' and finished by the stream or close().

    Compared turns (`sides`: the provenance {label, run_id, adapter} of each other model) also
    store each side's answer (`side_pieces`) with the reply, in `meta["compare_replies"]`, each
    with its own status: complete, interrupted, error or 'not answered'.
    """

    def __init__(
        self,
        ws,
        conversation_id: str | None,
        prompt: str,
        *,
        meta: dict,
        run_meta: dict | None = None,
        run_id: int | None = None,
        sides: Sequence[dict] = (),
    ) -> None:
        self.conversation_id = ensure_conversation(ws, conversation_id, prompt, run_id)
        self.prompt = record_message(ws, self.conversation_id, "user", prompt, meta=run_meta)
        self.recorder = ReplyRecorder(ws, self.conversation_id, meta=meta)
        self.sides = [dict(s) for s in sides]
        self.stop_requested = threading.Event()
        self.done = threading.Event()
        self.side_texts: list[str | None] = [None] * len(self.sides)  # None: not started
        self._ended: list[dict | None] = [None] * len(self.sides)
        self._generators: list = []
        with _open_guard:
            _open_turns[self.reply_id] = self

    @property
    def compare(self) -> bool:
        return bool(self.sides)

    @property
    def reply_id(self) -> int:
        return self.recorder.message.id

    @property
    def message(self) -> ChatMessage:
        """The reply as it stands (final once the turn is closed)."""
        return self.recorder.message

    def reply_pieces(self, stream) -> Iterator[str]:
        """The first column's reply pieces, recorded as they come."""
        pieces = self.recorder.pieces(stream, stop=self.stop_requested)
        self._generators.append(pieces)
        return pieces

    def side_pieces(self, index: int, stream) -> Iterator[str]:
        """Side `index`'s pieces; its answer is stored with the reply when it ends or stops."""
        pieces = self._side_pieces(index, stream)
        self._generators.append(pieces)
        return pieces

    def _side_pieces(self, index: int, stream: Iterable[str]) -> Iterator[str]:
        self.side_texts[index] = ""
        status, meta, extra = "interrupted", {}, {}
        try:
            for piece in stream:
                if self.stop_requested.is_set():
                    return
                self.side_texts[index] += piece
                yield piece
            reply = getattr(stream, "reply", None)
            if reply is not None:
                meta = reply.as_meta()
                self.side_texts[index] = reply.text or self.side_texts[index]
            status = "complete"
        except FFError as exc:
            status, extra = "error", {"error": str(exc)}
            raise
        finally:
            if status == "interrupted":
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            self._ended[index] = side_entry(
                self.sides[index], self.side_texts[index], status, meta, **extra
            )
            self.recorder.attach_compared(self._entries(PENDING))

    def _entries(self, unended: str) -> list[dict]:
        """Every side as stored: ended ones as they ended; the others `unended` (pending while
        the turn streams, 'not answered' or 'interrupted' once it is over)."""
        entries = []
        for i, side in enumerate(self.sides):
            if self._ended[i] is not None:
                entries.append(self._ended[i])
            elif unended == PENDING:
                entries.append(side_entry(side, "", PENDING))
            elif self.side_texts[i]:  # started, cut off: a snapshot keeps its partial text
                entries.append(side_entry(side, self.side_texts[i], "interrupted"))
            else:
                note = FAILED_NOTE if self.recorder.error else STOPPED_NOTE
                entries.append(side_entry(side, "", NOT_ANSWERED, note=note))
        return entries

    def fail(self, reason: str) -> None:
        """Generation failed (an FFError): the reply ends 'error' unless it already ended."""
        self.recorder.fail(reason)

    def request_stop(self) -> None:
        """Ask the thread streaming this turn to end it at the next piece (any thread)."""
        self.stop_requested.set()

    def close(self) -> ChatMessage:
        """Finish what is still open (Stop, an error, a cut-off script) in the streaming thread:
        the reply ends interrupted with its text, an unasked side is marked. The final reply.
        """
        try:
            for pieces in self._generators:
                pieces.close()  # a generator cut off mid-piece finishes its side here
            self.recorder.stop()
            if self.compare and any(e is None for e in self._ended):
                self.recorder.attach_compared(self._entries(NOT_ANSWERED))
        finally:
            with _open_guard:
                _open_turns.pop(self.reply_id, None)
            self.done.set()
        return self.message

    def snapshot(self) -> ChatMessage:
        """The reply as a stopped turn will end, for a run that cannot wait for the write."""
        meta = dict(self.recorder.meta)
        if self.compare:
            meta["compare_replies"] = self._entries(NOT_ANSWERED)
        status = self.message.status
        if status == "streaming":
            status = "interrupted"
        return dataclasses.replace(
            self.message, content=self.recorder.text, status=status, meta=meta
        )


def stop_turn(reply_id: int, wait_s: float) -> ChatMessage | None:
    """End the open turn whose reply is `reply_id` and return its reply as it ended.

    Waits up to `wait_s` for the streaming thread to store it; past that, the reply as it will
    end. None when no such turn is open (it already ended: read it back from the workspace).
    """
    with _open_guard:
        turn = _open_turns.get(reply_id)
    if turn is None:
        return None
    turn.request_stop()
    if turn.done.wait(wait_s):
        return turn.message
    return turn.snapshot()
