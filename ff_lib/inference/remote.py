"""The door to generation over a remote OpenAI-compatible engine (vLLM with LoRA adapters).

`RemoteHost` has ModelHost's methods and shapes (stream_reply, generate, generate_many, info,
availability, busy, load_base, score), so pages, the CLI, Compare, scorecards and `serve` work
unchanged. Runs map to the server's LoRA adapters by vLLM's rules (remote_client.py).

vLLM bug #48421 (CPU backend): a base-model request decoded in one batch with adapter requests
is answered with an adapter. The host never lets that happen: its `KindGate` lets requests of
one kind (base, or adapters) be in flight on the server at a time; the other kind waits for
them to finish. Different adapters still share batches.
"""

import contextlib
import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import BaseModelUnavailable, FFError, GenerationError, InvalidInput
from ff_lib.inference.adapters import AdapterCheck, validate_adapter
from ff_lib.inference.door import WholeReplies, checked_if_here, checked_job
from ff_lib.inference.host import LoadedInfo
from ff_lib.inference.remote_client import EngineClient
from ff_lib.inference.remote_score import score_remote
from ff_lib.inference.remote_stream import REMOTE_QUANTIZATION, RemoteStream
from ff_lib.inference.settings import GenerationSettings
from ff_lib.inference.streams import STREAM_TIMEOUT_S

GATE_TIMEOUT_S = 600.0  # how long a request waits for the other kind's replies to finish
# Requests in flight on the server from this process at most (FF_ENGINE_CONCURRENCY): a scorecard
# starts every row at once; past this, rows wait here for a free connection, not in a pool that
# would time out and look like a dead server.
DEFAULT_CONCURRENCY = 64
HEALTH_TTL_S = 2.0  # /health likewise: every rerun of a page asks whether the engine answers


class KindGate:
    """Lets requests of one kind ('base' or 'adapter') be in flight at a time.

    Turns, so that neither kind starves and each turn is still a batch: when the gate changes
    kind, every request of that kind already waiting comes in; later ones of the running kind
    wait while the other kind waits for its turn.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._kind: str | None = None
        self._count = 0
        self._admit = 0  # requests of the running kind that waited for this turn, still to enter
        self._waiting = {"base": 0, "adapter": 0}

    def free_for(self, kind: str) -> bool:
        with self._cond:
            return self._may_enter(kind)

    def _may_enter(self, kind: str) -> bool:
        if self._count == 0:
            return True
        other = "adapter" if kind == "base" else "base"
        return self._kind == kind and (not self._waiting[other] or self._admit > 0)

    @property
    def in_flight(self) -> int:
        return self._count

    @contextlib.contextmanager
    def held(self, kind: str, stop: threading.Event | None = None):
        """Inside: this kind may be in flight; waits (up to GATE_TIMEOUT_S) for the other's end."""
        deadline = time.monotonic() + GATE_TIMEOUT_S
        with self._cond:
            self._waiting[kind] += 1
            try:
                while not self._may_enter(kind):
                    if stop is not None and stop.is_set():
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise GenerationError(
                            f"The engine stayed busy with other replies for {GATE_TIMEOUT_S:.0f} "
                            "s: try again."
                        )
                    self._cond.wait(min(left, 0.5))
                if self._count == 0:  # a new turn: those of this kind waiting now come in too
                    self._kind, self._admit = kind, self._waiting[kind] - 1
                elif self._admit > 0:
                    self._admit -= 1
            finally:
                self._waiting[kind] -= 1
            self._count += 1
        try:
            yield
        finally:
            with self._cond:
                self._count -= 1
                if self._count == 0:
                    self._kind, self._admit = None, 0
                self._cond.notify_all()


@dataclass(frozen=True)
class RemoteQuantization:
    """What load_base's `quantization` says for a remote engine (the server chose it)."""

    mode: str = "remote"
    label: str = REMOTE_QUANTIZATION
    reason: str = "chosen by the vLLM server"


