"""The door to generation: every page, the CLI, scorecards and the bench submit here.

One base per (id, quantization) lives in the process with its engine (BatchedLM + Scheduler);
adapters live in its slots. Requests from any thread join the one batch.
"""

import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import GenerationError, InvalidInput
from ff_lib.inference.base_identity import local_base_config
from ff_lib.inference.bases import (
    HEADROOM,
    base_facts,
    choose_quantization,
    load_model,
    locate_base,
)
from ff_lib.inference.compile_ahead import start_compile_ahead
from ff_lib.inference.door import WholeReplies, checked_adapter, checked_job
from ff_lib.inference.scheduler import Scheduler
from ff_lib.inference.settings import GenerationSettings
from ff_lib.inference.streams import STREAM_TIMEOUT_S, ReplyStream

DEFAULT_MAX_ADAPTERS = 8
# How long a request for another base waits for the loaded base's replies to finish.
SWITCH_TIMEOUT_S = 600.0
MAX_CONTEXT = 32768  # cache length cap (FF_MAX_CONTEXT overrides)
KV_SHARE = 0.5  # share of free GPU memory / RAM (after the load) the KV cache may take
MAX_ROWS = 16


@dataclass(frozen=True)
class LoadedInfo:
    """What is loaded now, for status lines."""

    base_model: str
    quantization: str  # "float32" | "bf16" | "4-bit NF4" | "NF4 dequantized to bf16"
    device: str  # "CPU" | "cuda:0"
    adapters: tuple[str, ...]  # adapter folders in slots, least recently used first
    describe: str
    load_s: float
    context: int = 0  # tokens a prompt plus its reply may take
    rows: int = 0  # replies decoded together at most
    quantization_reason: str = ""  # why this quantization ("asked", "bf16 fits in free GPU ...")


class Engine:
    """One loaded base: the model, its tokenizer, its batched decoder and its worker."""

    def __init__(self, base_model, source, quantization, model, tokenizer, device, load_s, slots):

        from ff_lib.inference.decode import BatchedLM  # torch: imported with the first model
        from ff_lib.inference.ops import compile_wanted

        self.base_model, self.source = str(base_model), source
        self.quantization, self.device, self.load_s = quantization, device, load_s
        self.model, self.tokenizer = model, tokenizer
        cuda = device != "cpu"
        if not cuda:
            _cpu_threads_for(model)
        config = getattr(model.config, "text_config", None) or model.config
        max_pos = getattr(config, "max_position_embeddings", None) or 2048
        max_len = min(max_pos, context_cap())
        rows = _rows_for(config, model, max_len, cuda)
        self.context_length = max_len
        compile_ops = cuda and compile_wanted()
        self.batched = BatchedLM(
            model, rows, max_len, slots, use_graphs=cuda, compile_ops=compile_ops
        )
        self.scheduler = Scheduler(self.batched)
        # The first reply's graphs are ready before it is asked for, captured (like every
        # later one) in the worker's thread; its first token's kernels loaded.
        try:
            self.scheduler.run_exclusive(self._warm_up)
        except BaseException:
            self.scheduler.close()  # its thread would keep the model, cache and slots alive
            raise

    def _warm_up(self) -> None:
        self.batched.warm_up()
        self.scheduler.sampler.warm_up()

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.quantization.mode)

    @property
    def decoder_name(self) -> str:
        """Which decode path answers, as replies record it: "batched", "batched+graphs", or
        "batched+graphs+kernels" (the Triton kernels of ff_lib/inference/kernels.py)."""
        batched = self.batched
        parts = ["batched"] + ["graphs"] * batched.use_graphs + ["kernels"] * batched.kernels
        return "+".join(parts)

    @property
    def revision(self) -> str | None:
        """The hub commit the weights came from (a cached hub model), None for a local folder."""
        return getattr(self.model.config, "_commit_hash", None) or None

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        ids = []
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (gen_eos, self.tokenizer.eos_token_id):
            for item in value if isinstance(value, list | tuple) else [value]:
                if item is not None and item not in ids:
                    ids.append(int(item))
        return tuple(ids)

    def describe(self) -> str:
        where = "CPU" if self.device == "cpu" else self.device
        return f"{self.quantization.label} on {where}"


