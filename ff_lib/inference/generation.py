"""Generation settings and presets, streamed decoding in a worker thread, and the reply record."""

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ff_lib.errors import FFError, GenerationError, InvalidInput

# A decode that produces no token for this long is treated as hung.
STREAM_TIMEOUT_S = 120.0
WORKER_PREFIX = "ff-generate"


@dataclass(frozen=True)
class GenerationSettings:
    """How one reply is sampled. Frozen and validated, so it can be a cache key."""

    temperature: float = 0.7  # 0 = greedy: the same prompt always gives the same answer
    max_new_tokens: int = 256
    repetition_penalty: float = 1.15
    top_p: float = 0.9
    top_k: int = 0  # 0 = off
    seed: int | None = None  # None with sampling: one is drawn and recorded in the reply
    system_prompt: str = ""

    def __post_init__(self) -> None:
        _number("Temperature", self.temperature, 0.0, 2.0)
        _integer("Max new tokens", self.max_new_tokens, 1, 4096)
        _number("Repetition penalty", self.repetition_penalty, 1.0, 2.0)
        _number("Top-p", self.top_p, 0.0, 1.0)
        if self.top_p == 0:
            raise InvalidInput("Top-p must be above 0 and at most 1 (got 0).")
        _integer("Top-k", self.top_k, 0, None)
        if self.seed is not None:
            _integer("Seed", self.seed, 0, 2**63 - 1)
        if not isinstance(self.system_prompt, str):
            raise InvalidInput("System prompt must be text.")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _number(name: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number (got {value!r}).")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low:g} and {high:g} (got {value:g}).")


def _integer(name: str, value, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number (got {value!r}).")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{name} must be {bound} (got {value}).")


PRESETS: dict[str, GenerationSettings] = {
    "Deterministic": GenerationSettings(
        temperature=0.0, max_new_tokens=128, repetition_penalty=1.2
    ),
    "Balanced": GenerationSettings(temperature=0.7, max_new_tokens=256, repetition_penalty=1.15),
    "Creative": GenerationSettings(temperature=1.0, max_new_tokens=512, repetition_penalty=1.1),
}
DEFAULT_PRESET = "Balanced"


@dataclass(frozen=True)
class ReplyStats:
    """Figures of one reply. tokens_per_s = new_tokens / total_s (prefill included)."""

    prompt_tokens: int
    new_tokens: int  # generated tokens, the end-of-turn token not counted
    ttft_s: float | None  # time to first token, from the start of decoding
    tokens_per_s: float
    total_s: float


@dataclass(frozen=True)
class Reply:
    """One answer and everything needed to explain or reproduce it."""

    text: str
    stats: ReplyStats
    adapter: str | None  # the adapter folder used, None for a base-model answer
    adapter_name: str | None
    base_model: str
    quantization: str  # "float32" | "bf16" | "4-bit NF4"
    describe: str  # "float32 on CPU", "4-bit NF4 on cuda:0"
    settings: dict
    seed: int | None  # the seed actually used (drawn when settings.seed was None)
    prompt_text: str  # the exact text the model saw
    template: str  # "chat_template" | "transcript"
    dropped_turns: int
    truncated_tokens: int
    max_new_tokens: int  # the limit used: settings.max_new_tokens unless the context was short
    stopped: bool  # the reader stopped the stream before the end
    finish_reason: str  # "eos" | "length" | "stopped"
    decoder: str = "generate"  # "generate" (transformers) or the fast path's name
    # Provenance, so the answer can be reproduced later: which weights, which base files.
    adapter_weights: str | None = None  # the weights file read (None for a base answer)
    adapter_sha256: str | None = None  # SHA-256 of that file
    base_source: str = ""  # the resolved local folder, or the Hugging Face id loaded
    base_revision: str | None = None  # the hub commit of a cached model, None for a folder

    @property
    def notice(self) -> str:
        """What the user should know about how the prompt was fitted ('' when nothing)."""
        parts = []
        if self.dropped_turns:
            s = "" if self.dropped_turns == 1 else "s"
            parts.append(
                f"{self.dropped_turns} earlier message{s} dropped to fit the model's context."
            )
        if self.truncated_tokens:
            parts.append(
                f"The start of your message was cut ({self.truncated_tokens} tokens) to fit."
            )
        if self.max_new_tokens < self.settings.get("max_new_tokens", self.max_new_tokens):
            parts.append(
                f"Reply limited to {self.max_new_tokens} new tokens by the model's context."
            )
        return " ".join(parts)

    def as_meta(self) -> dict:
        """Plain JSON values for Message.meta: settings, figures and provenance.

        The exact prompt text the model saw (after the chat template) is kept, so an export
        holds everything needed to reproduce the answer; the reply text is the message itself.
        """
        meta = dataclasses.asdict(self)
        meta.pop("text")
        meta["notice"] = self.notice
        return meta