@dataclass(frozen=True)
class RemoteBase:
    """What effect and the token view need of a base: its tokenizer (local), end-of-turn ids."""

    base_model: str
    source: str
    tokenizer: object
    eos_token_ids: tuple[int, ...]
    context_length: int
    where: str
    quantization: RemoteQuantization = RemoteQuantization()

    def describe(self) -> str:
        return self.where


class RemoteHost(WholeReplies):
    """ModelHost's door over a vLLM server at `url` (http://HOST:PORT/v1)."""

    def __init__(self, url: str, api_key: str | None = None, *, stream_timeout_s=STREAM_TIMEOUT_S):
        concurrency = int(os.environ.get("FF_ENGINE_CONCURRENCY", DEFAULT_CONCURRENCY))
        if concurrency < 1:
            raise InvalidInput(f"FF_ENGINE_CONCURRENCY must be at least 1 (got {concurrency}).")
        self.client = EngineClient(
            url, api_key, timeout_s=stream_timeout_s, connections=concurrency
        )
        self._slots = threading.BoundedSemaphore(concurrency)
        self.where = self.client.where
        self.stream_timeout_s = stream_timeout_s
        self.gate = KindGate()
        self._tokenizers: dict[str, tuple] = {}
        self._lock = threading.Lock()
        self._state: tuple[float, str | None, list, int] | None = None

    @contextlib.contextmanager
    def request_slot(self, stop: threading.Event):
        """One of the FF_ENGINE_CONCURRENCY requests in flight; gives up waiting on `stop`."""
        while not self._slots.acquire(timeout=0.5):
            if stop.is_set():
                yield False
                return
        try:
            yield True
        finally:
            self._slots.release()

    # --- the base's tokenizer, when it is here -------------------------------------------------
    def tokenizer_for(self, base_model: str):
        """The base's tokenizer when its files are here (a folder or the HF cache), else None."""
        source, tokenizer, _ = self._local(base_model)
        return tokenizer if source else None

    def eos_token_ids(self, base_model: str) -> tuple[int, ...]:
        return self._local(base_model)[2]

    def _local(self, base_model: str):
        from ff_lib.inference.bases import locate_base

        key = str(base_model)
        with self._lock:
            if key not in self._tokenizers:
                try:
                    source = locate_base(key)
                except BaseModelUnavailable:
                    self._tokenizers[key] = (None, None, ())
                else:
                    self._tokenizers[key] = _load_tokenizer(source)
            return self._tokenizers[key]

    # --- the door ------------------------------------------------------------------------------
    @property
    def base_loads(self) -> int:
        """Bases loaded in this process: none, the server holds its base (replay reports it)."""
        return 0

    @property
    def adapter_loads(self) -> int:
        """Adapters this host asked the server to load at runtime."""
        return self.client.runtime_loads

    @property
    def busy(self) -> bool:
        """Whether replies are in flight on the server from this process."""
        return self.gate.in_flight > 0

    def _served(self) -> tuple[str | None, list]:
        """(why a request would not be served now, the served models), asked at most every
        HEALTH_TTL_S: every rerun of a page asks. /health, then /v1/models (which also tells
        a missing or wrong API key). A request that failed since (client.failures) asks again."""
        now = time.monotonic()
        cached = self._state
        stale = cached is None or now - cached[0] >= HEALTH_TTL_S
        if stale or cached[3] != self.client.failures:
            reason, models = self.client.health(), []
            if reason is None:
                try:
                    models = self.client.models()
                except FFError as exc:
                    reason = str(exc)
            cached = self._state = (now, reason, models, self.client.failures)
        return cached[1], cached[2]

    def availability(self, base_model: str, quantization: str = "auto") -> str | None:
        """None when a request would be served now (/health and /v1/models answer), else why
        not."""
        return self._served()[0]

    def info(self) -> LoadedInfo | None:
        """The served base and adapters; None when the server cannot be asked."""
        reason, models = self._served()
        if reason is not None:
            return None
        bases = [m for m in models if not m.is_adapter]
        return LoadedInfo(
            base_model=bases[0].id if bases else "",
            quantization=REMOTE_QUANTIZATION,
            device=self.where.describe,
            adapters=tuple(m.root or m.id for m in models if m.is_adapter),
            describe=self.where.describe,
            load_s=0.0,
            context=(bases[0].max_model_len or 0) if bases else 0,
            quantization_reason="chosen by the vLLM server",
        )

    def context_length_for(self, base_model: str) -> int | None:
        """The served base's max_model_len (the server serves one base); None when it cannot
        be asked."""
        info = self.info()
        return (info.context or None) if info is not None else None

    def stream_reply(
        self,
        base_model: str,
        messages: list[dict],
        settings: GenerationSettings,
        adapter_dir: Path | None,
        quantization: str = "auto",
        *,
        on_wait=None,
        logprobs: int | None = None,
    ) -> RemoteStream:
        """ModelHost.stream_reply through the server; checks now, the request at `start()`.

        `quantization` is the server's choice (its --dtype / --quantization), not ours.
        """
        job = checked_job(
            base_model, messages, settings, adapter_dir, quantization, logprobs, checked_if_here
        )
        return RemoteStream(self, job)  # on_wait: see RemoteStream.start

    # --- effect and the token view -------------------------------------------------------------
    def load_base(self, base_model: str, quantization: str = "auto") -> RemoteBase:
        """The base's local tokenizer and end-of-turn ids, as effect and explain use them."""
        base = self.client.served_base(base_model)
        source, tokenizer, eos = self._local(base_model)
        if source is None:
            raise GenerationError(
                f"The base {base_model} is not on this machine, so its tokenizer is not here: "
                f"effect and the token view need it (the replies come from {self.where.describe})."
            )
        return RemoteBase(
            str(base_model), source, tokenizer, eos, base.max_model_len or 0, self.where.describe
        )

    def score(self, base_model: str, ids: list[int], adapters: list, quantization: str = "auto"):
        """ModelHost.score through `prompt_logprobs`: (len(adapters), len(ids), vocab) float32
        log-probabilities (the full vocabulary, as the server computed them)."""
        return score_remote(self, base_model, ids, adapters)

    def release(self) -> None:
        """Nothing is loaded in this process; the server keeps its model."""

    def close(self) -> None:
        self.client.close()


