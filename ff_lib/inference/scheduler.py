"""One worker per loaded base: continuous batching of every live request, each streaming on its own.

A request joins at the next step (its prompt is prefilled into a free cache row), decodes together
with every other live row, and leaves as soon as it ends or is stopped. Rows stay packed at the
front of the cache (a finished row's place is taken by the last row), so a step computes only
the live rows' bucket.
"""

import queue
import threading
import time
from dataclasses import dataclass, field

from ff_lib.errors import FFError, GenerationError
from ff_lib.inference.settings import GenerationSettings

# Padded tokens one joint prefill may take (requests beyond it are prefilled in another pass).
PREFILL_TOKENS = 2048
# Steps one chain of greedy steps may queue before the host looks at the batch afresh.
CHAIN_STEPS = 256
END = object()  # put on a request's queue once it has finished (after its last token)
SHUT_DOWN = "The engine was shut down: send the request again."


@dataclass
class TokenChoice:
    """One row's next token, with its log-probability and the top alternatives when asked."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


@dataclass(eq=False)
class Request:
    """One reply being generated: what to run, and the queue its tokens arrive on."""

    prompt_ids: list[int]
    settings: GenerationSettings
    seed: int | None
    adapter_folder: str | None
    max_new_tokens: int
    eos_token_ids: frozenset[int]
    logprobs: int | None = None  # top alternatives per token (0 = only the chosen one's)
    events: queue.Queue = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)  # set after END is queued
    submitted_at: float = field(default_factory=time.perf_counter)
    placed_at: float | None = None  # its adapter in a slot, about to be prefilled
    first_token_at: float | None = None
    ended_at: float | None = None
    new_tokens: int = 0
    finish_reason: str = ""
    adapter_name: str | None = None
    # Set by the worker while the request holds a row.
    row: int = -1
    slot: int = 0
    last_token: int = 0
    position: int = 0


class Scheduler:
    """The worker thread of one BatchedLM; `submit` is safe from any thread."""

    def __init__(self, model, idle_wait_s: float = 0.05):
        from ff_lib.inference.sampling import RowSampler  # torch: imported with the first model

        self.model = model
        self.sampler = RowSampler(model.max_rows, model.vocab, model.device)
        model.attach_sampler(self.sampler.seen, self.sampler.penalty)
        self.pending: queue.Queue[Request] = queue.Queue()
        self.jobs: queue.Queue = queue.Queue()  # (fn, Future) run between steps
        self.active: list[Request] = []
        self.steps = 0
        self.chained_steps = 0  # steps taken in chains (see _chain)
        self.passes = 0  # prefill passes and jobs done (see `progress`)
        self._slots_version = model.slots.version
        self.max_batch_seen = 0
        self._idle_wait_s = idle_wait_s
        self._closed = threading.Event()
        self._gate = threading.Lock()  # nothing is queued once closed (the worker fails the rest)
        self._wake = threading.Event()
        self._held = 0  # requests built for this engine and about to be submitted
        self._admitting = 0  # requests taken from `pending`, not yet in a row (worker only)
        self._held_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ff-engine", daemon=True)
        self._thread.start()

    @property
    def live(self) -> int:
        """Requests decoding, waiting for a row, being admitted, or built to be submitted
        (`hold`): a switch to another base waits for all of them. Read from other threads while
        the worker moves requests along held -> pending -> admitting -> active, each counted in
        the next place before it leaves the last: read in that order, none is missed."""
        return self._held + self.pending.qsize() + self._admitting + len(self.active)

    @property
    def progress(self) -> int:
        """Work done so far (steps, prefill passes, jobs): a reader whose request waits for a
        row while others decode sees the engine moving, which is not a stall."""
        return self.steps + self.passes

    def hold(self) -> None:
        """Count a request being built for this engine as live until `let_go` (after its
        submission, or when it will not be sent)."""
        with self._held_lock:
            self._held += 1

    def let_go(self) -> None:
        with self._held_lock:
            self._held -= 1

    def submit(self, req: Request) -> Request:
        with self._gate:
            if self._closed.is_set():
                raise GenerationError(SHUT_DOWN)
            req.submitted_at = time.perf_counter()  # a request may be built before it is sent
            self.pending.put(req)
        self._wake.set()
        return req

    def run_exclusive(self, fn, timeout: float = 600.0):
        """Run `fn()` in the worker thread between two steps (it may use the model); its result."""
        from concurrent.futures import Future

        future: Future = Future()
        with self._gate:
            if self._closed.is_set():
                raise GenerationError(SHUT_DOWN)
            self.jobs.put((fn, future))
        self._wake.set()
        return future.result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker after the live requests are told to stop; what is still queued is
        told that the engine shut down."""
        for req in list(self.active):
            req.stop.set()
        with self._gate:
            self._closed.set()
        self._wake.set()
        self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is live; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.live and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.live

    # --- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed.is_set():
            self._run_jobs()
            try:
                self._admit()
                if not self.active:
                    self._wake.wait(self._idle_wait_s)
                    self._wake.clear()
                    continue
                self._step()
            # Any failure of an admission or a step (CUDA out of memory, a compiler error, an
            # adapter unreadable since its check) is every live request's error, said to each;
            # the worker itself never dies of it.
            except Exception as exc:  # noqa: BLE001
                self._fail_all(exc)
        shut = GenerationError(SHUT_DOWN)
        self._fail_all(shut)
        self._fail_jobs(shut)

    def _run_jobs(self) -> None:
        while True:
            try:
                fn, future = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
                future.set_exception(exc)
            self.passes += 1

    def _fail_jobs(self, exc: BaseException) -> None:
        while True:
            try:
                _, future = self.jobs.get_nowait()
            except queue.Empty:
                return
            future.set_exception(exc)

    def _admit(self) -> None:
        """Waiting requests take free rows; those that arrived together are prefilled in one
        padded forward (up to PREFILL_TOKENS padded tokens), a long prompt on its own."""
        batch: list[Request] = []
        while len(self.active) + len(batch) < self.model.max_rows:
            self._admitting += 1  # counted as live before it leaves the queue (see `live`)
            try:
                req = self.pending.get_nowait()
            except queue.Empty:
                self._admitting -= 1
                break
            if req.stop.is_set():
                self._finish(req, "stopped")
                self._admitting -= 1
                continue
            longest = max([len(r.prompt_ids) for r in batch] + [len(req.prompt_ids)])
            if batch and longest * (len(batch) + 1) > PREFILL_TOKENS:
                self._prefill_admitted(batch)
                batch = []
            batch.append(req)
        if batch:
            self._prefill_admitted(batch)

    def _prefill_admitted(self, batch: list[Request]) -> None:
        """_prefill, after which each request has a row or has ended: also when it fails
        unexpectedly (the worker's handler then tells the live rows)."""
        try:
            self._prefill(batch)
        except Exception as exc:  # noqa: BLE001 - said to each admitted request, then re-raised
            for req in batch:
                if not req.finish_reason and req not in self.active:
                    self._finish(req, "error", _generation_error(exc))
            raise
        finally:
            self._admitting -= len(batch)

    def _prefill(self, batch: list[Request]) -> None:
        """Place each request in a slot and a row, prefill them together, emit first tokens."""
        model = self.model
        ready = []
        for req in batch:
            try:
                self._place(req, {r.adapter_name for r in (*self.active, *ready) if r.adapter_name})
            except (RuntimeError, ValueError, FFError) as exc:
                self._finish(req, "error", exc)
                continue
            req.placed_at = time.perf_counter()
            ready.append(req)
        self._follow_slots()  # placing may have grown the slots under the live rows
        for r in ready:
            r.slot = model.slots.slot_of(r.adapter_name)
        if not ready:
            return
        first = len(self.active)
        try:
            if len(ready) == 1:
                logits = model.prefill(first, ready[0].prompt_ids, ready[0].slot)[None]
            else:
                logits = model.prefill_many(
                    first, [r.prompt_ids for r in ready], [r.slot for r in ready]
                )
        except (RuntimeError, ValueError, FFError) as exc:
            for req in ready:
                self._finish(req, "error", exc)
            return
        self.passes += 1
        for j, req in enumerate(ready):
            req.row = first + j
            self.sampler.start(req.row, req.prompt_ids, req.settings, req.seed, req.logprobs)
            req.position = len(req.prompt_ids)
            self.active.append(req)
        choices = self.sampler.choose(logits, [r.row for r in ready])
        for req, choice in zip(ready, choices, strict=True):
            self._emit(req, choice)
        self._retire()

    def _place(self, req: Request, pinned: set) -> None:
        """The request's adapter into a slot (evicting none of `pinned`); a prompt too long for
        the context is refused here, alone."""
        model = self.model
        if len(req.prompt_ids) > model.max_len:
            raise GenerationError(
                f"Prompt of {len(req.prompt_ids)} tokens does not fit the engine's context of "
                f"{model.max_len} tokens."
            )
        version = model.slots.version
        try:
            if req.adapter_folder is not None:
                req.adapter_name = model.slots.ensure(req.adapter_folder, pinned)
        finally:
            if model.slots.version != version:
                model.drop_stale_graphs()

    def _step(self) -> None:
        rows = self.active
        self.max_batch_seen = max(self.max_batch_seen, len(rows))
        self._follow_slots()
        if all(not r.settings.sampling and r.logprobs is None for r in rows):
            self._chain(rows)
            return
        logits = self.model.decode(
            [r.last_token for r in rows], [r.position for r in rows], [r.slot for r in rows]
        )
        for r in rows:
            r.position += 1
        choices = self.sampler.choose(logits, [r.row for r in rows])
        self.steps += 1
        for req, choice in zip(rows, choices, strict=True):
            self._emit(req, choice)
        self._retire()

    def _follow_slots(self) -> None:
        """After the slots grew (a job between steps may load adapters: scoring, the bench),
        every live row looks its slot up again: "no adapter" is the slot count, so a row
        without one would otherwise read a newly filled slot."""
        slots = self.model.slots
        if slots.version != self._slots_version:
            for r in self.active:
                r.slot = slots.slot_of(r.adapter_name)
            self._slots_version = slots.version

    def _chain(self, rows: list[Request]) -> None:
        """Greedy steps back to back on the device: step k+1 is queued before step k's tokens
        are read, so the device never waits for the host. The chain ends at the step where a
        row ends or is stopped, or a request or job arrives (the step already queued then is
        taken for the rows still going: a stop or an arrival waits one step at most)."""
        model = self.model
        room = model.start_chain(
            [r.last_token for r in rows], [r.position for r in rows], [r.slot for r in rows]
        )
        left = min(room, CHAIN_STEPS, *(r.max_new_tokens - r.new_tokens for r in rows))
        handle, queued = model.chain_step(), 1
        while True:
            following = None
            if queued < left and self._undisturbed(rows):
                following, queued = model.chain_step(), queued + 1
            self._take(rows, model.chain_read(handle))
            if following is None:
                break
            if any(r.finish_reason or r.stop.is_set() for r in rows):
                self._take(rows, model.chain_read(following))
                break
            handle = following
        model.end_chain()
        self._retire()

    def _undisturbed(self, rows: list[Request]) -> bool:
        return (
            self.pending.empty()
            and self.jobs.empty()
            and not self._closed.is_set()
            and not any(r.stop.is_set() for r in rows)
        )

    def _take(self, rows: list[Request], tokens: list[int]) -> None:
        """One chained step's tokens for the rows that had not ended before it."""
        self.steps += 1
        self.chained_steps += 1
        for req, token in zip(rows, tokens, strict=True):
            if not req.finish_reason:
                req.position += 1
                self._emit(req, TokenChoice(token))

    def _emit(self, req: Request, choice: TokenChoice) -> None:
        now = time.perf_counter()
        if req.first_token_at is None:
            req.first_token_at = now
        if req.stop.is_set():
            req.finish_reason = "stopped"
        elif choice.token in req.eos_token_ids:
            req.finish_reason = "eos"
        else:
            req.new_tokens += 1
            req.last_token = choice.token
            req.events.put(choice)
            if req.new_tokens >= req.max_new_tokens or req.position >= self.model.max_len:
                req.finish_reason = "length"

    def _retire(self) -> None:
        """Finished rows leave at once; live rows past the new end move into the freed places
        (only those: rows ending together are not moved into each other's places first)."""
        leaving, staying = [], []
        for r in self.active:  # one pass: a stop set meanwhile cannot put a row in neither
            (leaving if r.finish_reason or r.stop.is_set() else staying).append(r)
        if not leaving:
            return
        for req in leaving:
            self._finish(req, req.finish_reason or "stopped")
        holes = iter(sorted(r.row for r in leaving if r.row < len(staying)))
        for req in staying:
            if req.row >= len(staying):
                hole = next(holes)
                self.model.move_row(req.row, hole, req.position)
                self.sampler.move(req.row, hole)
                req.row = hole
        self.active = sorted(staying, key=lambda r: r.row)  # self.active[i].row == i

    def _finish(self, req: Request, reason: str, error: BaseException | None = None) -> None:
        req.finish_reason = reason
        req.ended_at = time.perf_counter()
        if error is not None:
            req.events.put(error)
        req.events.put(END)
        req.ended.set()

    def _fail_all(self, exc: BaseException) -> None:
        error = _generation_error(exc)
        for req in self.active:
            self._finish(req, "error", error)
        self.active = []
        while True:
            try:
                self._finish(self.pending.get_nowait(), "error", error)
            except queue.Empty:
                return


def _generation_error(exc: BaseException) -> FFError:
    """The error a request's reader is told: ours as it is, any other wrapped and named."""
    return exc if isinstance(exc, FFError) else GenerationError(f"Generation failed: {exc}")
