"""Turning a conversation into the text the model sees: chat template or transcript, fitted to the context."""

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ff_lib.errors import EmptyPrompt, InvalidInput

EMPTY_PROMPT_MESSAGE = "Prompt is empty: type a question or pick a sample prompt."

# (tokenizer, {text: ids}) while prompts are built together (encoded_together)
_ENCODED: ContextVar[tuple | None] = ContextVar("encoded", default=None)
# A tokenizer without a chat template gets this plain transcript.
TRANSCRIPT_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class BuiltPrompt:
    """The exact prompt for one reply and the choices made to build it."""

    text: str
    input_ids: list[int]
    template: str  # "chat_template" | "transcript"
    dropped_turns: int  # messages dropped from the start of the history to fit the context
    truncated_tokens: int  # tokens cut from the left of the last user turn (0 normally)
    max_new_tokens: int | None = None  # new tokens that still fit the context after the prompt


def render_transcript(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """'User: ...\\nAssistant: ...' for tokenizers without a chat template."""
    lines = [f"{TRANSCRIPT_ROLES[m['role']]}: {m['content'].strip()}" for m in messages]
    if add_generation_prompt:
        lines.append("Assistant:")
    return "\n".join(lines)


def normalize_messages(messages: list[dict], system_prompt: str = "") -> list[dict]:
    """Checked copies of the messages, with the system prompt first when one is set.

    A system message already in the history is replaced by `system_prompt` when that is set.
    """
    cleaned = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role not in TRANSCRIPT_ROLES:
            raise InvalidInput(f"Unknown message role {role!r}: use user, assistant or system.")
        if not isinstance(content, str):
            raise InvalidInput(f"Message content must be text, got {type(content).__name__}.")
        cleaned.append({"role": role, "content": content})
    if not cleaned or cleaned[-1]["role"] != "user" or not cleaned[-1]["content"].strip():
        raise EmptyPrompt(EMPTY_PROMPT_MESSAGE)
    if system_prompt.strip():
        cleaned = [m for m in cleaned if m["role"] != "system"]
        cleaned.insert(0, {"role": "system", "content": system_prompt})
    return cleaned


def render(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt text, template used) for messages that end with the user's turn."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, "chat_template"
    return render_transcript(messages), "transcript"


def encode(tokenizer, text: str) -> list[int]:
    # The templates already hold the BOS token; a transcript gets the tokenizer's own specials.
    tokenizer_ahead, ahead = _ENCODED.get() or (None, {})
    if tokenizer_ahead is tokenizer and text in ahead:
        return list(ahead[text])
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@contextmanager
def encoded_together(tokenizer, conversations: list[tuple[list[dict], str]]):
    """Prompts built inside it for these (messages, system prompt) are tokenized in one call
    made now: a fast tokenizer encodes a batch on all its threads (16 prompts of 512 tokens
    one by one took 28 ms of a 16-row batch on the H200's host). The same ids as one by one;
    a prompt that must drop turns or be cut tokenizes what it tries then, as usual."""
    texts = list(
        dict.fromkeys(render(tokenizer, normalize_messages(m, s))[0] for m, s in conversations)
    )
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    token = _ENCODED.set((tokenizer, dict(zip(texts, ids, strict=True))))
    try:
        yield
    finally:
        _ENCODED.reset(token)


def build_prompt(
    tokenizer,
    messages: list[dict],
    *,
    system_prompt: str = "",
    context_length: int | None = None,
    max_new_tokens: int = 0,
) -> BuiltPrompt:
    """The prompt for the last user turn, dropping the oldest turns when it would not fit.

    The prompt budget is `context_length - max_new_tokens` tokens (at least a quarter of the
    context; the reply is then limited to what is left, see BuiltPrompt.max_new_tokens). The
    system prompt and the last user turn are always kept; when that last turn alone is too
    long, it is cut from the left.
    """
    messages = normalize_messages(messages, system_prompt)
    if context_length is not None and max_new_tokens > context_length:
        raise InvalidInput(
            f"Max new tokens ({max_new_tokens}) is more than the model's whole context of "
            f"{context_length} tokens: lower it."
        )
    budget = None
    if context_length is not None:
        # Keep at least a quarter of the context for the prompt; the reply gets what is left.
        budget = max(context_length - max_new_tokens, context_length // 4)

    system = [m for m in messages[:1] if m["role"] == "system"]
    history = messages[len(system) : -1]
    last = messages[-1]
    dropped = 0
    while True:
        text, template = render(tokenizer, system + history + [last])
        ids = encode(tokenizer, text)
        if budget is None or len(ids) <= budget or not history:
            break
        # Drop the oldest turn; an assistant reply left without its question goes with it.
        history = history[1:]
        dropped += 1
        while history and history[0]["role"] == "assistant":
            history = history[1:]
            dropped += 1

    truncated = 0
    if budget is not None and len(ids) > budget:
        text, template, ids, truncated = _cut_last_turn(tokenizer, system, last, budget)
    room = None if context_length is None else min(max_new_tokens, context_length - len(ids))
    return BuiltPrompt(text, ids, template, dropped, truncated, room)


def _cut_last_turn(tokenizer, system: list[dict], last: dict, budget: int):
    """Cut the last user turn from the left until the whole prompt fits `budget` tokens."""
    frame_text, template = render(tokenizer, system + [{"role": "user", "content": ""}])
    overhead = len(encode(tokenizer, frame_text))
    if overhead >= budget:
        raise InvalidInput(
            f"The system prompt alone needs {overhead} tokens of the {budget} left after max new "
            "tokens: shorten it or lower max new tokens."
        )
    content_ids = encode(tokenizer, last["content"])
    keep = budget - overhead
    # Re-tokenizing decoded text can shift by a token or two: shrink until it fits.
    while keep > 0:
        content = tokenizer.decode(content_ids[-keep:], skip_special_tokens=True)
        text, template = render(tokenizer, system + [{"role": "user", "content": content}])
        ids = encode(tokenizer, text)
        if len(ids) <= budget:
            return text, template, ids, len(content_ids) - keep
        keep -= max(1, len(ids) - budget)
    raise InvalidInput(
        "The last message does not fit the model's context: shorten it or lower max new tokens."
    )