def check_for_remote(path, base_model: str | None, where: str):
    """validate_adapter as it matters when `where` (a vLLM server) answers: an adapter folder
    that is not on this machine is the server's to validate, and so is a base that is not here
    (it serves it); both are said as warnings. Files that are here are validated here."""
    if not Path(path).expanduser().exists():
        note = f"The adapter folder {path} is not on this machine: validation is the server's ({where})."
        return AdapterCheck(
            ok=True, reason=note, requested_path=str(path), adapter_dir=str(path),
            base_model=base_model, warnings=(note,),
        )  # fmt: skip
    check = validate_adapter(path, base_model)
    if check.ok and check.base_problem:
        note = (
            f"The base is not on this machine: {where} serves it and applies its own chat "
            "template (the tokenizer is not here)."
        )
        check = dataclasses.replace(check, base_problem=None, warnings=(*check.warnings, note))
    return check


def _load_tokenizer(source: str):
    """(source, tokenizer, end-of-turn ids) of a located base, read as the local engine reads it."""
    from transformers import AutoTokenizer, GenerationConfig

    from ff_lib.inference.quiet import quiet_libraries

    try:
        with quiet_libraries():
            tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise BaseModelUnavailable(f"The tokenizer of {source} could not be read: {exc}") from exc
    try:
        gen_eos = GenerationConfig.from_pretrained(source).eos_token_id
    except OSError:  # no generation_config.json: the model config's, as transformers derives it
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source)
        gen_eos = getattr(getattr(config, "text_config", None) or config, "eos_token_id", None)
    ids: list[int] = []
    for value in (gen_eos, tokenizer.eos_token_id):
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and int(item) not in ids:
                ids.append(int(item))
    return source, tokenizer, tuple(ids)
