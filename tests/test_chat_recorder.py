"""A streamed reply is mirrored to the workspace: 'streaming' first, saved as it grows, final."""

from types import SimpleNamespace

import pytest

from ff_lib.chat import ReplyRecorder, ensure_conversation, load_history, record_message
from ff_lib.errors import GenerationError


class FakeWorkspace:
    """The conversation half of ff_lib.data.Workspace, in memory."""

    def __init__(self):
        self.conversations, self.rows, self.updates = {}, {}, []

    def create_conversation(self, title=None, run_id=None):
        cid = f"c{len(self.conversations) + 1}"
        self.conversations[cid] = title
        return SimpleNamespace(id=cid)

    def get_conversation(self, cid):
        return SimpleNamespace(id=cid, title=self.conversations[cid])

    def add_message(self, cid, role, content, meta=None, status="complete"):
        mid = len(self.rows) + 1
        self.rows[mid] = dict(
            id=mid,
            conversation_id=cid,
            role=role,
            content=content,
            status=status,
            meta=meta or {},
            created_at="t",
        )
        return SimpleNamespace(**self.rows[mid])

    def update_message(self, mid, content, status, meta=None):
        self.updates.append((content, status))
        self.rows[mid].update(content=content, status=status)
        if meta is not None:
            self.rows[mid]["meta"] = meta
        return SimpleNamespace(**self.rows[mid])

    def messages(self, cid):
        return [SimpleNamespace(**r) for r in self.rows.values() if r["conversation_id"] == cid]


class FakeStream:
    def __init__(self, pieces, fail=False):
        self._pieces, self.fail, self.closed = pieces, fail, False
        self.reply = SimpleNamespace(
            text="".join(pieces), as_meta=lambda: {"stats": {"new_tokens": 2}}
        )

    def __iter__(self):
        yield from self._pieces
        if self.fail:
            raise GenerationError("boom")

    def close(self):
        self.closed = True


def test_conversation_is_created_at_the_first_message_only():
    ws = FakeWorkspace()
    cid = ensure_conversation(ws, None, "What is LoRA?")
    assert ws.conversations[cid] == "What is LoRA?"
    assert ensure_conversation(ws, cid, "again") == cid
    assert len(ws.conversations) == 1


def test_complete_reply_is_stored_with_its_meta():
    ws = FakeWorkspace()
    ensure_conversation(ws, None, "hi")
    record_message(ws, "c1", "user", "hi")
    rec = ReplyRecorder(ws, "c1", meta={"run": {"id": 1, "name": "r"}})
    assert ws.rows[rec.message.id]["status"] == "streaming"
    assert "".join(rec.pieces(FakeStream(["he", "llo"]))) == "hello"
    assert rec.message.status == "complete"
    assert rec.message.content == "hello"
    assert rec.message.meta == {"run": {"id": 1, "name": "r"}, "stats": {"new_tokens": 2}}
    history = load_history(ws, "c1")
    assert [(m.role, m.content, m.status) for m in history] == [
        ("user", "hi", "complete"),
        ("assistant", "hello", "complete"),
    ]


def test_text_is_saved_while_streaming():
    ticks = iter(range(100))
    ws = FakeWorkspace()
    rec = ReplyRecorder(ws, "c1", interval_s=1.0, clock=lambda: next(ticks))
    list(rec.pieces(FakeStream(["a", "b", "c"])))
    assert ws.updates[0] == ("a", "streaming")  # the first piece is saved at once
    assert ws.updates[-1] == ("abc", "complete")


def test_saves_after_the_first_come_at_most_every_interval():
    now = [0.0]
    ws = FakeWorkspace()
    rec = ReplyRecorder(ws, "c1", interval_s=1.0, clock=lambda: now[0])

    class SlowStream(FakeStream):
        def __iter__(self):
            for piece in self._pieces:
                yield piece
                now[0] += 0.4  # four pieces over 1.6 s

    list(rec.pieces(SlowStream(list("abcd"))))
    streaming = [u for u in ws.updates if u[1] == "streaming"]
    assert streaming[0] == ("a", "streaming")
    assert len(streaming) <= 2


def test_closing_early_keeps_what_was_generated_as_interrupted():
    ws = FakeWorkspace()
    rec = ReplyRecorder(ws, "c1")
    stream = FakeStream(["a", "b", "c"])
    gen = rec.pieces(stream)
    assert next(gen) == "a"
    gen.close()
    assert stream.closed
    assert rec.message.status == "interrupted"
    assert rec.message.content == "a"


def test_an_error_is_stored_and_raised():
    ws = FakeWorkspace()
    rec = ReplyRecorder(ws, "c1")
    with pytest.raises(GenerationError):
        list(rec.pieces(FakeStream(["x"], fail=True)))
    assert rec.message.status == "error"
    assert rec.message.content == "x"
    assert rec.message.meta["error"] == "boom"
    assert rec.error == "boom"


def test_a_reply_that_never_started_ends_interrupted_or_failed():
    ws = FakeWorkspace()
    rec = ReplyRecorder(ws, "c1")
    rec.stop()
    assert rec.message.status == "interrupted"
    rec.fail("late")  # already ended: kept as it was
    assert rec.message.status == "interrupted"
    other = ReplyRecorder(ws, "c1")
    other.fail("Base model not available offline")
    assert other.message.status == "error"
    assert other.message.meta["error"] == "Base model not available offline"


def test_compared_answers_are_stored_beside_the_adapter_reply():
    ws = FakeWorkspace()
    rec = ReplyRecorder(ws, "c1", meta={"adapter": "/a"})
    list(rec.pieces(FakeStream(["x"])))
    side = {"label": "base model", "run_id": None, "adapter": None, "text": "base text"}
    rec.attach_compared([side])
    assert rec.message.status == "complete"
    assert rec.message.content == "x"
    assert rec.message.meta["compare_replies"] == [side]
    assert ws.rows[rec.message.id]["meta"]["compare_replies"] == [side]
    assert rec.message.meta["adapter"] == "/a"