class ModelHost(WholeReplies):
    """Holds at most one base and its engine; every request goes through `stream_reply`."""

    def __init__(
        self,
        max_adapters: int = DEFAULT_MAX_ADAPTERS,
        *,
        trust_remote_code: bool = False,
        stream_timeout_s: float = STREAM_TIMEOUT_S,
    ):
        if max_adapters < 1:
            raise InvalidInput("max_adapters must be at least 1.")
        self.max_adapters = max_adapters
        self.trust_remote_code = trust_remote_code
        self.stream_timeout_s = stream_timeout_s
        self.lock = threading.Lock()  # held while a base loads or is swapped
        self.base_loads = 0
        self._engine: Engine | None = None

    # --- bases -----------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a load is under way or replies are being generated."""
        engine = self._engine
        return self.lock.locked() or bool(engine and engine.scheduler.live)

    @property
    def adapter_loads(self) -> int:
        return self._engine.batched.slots.loads if self._engine else 0

    @property
    def last_adapter_switch_s(self) -> float | None:
        return self._engine.batched.slots.last_switch_s if self._engine else None

    def load_base(self, base_model: str, quantization: str = "auto") -> Engine:
        """The engine for (base_model, quantization); loads it, releasing another base."""
        return self.engine_for(base_model, quantization, None)

    def engine_for(
        self, base_model, quantization, on_wait: Callable[[], None] | None, hold: bool = False
    ) -> Engine:
        """The engine for (base_model, quantization), loading it if needed; `hold`: counted
        as live (`Scheduler.hold`) before the host's lock is let go, so no switch to another
        base can close it before the caller submits (the caller lets go)."""
        import torch

        source = locate_base(base_model)
        cuda = torch.cuda.is_available()
        # Refusals (NF4 without CUDA, unknown names) come first, before any wait or file read.
        quant = choose_quantization(quantization, cuda)
        if not self.lock.acquire(blocking=False):  # another session is loading a base
            if on_wait is not None:
                on_wait()
            self.lock.acquire()
        try:
            engine = self._engine
            # `auto` was decided when the base loaded (free memory is lower now).
            same = engine is not None and engine.source == source
            if same and (quantization == "auto" or engine.quantization.mode == quant.mode):
                return _held(engine, hold)
            if quantization == "auto" and cuda:  # the base's files and free memory decide
                quant = _auto_on_cuda(source)
            if engine is not None:
                if engine.scheduler.live and on_wait is not None:
                    on_wait()
                if not engine.scheduler.wait_idle(SWITCH_TIMEOUT_S):
                    raise GenerationError(
                        f"The model stayed busy with other replies for {SWITCH_TIMEOUT_S:.0f} s: "
                        "try again."
                    )
                engine = None  # the release frees the old base now, not after this load
                self._release_locked()
            self._engine = self._load(base_model, source, quant, cuda)
            self.base_loads += 1
            return _held(self._engine, hold)
        finally:
            self.lock.release()

    def _load(self, base_model, source: str, quant, cuda: bool) -> Engine:
        """Load a base and build its engine (the lock held, no base loaded)."""
        started = time.perf_counter()
        ahead = start_compile_ahead(source, self.trust_remote_code) if cuda else None
        model, tokenizer, device = load_model(
            base_model, source, quant.mode, self.trust_remote_code
        )
        if ahead is not None:
            ahead.join()  # its kernels are the warm-up's: never compile them twice at once
        _freeze_heap()
        try:
            return Engine(
                base_model, source, quant, model, tokenizer, device,
                time.perf_counter() - started, self.max_adapters,
            )  # fmt: skip
        except BaseException:
            gc.unfreeze()  # no engine to release later: the refused model is collectable now
            raise

    def availability(self, base_model: str, quantization: str = "auto") -> str | None:
        """None when a request for this base would be served now, else why it would wait.

        For a server that answers "busy, retry later" rather than holding a request: the lock
        is held (past a moment) only while a base loads or waits to replace another.
        """
        import torch

        source = locate_base(base_model)
        quant = choose_quantization(quantization, torch.cuda.is_available())
        if not self.lock.acquire(timeout=0.5):  # a reply on the loaded base holds it for µs
            return (
                "A base model is loading (or waiting to replace the loaded one): "
                "try again in a moment."
            )
        engine = self._engine
        self.lock.release()
        if engine is None or not engine.scheduler.live:
            return None  # loads (or switches) now
        if engine.source == source and (
            quantization == "auto" or engine.quantization.mode == quant.mode
        ):
            return None
        return (
            f"{engine.base_model} is loaded and still answering {engine.scheduler.live} "
            f"replies; switching to {base_model} waits for them: try again when they finish."
        )

    def context_length_for(self, base_model: str) -> int | None:
        """The tokens a prompt plus its reply may take on `base_model`: the loaded engine's, else
        read from the base's config without loading it; None when its config is not here."""
        engine = self._engine
        if engine is not None and str(engine.base_model) == str(base_model):
            return engine.context_length
        max_pos = (local_base_config(str(base_model)) or {}).get("max_position_embeddings")
        if isinstance(max_pos, bool) or not isinstance(max_pos, int) or max_pos < 1:
            return None
        return min(max_pos, context_cap())

    def info(self) -> LoadedInfo | None:
        engine = self._engine
        if engine is None:
            return None
        slots = engine.batched.slots
        return LoadedInfo(
            base_model=engine.base_model,
            quantization=engine.quantization.label,
            device="CPU" if engine.device == "cpu" else engine.device,
            adapters=tuple(slots.folders[n] for n in slots.names),
            describe=engine.describe(),
            load_s=round(engine.load_s, 3),
            context=engine.context_length,
            rows=engine.batched.max_rows,
            quantization_reason=engine.quantization.reason,
        )

    def release(self) -> None:
        """Drop the loaded base and its adapters, freeing memory."""
        with self.lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._engine is None:
            return
        self._engine.scheduler.close()
        self._engine = None
        gc.unfreeze()  # the released base's objects are the collector's again (_freeze_heap)
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- replies ---------------------------------------------------------------------------------
    def stream_reply(
        self,
        base_model: str,
        messages: list[dict],
        settings: GenerationSettings,
        adapter_dir: Path | None,
        quantization: str = "auto",
        *,
        on_wait: Callable[[], None] | None = None,
        logprobs: int | None = None,
    ) -> ReplyStream:
        """Stream the answer to the last user turn; the prompt and adapter are checked now.

        Raises EmptyPrompt / InvalidInput / AdapterInvalid at once; loading and generation
        start with `stream.start()` or the first read. `logprobs=k` records each chosen token's
        log-probability and its k best alternatives in `reply.tokens`.
        """
        job = checked_job(
            base_model, messages, settings, adapter_dir, quantization, logprobs, checked_adapter
        )
        return ReplyStream(self, job, on_wait)

    def score(self, base_model: str, ids: list[int], adapters: list, quantization: str = "auto"):
        """Teacher-forced float32 logits (len(adapters), len(ids), vocab) in one batched forward;
        each entry of `adapters` is an adapter folder or None (the base)."""
        folders = [None if a is None else str(checked_adapter(a, base_model)) for a in adapters]
        engine = self.engine_for(base_model, quantization, None, hold=True)
        try:
            return engine.scheduler.run_exclusive(lambda: _score(engine, ids, folders))
        finally:
            engine.scheduler.let_go()