@dataclass
class DecodeRequest:
    """What a decode function gets: it runs in the worker thread and feeds `streamer`.

    The seam for a faster decode loop: a decoder calls `streamer.put(token_ids_tensor)` per
    token (the prompt first, which the streamer skips) and returns; it stops when `stop` is set.
    """

    input_ids: list[int]
    settings: GenerationSettings
    seed: int | None
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    adapter_name: str | None
    max_new_tokens: int = 0  # settings.max_new_tokens, limited to what fits the context
    streamer: object = None
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class DecodeOutcome:
    """Filled in while a reply streams; read once it ends."""

    started_at: float = 0.0
    first_token_at: float | None = None
    ended_at: float | None = None
    new_tokens: int = 0
    stopped: bool = False


def hf_generate_kwargs(req: DecodeRequest) -> dict:
    """transformers generate() arguments for the request's settings."""
    s = req.settings
    kwargs = {
        "max_new_tokens": req.max_new_tokens or s.max_new_tokens,
        "repetition_penalty": s.repetition_penalty,
        "eos_token_id": list(req.eos_token_ids) or None,
        "pad_token_id": req.pad_token_id,
    }
    if s.sampling:
        kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k)
    else:
        # Greedy: also neutralize any sampling defaults from the model's generation_config.
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def hf_decode(model, req: DecodeRequest) -> None:
    """The plain path: transformers generate(), stopped by `req.stop` within one token."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full(
                (input_ids.shape[0],), req.stop.is_set(), dtype=torch.bool, device=input_ids.device
            )

    ids = torch.tensor([req.input_ids], dtype=torch.long, device=model.device)
    if req.seed is not None:
        # Global RNG: safe because generation on one model is serialized by the host's lock.
        torch.manual_seed(req.seed)
    with torch.inference_mode():
        model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            streamer=req.streamer,
            stopping_criteria=StoppingCriteriaList([StopOnEvent()]),
            **hf_generate_kwargs(req),
        )


def make_streamer(tokenizer, eos_token_ids, outcome: DecodeOutcome, timeout_s: float):
    """A TextIteratorStreamer that also counts new tokens and stamps the first one."""
    from transformers import TextIteratorStreamer

    eos = set(eos_token_ids)

    class CountingStreamer(TextIteratorStreamer):
        def put(self, value):
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                ids = [int(t) for t in value.reshape(-1).tolist()]
                if outcome.first_token_at is None:
                    outcome.first_token_at = time.perf_counter()
                outcome.new_tokens += sum(1 for t in ids if t not in eos)
            super().put(value)

    return CountingStreamer(
        tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s
    )


def stream_text(
    decode: Callable[[DecodeRequest], None],
    req: DecodeRequest,
    tokenizer,
    outcome: DecodeOutcome,
    timeout_s: float = STREAM_TIMEOUT_S,
) -> Iterator[str]:
    """Run `decode(req)` in a worker thread and yield its text as it comes.

    Closing this generator sets `req.stop` and joins the worker, so no thread outlives it.
    An exception in the worker is re-raised here (as GenerationError unless it is an FFError).
    """
    req.streamer = make_streamer(tokenizer, req.eos_token_ids, outcome, timeout_s)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WORKER_PREFIX)
    outcome.started_at = time.perf_counter()
    future = executor.submit(decode, req)
    # Whatever happens in the worker, the reader must not wait for the timeout.
    future.add_done_callback(lambda _: req.streamer.end())
    try:
        while True:
            try:
                piece = next(req.streamer)
            except StopIteration:
                break
            except queue.Empty as exc:
                raise GenerationError(
                    f"No token came for {timeout_s:.0f} s: generation stalled. Try again, "
                    "or lower max new tokens."
                ) from exc
            if piece:
                yield piece
    except GeneratorExit:
        outcome.stopped = True
        raise
    finally:
        req.stop.set()
        executor.shutdown(wait=True)
        outcome.ended_at = time.perf_counter()
    error = future.exception()
    if isinstance(error, FFError):
        raise error
    if error is not None:
        raise GenerationError(f"Generation failed: {type(error).__name__}: {error}") from error


def reply_stats(prompt_tokens: int, outcome: DecodeOutcome) -> ReplyStats:
    end = outcome.ended_at or time.perf_counter()
    total = max(end - outcome.started_at, 1e-9)
    ttft = None
    if outcome.first_token_at is not None:
        ttft = round(outcome.first_token_at - outcome.started_at, 4)
    return ReplyStats(
        prompt_tokens=prompt_tokens,
        new_tokens=outcome.new_tokens,
        ttft_s=ttft,
        tokens_per_s=round(outcome.new_tokens / total, 2),
        total_s=round(total, 4),
    )


def finish_reason(outcome: DecodeOutcome, max_new_tokens: int) -> str:
    if outcome.stopped:
        return "stopped"
    return "length" if outcome.new_tokens >= max_new_tokens else "eos"
