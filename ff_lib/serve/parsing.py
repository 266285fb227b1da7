"""A chat-completions request body: validated (pydantic, strict types) and turned into a ChatCall.

Fields OpenAI defines that this server cannot honour (n > 1, penalties, tools, logit_bias, a JSON
response format) are refused with 400 rather than ignored; fields no OpenAI-compatible server
knows are ignored, as OpenAI-compatible servers do. `top_k` and `repetition_penalty` are taken as
vLLM takes them.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ff_lib.errors import InvalidInput
from ff_lib.inference.settings import GenerationSettings
from ff_lib.serve.errors import bad_parameter

# When the request names no limit: the app's default reply length (Balanced preset).
DEFAULT_MAX_TOKENS = GenerationSettings().max_new_tokens
MAX_TOKENS = 4096  # GenerationSettings' ceiling
MAX_TOP_LOGPROBS = 20
ROLES = ("system", "user", "assistant")


class TextPart(BaseModel):
    """One part of a message's content list; only text parts can be answered here."""

    model_config = ConfigDict(extra="ignore", strict=True)
    type: str
    text: str | None = None


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: str
    content: str | list[TextPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: str


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions (OpenAI's field names and ranges)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    model: str
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # OpenAI fields that cannot be honoured here: refused unless left at their neutral value.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: ResponseFormat | None = None
    # vLLM's sampling extras.
    top_k: Annotated[int, Field(ge=-1)] | None = None
    repetition_penalty: Annotated[float, Field(ge=1, le=2)] | None = None


@dataclass(frozen=True)
class ChatCall:
    """One request as the door takes it."""

    model: str
    messages: list[dict]  # {"role", "content"}, ending with the user's turn
    settings: GenerationSettings
    stops: tuple[str, ...]  # the reply is cut before the first of these
    logprobs: int | None  # None: not asked; k: the chosen token's and its k best alternatives
    stream: bool
    include_usage: bool


def parse_chat(req: ChatCompletionRequest) -> ChatCall:
    """The request checked as a whole; APIError 400 names the field that is wrong."""
    _refuse_unsupported(req)
    if req.stream_options is not None and not req.stream:
        raise bad_parameter("stream_options can only be set when stream is true.", "stream_options")
    if req.top_logprobs is not None and not req.logprobs:
        raise bad_parameter("top_logprobs needs logprobs set to true.", "top_logprobs")
    return ChatCall(
        model=req.model,
        messages=parse_messages(req.messages),
        settings=_settings(req),
        stops=parse_stop(req.stop),
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        stream=bool(req.stream),
        include_usage=bool(req.stream and req.stream_options and req.stream_options.include_usage),
    )


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    if req.n not in (None, 1):
        raise bad_parameter(f"n must be 1 here (got {req.n}): ask again for another answer.", "n")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req, name) not in (None, 0):
            raise bad_parameter(
                f"{name} is not supported by this server: leave it out (repetition_penalty, "
                "from 1 to 2, is).",
                name,
            )
    for name in ("logit_bias", "tools", "functions"):
        if getattr(req, name):
            raise bad_parameter(f"{name} is not supported by this server: leave it out.", name)
    if req.response_format is not None and req.response_format.type != "text":
        raise bad_parameter(
            f"response_format {req.response_format.type!r} is not supported: only 'text'.",
            "response_format",
        )


def parse_messages(messages: list[MessageIn]) -> list[dict]:
    """Plain {"role", "content"} dicts; text parts are joined with newlines (as vLLM does)."""
    out = []
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        if m.role not in ROLES:
            raise bad_parameter(
                f"{param}.role {m.role!r} is not supported: use system, user or assistant.",
                f"{param}.role",
            )
        out.append({"role": m.role, "content": _content(m.content, param)})
    if out[-1]["role"] != "user" or not out[-1]["content"].strip():
        raise bad_parameter(
            "The last message must be the user's, with text: the model answers it.", "messages"
        )
    return out


def _content(content, param: str) -> str:
    if content is None:
        raise bad_parameter(f"{param}.content is missing: every message needs text.", param)
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise bad_parameter(
                f"{param}.content holds a {part.type!r} part: only text parts can be answered.",
                f"{param}.content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def parse_stop(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if any(s == "" for s in stops):
        raise bad_parameter("stop strings must not be empty.", "stop")
    return stops


def _settings(req: ChatCompletionRequest) -> GenerationSettings:
    """GenerationSettings with OpenAI's defaults: temperature 1, top_p 1, no penalty."""
    max_tokens = req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS
    param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
    if max_tokens > MAX_TOKENS:
        raise bad_parameter(f"{param} must be at most {MAX_TOKENS} (got {max_tokens}).", param)
    try:
        return GenerationSettings(
            temperature=1.0 if req.temperature is None else req.temperature,
            max_new_tokens=max_tokens,
            repetition_penalty=req.repetition_penalty or 1.0,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=max(req.top_k or 0, 0),
            seed=req.seed,
        )
    except InvalidInput as exc:
        raise bad_parameter(str(exc)) from exc
