"""One reply served over the API: the door's stream cut at stop strings, recorded as it goes,
run in its own thread and handed to the event loop piece by piece.

The door's reads block (a token at a time), so each reply reads in a thread of its own; the
event loop only awaits a queue and is never blocked. Replies of one base decode together in
the engine, each request with its own stream.
"""

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

from ff_lib.serve.catalog import ServedModel
from ff_lib.serve.parsing import ChatCall
from ff_lib.serve.recording import start_recording


class ServedReply:
    """The door's stream as the API serves it: the text never holds a stop string; the reply is
    cut before the first one and the stream closed there (finish_reason 'stop')."""

    def __init__(self, stream, stops: tuple[str, ...], logprobs: int | None):
        self.stream = stream
        self.stops = stops
        self.logprobs = logprobs
        self.text = ""  # served so far
        self.said = ""  # everything the model said, stop strings included
        self.stop_hit: str | None = None
        self.finish_reason: str | None = None

    def __iter__(self) -> Iterator[str]:
        for piece in self.stream:
            self.said += piece
            cut = self._stop_at()
            if cut is not None:
                self.stream.close()
                yield from self._serve(cut)
                break
            yield from self._serve(len(self.said) - self._held())
        else:
            yield from self._serve(len(self.said))
        ended = self.stream.reply.finish_reason
        self.finish_reason = "length" if ended == "length" and not self.stop_hit else "stop"

    def _serve(self, upto: int) -> Iterator[str]:
        if upto > len(self.text):
            piece = self.said[len(self.text) : upto]
            self.text += piece
            yield piece

    def _stop_at(self) -> int | None:
        """Where the first stop string starts in what was said (never in the text served)."""
        found = [(self.said.find(s, len(self.text)), s) for s in self.stops]
        found = [(at, s) for at, s in found if at >= 0]
        if not found:
            return None
        at, self.stop_hit = min(found)
        return at

    def _held(self) -> int:
        """Characters held back: the end of what was said that may begin a stop string."""
        held = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.said)), held, -1):
                if self.said.endswith(stop[:k]):
                    held = k
                    break
        return held

    @property
    def reply(self):
        """The door's Reply with the text as served (None until the stream has ended)."""
        reply = self.stream.reply
        return None if reply is None else dataclasses.replace(reply, text=self.text)

    def close(self) -> None:
        self.stream.close()


class APIReply:
    """One request's reply: opened on the door, recorded in the workspace; blocking calls."""

    def __init__(self, door, ws, call: ChatCall, model: ServedModel, request_id: str):
        self.door, self.ws, self.call, self.model = door, ws, call, model
        self.request_id = request_id
        self.served: ServedReply | None = None
        self.recorder = None

    def pieces(self, stop: threading.Event) -> Iterator[str]:
        """The served text piece by piece; stored as it grows, ended 'interrupted' once `stop`
        is set (the client went away)."""
        model, call = self.model, self.call
        stream = self.door.stream_reply(
            model.base_model,
            call.messages,
            call.settings,
            None if model.adapter_dir is None else Path(model.adapter_dir),
            logprobs=call.logprobs,
        )
        # Submitted first: the engine decodes while the request is being written down.
        stream.start()
        self.served = ServedReply(stream, call.stops, call.logprobs)
        try:
            self.recorder = start_recording(self.ws, call, model, self.request_id)
        except BaseException:
            stream.close()  # not recorded, not served: the row leaves the batch
            raise
        yield from self.recorder.pieces(self.served, stop=stop)


_END = object()


@dataclasses.dataclass
class _Failed:
    error: BaseException


class ReplyPump:
    """Runs `reply.pieces` in its own thread; `await next_piece()` gives each piece, None at
    the end, or raises what the reply raised. `cancel()` ends the reply at its next piece."""

    def __init__(self, reply: APIReply):
        self.reply = reply
        self.stop = threading.Event()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="ff-serve-reply", daemon=True)
        self._thread.start()

    def _put(self, item) -> None:
        if self._loop.is_closed():
            return  # the server has stopped: nobody reads this reply any more
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            if not self._loop.is_closed():  # closed between the check and the call
                raise

    def _run(self) -> None:
        try:
            for piece in self.reply.pieces(self.stop):
                self._put(piece)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
            self._put(_Failed(exc))
        else:
            self._put(_END)

    async def next_piece(self) -> str | None:
        item = await self._queue.get()
        if item is _END:
            return None
        if isinstance(item, _Failed):
            raise item.error
        return item

    def cancel(self) -> None:
        self.stop.set()
