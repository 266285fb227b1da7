"""A reply as it streams: token ids from the scheduler in, text pieces out, the Reply at the end."""

import queue
import random
import time
from collections.abc import Callable

from ff_lib.errors import FFError, GenerationError
from ff_lib.inference.prompts import build_prompt, encoded_together
from ff_lib.inference.provenance import adapter_sha256
from ff_lib.inference.replies import Reply, ReplyStats
from ff_lib.inference.scheduler import END, Request, TokenChoice

# A request that gets no token for this long is treated as hung.
STREAM_TIMEOUT_S = 120.0


class TextStream:
    """Token ids in, text pieces out, as soon as they form whole characters (not whole words)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.emitted = 0  # characters handed out

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """The new text that `token_id` completes ('' while a character is still partial)."""
        self.ids.append(token_id)
        # Decode a short window, not the whole reply: O(1) per token.
        before = self._decode(self.ids[self.prefix_offset : self.read_offset])
        after = self._decode(self.ids[self.prefix_offset :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            piece = after[len(before) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            self.emitted += len(piece)
            return piece
        return ""

    def flush(self) -> str:
        """Whatever the window still holds once the reply is over."""
        text = self._decode(self.ids)
        piece = text[self.emitted :]
        self.emitted = len(text)
        return piece


class ReplyStream:
    """Iterator of text pieces for one reply; `reply` is set when it ends or is closed.

    Nothing runs until `start()` (or the first read): then the base is loaded if needed, the
    prompt built and the request joins the engine's batch. `waiting` is True while the request
    waits for another base's replies to finish; `on_wait()` is called once when that happens.
    """

    def __init__(self, host, job: dict, on_wait: Callable[[], None] | None):
        self.host = host
        self.job = job
        self.on_wait = on_wait
        self.waiting = False
        self.reply: Reply | None = None
        self.request: Request | None = None
        self._engine = None
        self._built = None
        self._text: TextStream | None = None
        self._pieces: list[str] = []
        self._tokens: list[dict] = []
        self._done = False
        self._submitted = False
        self._held = False

    # --- start -----------------------------------------------------------------------------------
    def start(self) -> "ReplyStream":
        """Load the base if needed and submit the request (idempotent; nothing once closed)."""
        if self._done:
            return self
        self.prepare()
        if not self._submitted:
            try:
                self._engine.scheduler.submit(self.request)
            finally:
                self._let_go()  # submitted (now pending) or refused: no longer held
            self._submitted = True
        return self

    def prepare(self, engine=None) -> "ReplyStream":
        """Load the base if needed and build the request, held but not submitted yet
        (idempotent): `door.together` prepares every request before submitting any, so they
        arrive together and are prefilled and decoded as one batch. A held request counts as
        live: the base is not switched away under it. `engine`: one a prepared stream of this
        base already holds (`prepare_others`)."""
        if self.request is not None or self._done:
            return self
        job = self.job
        if engine is None:
            on_wait = self._wait_hook
            engine = self.host.engine_for(job["base_model"], job["quantization"], on_wait, True)
        else:
            engine.scheduler.hold()  # live already (its holder waits for this): no lock
        try:
            self._build(engine)
        except BaseException:
            engine.scheduler.let_go()
            raise
        self._held = True
        return self

    def _build(self, engine) -> None:
        job = self.job
        settings = job["settings"]
        built = build_prompt(
            engine.tokenizer,
            job["messages"],
            system_prompt=settings.system_prompt,
            context_length=engine.context_length,
            max_new_tokens=settings.max_new_tokens,
        )
        seed = settings.seed
        if seed is None and settings.sampling:
            seed = random.SystemRandom().randrange(2**31)
        adapter = job["adapter_dir"]
        self.request = Request(
            prompt_ids=list(built.input_ids),
            settings=settings,
            seed=seed,
            adapter_folder=None if adapter is None else str(adapter),
            max_new_tokens=built.max_new_tokens or settings.max_new_tokens,
            eos_token_ids=frozenset(engine.eos_token_ids),
            logprobs=job.get("logprobs"),
        )
        self._engine, self._built = engine, built
        self._text = TextStream(engine.tokenizer)

    def prepare_others(self, others: list) -> None:
        """prepare() `others` (streams for this one's base and quantization) on the engine this
        prepared stream holds, their prompts tokenized in one call (prompts.encoded_together).
        Not through the host again: a switch to another base waiting for this one to be let go
        holds the host's lock."""
        if self._engine is None or not self._held:
            for stream in others:
                stream.prepare()
            return
        pairs = [(s.job["messages"], s.job["settings"].system_prompt) for s in others]
        with encoded_together(self._engine.tokenizer, pairs):
            for stream in others:
                stream.prepare(self._engine)

    def _let_go(self) -> None:
        if self._held:
            self._held = False
            self._engine.scheduler.let_go()

    def _wait_hook(self) -> None:
        self.waiting = True
        if self.on_wait is not None:
            self.on_wait()

    # --- read ------------------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> str:
        self.start()
        self.waiting = False
        while not self._done:
            item = self._next_event()
            if item is END:
                self._end()
                tail = self._text.flush()
                if tail:
                    self._pieces.append(tail)
                    return tail
                raise StopIteration
            if isinstance(item, BaseException):
                self._done = True
                if isinstance(item, FFError):
                    raise item
                raise GenerationError(f"Generation failed: {item}") from item
            piece = self._push(item)
            if piece:
                return piece
        raise StopIteration

    def _next_event(self):
        """The request's next event. A stall (GenerationError, the request stopped) is no
        event while the engine did no work either: waiting for a row while others decode is
        not one."""
        scheduler = self._engine.scheduler
        while True:
            done = scheduler.progress
            try:
                return self.request.events.get(timeout=self.host.stream_timeout_s)
            except queue.Empty:
                if scheduler.progress == done:
                    self.request.stop.set()
                    raise GenerationError(self._stalled_message()) from None

    def _stalled_message(self) -> str:
        return (
            f"Neither this reply nor the engine moved for {self.host.stream_timeout_s:.0f} s: "
            "generation stalled. Try again, or lower max new tokens."
        )

    def _push(self, choice: TokenChoice) -> str:
        piece = self._text.push(choice.token)
        self._record_logprobs(choice)
        if piece:
            self._pieces.append(piece)
        return piece

    def _record_logprobs(self, choice: TokenChoice) -> None:
        if choice.logprob is not None:
            top = [[self._engine.tokenizer.decode([t]), lp] for t, lp in (choice.top or [])]
            self._tokens.append(
                {
                    "token": choice.token,
                    "text": self._engine.tokenizer.decode([choice.token]),
                    "logprob": choice.logprob,
                    "top": top,
                }
            )

    def close(self) -> None:
        """Stop generating: the row leaves the batch at the next step; the Reply keeps the text."""
        if self._done or not self._submitted:  # never sent: nothing to stop or wait for
            self._let_go()
            self._done = True
            return
        self.request.stop.set()
        deadline = time.monotonic() + self.host.stream_timeout_s
        while not self._done and time.monotonic() < deadline:
            try:
                item = self.request.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is END:
                self._pieces.append(self._text.flush())  # a character the window still held
                self._end(stopped=True)
            elif isinstance(item, TokenChoice):
                self._push(item)

    def text(self) -> str:
        """Wait for the whole reply, then decode it at once; the reply's text.

        Unlike iterating, nothing wakes this thread per token and the text is decoded once,
        so many replies read this way (scorecards, compare, sweeps) leave the engine's worker
        the interpreter to itself.
        """
        self.start()
        if self._done:
            return self.reply.text if self.reply else ""
        self.waiting = False
        req, scheduler = self.request, self._engine.scheduler
        seen, last_progress = -1, time.monotonic()
        while not req.ended.wait(0.5):
            if scheduler.progress != seen:  # this reply's tokens, or the engine's other work
                seen, last_progress = scheduler.progress, time.monotonic()
            elif time.monotonic() - last_progress > self.host.stream_timeout_s:
                req.stop.set()
                raise GenerationError(self._stalled_message())
        for item in _drain(req.events):
            if isinstance(item, TokenChoice):
                self._text.ids.append(item.token)
                self._record_logprobs(item)
            elif isinstance(item, BaseException):
                self._done = True
                if isinstance(item, FFError):
                    raise item
                raise GenerationError(f"Generation failed: {item}") from item
        self._pieces.append(self._text.flush())
        self._end()
        return self.reply.text

    # --- the record ------------------------------------------------------------------------------
    def _end(self, stopped: bool = False) -> None:
        self._done = True
        req, engine, built, job = self.request, self._engine, self._built, self.job
        end = req.ended_at or time.perf_counter()
        total = max(end - req.submitted_at, 1e-9)
        ttft = (
            None if req.first_token_at is None else round(req.first_token_at - req.submitted_at, 4)
        )
        adapter = job["adapter_dir"]
        weights, sha = (None, None) if adapter is None else adapter_sha256(adapter)
        # A Stop that came after the last token leaves the reply whole: it keeps its end.
        ended = req.finish_reason in ("eos", "length")
        reason = (
            "stopped" if (stopped and not ended) or not req.finish_reason else req.finish_reason
        )
        self.reply = Reply(
            text="".join(self._pieces),
            stats=ReplyStats(
                prompt_tokens=len(req.prompt_ids),
                new_tokens=req.new_tokens,
                ttft_s=ttft,
                tokens_per_s=round(req.new_tokens / total, 2),
                total_s=round(total, 4),
            ),
            adapter=None if adapter is None else str(adapter),
            adapter_name=req.adapter_name,
            base_model=job["base_model"],
            quantization=engine.quantization.label,
            describe=engine.describe(),
            settings=job["settings"].as_dict(),
            seed=req.seed,
            prompt_text=built.text,
            template=built.template,
            dropped_turns=built.dropped_turns,
            truncated_tokens=built.truncated_tokens,
            max_new_tokens=req.max_new_tokens,
            stopped=reason == "stopped",
            finish_reason=reason,
            decoder=engine.decoder_name,
            adapter_weights=weights,
            adapter_sha256=sha,
            base_source=engine.source,
            base_revision=engine.revision,
            quantization_reason=engine.quantization.reason,
            tokens=tuple(self._tokens),
        )

    def __del__(self):
        # A stream dropped unread must not keep a row decoding, nor its base held.
        self._let_go()
        if self.request is not None and not self._done:
            self.request.stop.set()


def _drain(events: queue.Queue) -> list:
    """Everything on a finished request's queue, up to END, taken in one go (nothing is put
    after END; a get per token was half of reading 16 finished replies)."""
    with events.mutex:
        items = list(events.queue)
        events.queue.clear()
    return items[: items.index(END)]