def context_cap() -> int:
    """The longest context an engine keeps (its KV cache's length): FF_MAX_CONTEXT, else
    MAX_CONTEXT."""
    return int(os.environ.get("FF_MAX_CONTEXT", MAX_CONTEXT))


def _held(engine: Engine, hold: bool) -> Engine:
    if hold:
        engine.scheduler.hold()
    return engine


# A CPU base under this many parameters runs its ops on one thread: its matrices are so small
# that splitting them across threads costs more than it saves (the demo's 8 rows decode ~2x
# faster on one thread of a 2-core machine than on two).
SMALL_CPU_MODEL = 50_000_000
_DEFAULT_THREADS: int | None = None


def _freeze_heap() -> None:
    """The end of a load: the loader's garbage collected, then every object alive (torch,
    transformers, the model's modules) kept out of later full collections until the base is
    released. A full collection walked them all, 0.2-0.4 s on the H200 machine, and could fall
    in the warm-up or in the middle of a reply; objects freed by reference count still go at
    once. Process-wide: what else is alive now (the UI's objects) waits for the release too,
    and a release (of any host) gives every frozen object back to the collector."""
    gc.collect()
    gc.freeze()


def _cpu_threads_for(model) -> None:
    """One intra-op thread for a small CPU model, the process's default for any other."""
    import torch

    global _DEFAULT_THREADS
    if _DEFAULT_THREADS is None:
        _DEFAULT_THREADS = torch.get_num_threads()
    small = sum(p.numel() for p in model.parameters()) < SMALL_CPU_MODEL
    torch.set_num_threads(1 if small else _DEFAULT_THREADS)


