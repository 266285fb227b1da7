"""The conversation model shared by both pages: messages, Prompt/Response pairs, model input."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

ROLES = ("user", "assistant", "system")
MESSAGE_STATUSES = ("complete", "streaming", "interrupted", "error")


def now_iso() -> str:
    """The current time as an ISO 8601 string in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _iso(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat()
    return str(value)


@dataclass(frozen=True)
class ChatMessage:
    """One message of the shared history: plain data, safe to keep in session state."""

    role: str
    content: str
    status: str = "complete"
    meta: dict = field(default_factory=dict)
    created_at: str = ""  # ISO 8601
    id: int | None = None  # the stored message id, None until stored

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if self.status not in MESSAGE_STATUSES:
            raise ValueError(f"status must be one of {MESSAGE_STATUSES}, got {self.status!r}")


def from_record(record) -> ChatMessage:
    """A ChatMessage from a stored ff_lib.data Message (or anything with the same fields)."""
    return ChatMessage(
        role=record.role,
        content=record.content or "",
        status=record.status,
        meta=dict(record.meta or {}),
        created_at=_iso(record.created_at),
        id=record.id,
    )


@dataclass(frozen=True)
class Turn:
    """A Prompt / Response pair of the output list; either side may be missing."""

    prompt: ChatMessage | None
    reply: ChatMessage | None


def pairs(messages: list[ChatMessage]) -> list[Turn]:
    """The history as Prompt / Response pairs, oldest first (system messages left out).

    A prompt whose reply failed before it was stored stands alone; so does a reply without a
    prompt before it.
    """
    turns: list[Turn] = []
    pending: ChatMessage | None = None
    for m in messages:
        if m.role == "user":
            if pending is not None:
                turns.append(Turn(pending, None))
            pending = m
        elif m.role == "assistant":
            turns.append(Turn(pending, m))
            pending = None
    if pending is not None:
        turns.append(Turn(pending, None))
    return turns


def model_messages(messages: list[ChatMessage], prompt: str | None = None) -> list[dict]:
    """The history as the engine's `{"role", "content"}` list, plus `prompt` as the last turn.

    Replies that produced nothing (errors) are left out, and so is a prompt that got no reply,
    so roles alternate the way chat templates expect.
    """
    out: list[dict] = []
    for m in messages:
        if m.role == "assistant" and not m.content.strip():
            continue
        if m.role == "user" and out and out[-1]["role"] == "user":
            out.pop()  # the earlier prompt was never answered
        out.append({"role": m.role, "content": m.content})
    if prompt is not None:
        if out and out[-1]["role"] == "user":
            out.pop()
        out.append({"role": "user", "content": prompt})
    return out


def title_from(prompt: str, limit: int = 60) -> str:
    """A conversation title: the first line of its first prompt, shortened to `limit` chars."""
    line = " ".join(prompt.strip().split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
