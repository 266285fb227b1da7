"""A turn stopped mid-reply (compare on): the new run of the page gets the partial reply at once,
marked interrupted, with the base side kept or marked, never still 'streaming'."""

import threading

import pytest

from ff_lib.chat import ChatTurn, stop_turn, turn_meta
from ff_lib.chat.compared import NOT_ANSWERED, STOPPED_NOTE
from ff_lib.errors import GenerationError
from tests.test_chat_recorder import FakeStream, FakeWorkspace


class GatedStream(FakeStream):
    """Yields `free` pieces at once, then each further piece only once `gate` is set."""

    def __init__(self, pieces, free: int):
        super().__init__(pieces)
        self.free, self.gate = free, threading.Event()

    def __iter__(self):
        for i, piece in enumerate(self._pieces):
            if i >= self.free:
                assert self.gate.wait(10), "the test never opened the gate"
            yield piece


BASE_SIDE = {"label": "base model", "run_id": None, "adapter": None}


def new_turn(ws, compare=True) -> ChatTurn:
    run_meta = {"run": {"id": 1, "name": "r"}}
    meta = turn_meta(run_meta, "base", "/a", {"temperature": 0.0})
    sides = [BASE_SIDE] if compare else []
    return ChatTurn(
        ws, None, "Tell me a story", meta=meta, run_meta=run_meta, run_id=1, sides=sides
    )


def base_of(meta: dict) -> dict:
    """The base side as stored: the only compared side of these turns."""
    (side,) = meta["compare_replies"]
    return side


def run_page(turn, main, base=None, started=None):
    """What run_turn does in the page's thread: stream both sides, then close the turn."""

    def script():
        try:
            for i, _ in enumerate(turn.reply_pieces(main)):
                if started is not None and base is None and i == main.free - 1:
                    started.set()
            if base is not None:
                for i, _ in enumerate(turn.side_pieces(0, base)):
                    if started is not None and i == base.free - 1:
                        started.set()
        finally:
            turn.close()

    thread = threading.Thread(target=script)
    thread.start()
    return thread


def test_stop_during_the_reply_ends_it_interrupted_and_marks_the_base_side():
    ws = FakeWorkspace()
    turn = new_turn(ws)
    main, started = GatedStream(["Once", " upon", " a time"], free=2), threading.Event()
    page = run_page(turn, main, started=started)
    assert started.wait(5)
    threading.Timer(0.1, main.gate.set).start()  # the next token comes after Stop

    shown = stop_turn(turn.reply_id, wait_s=5)
    page.join(5)
    assert shown.status == "interrupted" and shown.content == "Once upon"
    assert base_of(shown.meta) == {
        **BASE_SIDE,
        "text": "",
        "status": NOT_ANSWERED,
        "note": STOPPED_NOTE,
        "meta": {},
    }
    stored = ws.rows[turn.reply_id]
    assert (stored["status"], stored["content"]) == ("interrupted", "Once upon")
    assert base_of(stored["meta"])["status"] == NOT_ANSWERED
    assert main.closed  # generation ended, not left running
    assert stop_turn(turn.reply_id, wait_s=0) is None  # no longer open


def test_a_stop_that_cannot_wait_shows_the_reply_as_it_will_end():
    ws = FakeWorkspace()
    turn = new_turn(ws)
    main, started = GatedStream(["Once", " upon", " a time"], free=1), threading.Event()
    page = run_page(turn, main, started=started)
    assert started.wait(5)

    shown = stop_turn(turn.reply_id, wait_s=0.2)  # the model is busy: no piece comes
    assert shown.status == "interrupted" and shown.content == "Once"
    assert base_of(shown.meta)["status"] == NOT_ANSWERED
    assert ws.rows[turn.reply_id]["status"] == "streaming"  # still being stopped
    main.gate.set()
    page.join(5)
    assert ws.rows[turn.reply_id]["status"] == "interrupted"
    assert ws.rows[turn.reply_id]["content"] == "Once"


def test_stop_during_the_base_answer_keeps_both_sides():
    ws = FakeWorkspace()
    turn = new_turn(ws)
    main = FakeStream(["Paris", "."])
    base, started = GatedStream(["the", " the", " the"], free=2), threading.Event()
    page = run_page(turn, main, base=base, started=started)
    assert started.wait(5)
    threading.Timer(0.1, base.gate.set).start()

    shown = stop_turn(turn.reply_id, wait_s=5)
    page.join(5)
    assert shown.status == "complete" and shown.content == "Paris."
    assert base_of(shown.meta)["status"] == "interrupted"
    assert base_of(shown.meta)["text"] == "the the"
    assert base_of(ws.rows[turn.reply_id]["meta"])["text"] == "the the"
    assert base.closed


def test_a_turn_that_ends_on_its_own_stores_both_sides_complete():
    ws = FakeWorkspace()
    turn = new_turn(ws)
    run_page(turn, FakeStream(["Paris"]), base=FakeStream(["Lyon"])).join(5)
    assert turn.message.status == "complete"
    assert base_of(turn.message.meta)["status"] == "complete"
    assert base_of(turn.message.meta)["text"] == "Lyon"
    assert turn.message.meta["settings"] == {"temperature": 0.0}
    assert ws.rows[turn.prompt.id]["meta"] == {"run": {"id": 1, "name": "r"}}
    assert stop_turn(turn.reply_id, wait_s=0) is None


def test_a_failed_reply_says_why_the_base_model_was_not_asked():
    ws = FakeWorkspace()
    turn = new_turn(ws)
    with pytest.raises(GenerationError):
        run_page_inline(turn, FakeStream(["x"], fail=True))
    assert turn.message.status == "error"
    assert "failed" in base_of(turn.message.meta)["note"]


def run_page_inline(turn, main):
    try:
        list(turn.reply_pieces(main))
    finally:
        turn.close()