def _free_ram() -> int:
    """Bytes of RAM available now (Linux: MemAvailable; elsewhere physical pages free)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _rows_for(config, model, max_len: int, cuda: bool) -> int:
    """Rows decoded together: as many as the KV cache's share of free GPU memory (or RAM)
    holds at the full context, at most MAX_ROWS."""
    import torch

    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * heads * head_dim
    per_token *= model.get_input_embeddings().weight.element_size()
    free = torch.cuda.mem_get_info()[0] if cuda else _free_ram()
    return max(1, min(MAX_ROWS, int(free * KV_SHARE) // (per_token * max_len)))


def _auto_on_cuda(source: str):
    """`auto` for a base about to load: NF4 when it is a 4-bit checkpoint or bf16 won't fit."""
    import torch

    prequantized, size = base_facts(source)
    fits = None
    if size:
        free, _ = torch.cuda.mem_get_info()
        fits = size < free * (1 - HEADROOM) * 0.8  # the rest: KV cache, slots, graphs
    return choose_quantization("auto", True, prequantized=prequantized, fits_bf16=fits)


def _score(engine: Engine, ids: list[int], folders: list) -> object:
    batched = engine.batched
    pinned = {r.adapter_name for r in engine.scheduler.active if r.adapter_name}
    names = []
    for folder in folders:
        name = None if folder is None else batched.slots.ensure(folder, pinned)
        pinned.add(name)
        names.append(name)
    batched.drop_stale_graphs()
    slots = [batched.slots.slot_of(n) for n in names]
    return batched.score(ids, slots)


_HOST = None  # ModelHost | RemoteHost
_HOST_LOCK = threading.Lock()


def new_host(max_adapters: int | None = None, engine_url: str | None = None):
    """A host configured as the app's: a RemoteHost when an engine URL is given (or
    FF_ENGINE_URL is set; FF_ENGINE_API_KEY is its key), else a ModelHost with FF_MAX_ADAPTERS
    slots unless given. Never a silent fallback: an unreachable URL fails at the first request."""
    url = engine_url if engine_url is not None else os.environ.get("FF_ENGINE_URL", "").strip()
    if url:
        from ff_lib.inference.remote import RemoteHost

        return RemoteHost(url, os.environ.get("FF_ENGINE_API_KEY") or None)
    if max_adapters is None:
        max_adapters = int(os.environ.get("FF_MAX_ADAPTERS", DEFAULT_MAX_ADAPTERS))
    return ModelHost(max_adapters=max_adapters)


def get_host():
    """The process-wide host (created on first use): the in-process ModelHost, or a RemoteHost
    when FF_ENGINE_URL names a vLLM server."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = new_host()
        return _HOST
