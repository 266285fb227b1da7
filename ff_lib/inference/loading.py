"""The process-wide model host: one base per (id, quantization), adapters attached by name, one lock."""

import gc
import hashlib
import os
import pickle
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ff_lib.errors import (
    AdapterInvalid,
    BaseModelUnavailable,
    GenerationError,
    InvalidInput,
    QuantizationError,
)
from ff_lib.inference.adapters import WEIGHT_FILES, validate_adapter
from ff_lib.inference.generation import (
    STREAM_TIMEOUT_S,
    DecodeOutcome,
    DecodeRequest,
    GenerationSettings,
    Reply,
    finish_reason,
    hf_decode,
    reply_stats,
    stream_text,
)
from ff_lib.inference.prompts import build_prompt, normalize_messages
from ff_lib.inference.quiet import quiet_libraries

QUANTIZATIONS = ("auto", "none", "bf16", "nf4")
QUANTIZATION_LABELS = {"float32": "float32", "bf16": "bf16", "nf4": "4-bit NF4"}
DEFAULT_MAX_ADAPTERS = 8
# How long a reply waits for another session's reply to finish before giving up.
LOCK_TIMEOUT_S = 600.0
_TRUE = ("1", "true", "yes", "on")


def choose_quantization(requested: str, cuda: bool) -> str:
    """'float32' | 'bf16' | 'nf4' for a requested option, decided from CUDA availability."""
    if requested not in QUANTIZATIONS:
        raise InvalidInput(
            f"Unknown quantization {requested!r}: use one of {', '.join(QUANTIZATIONS)}."
        )
    if requested == "auto":
        return "nf4" if cuda else "float32"
    if requested == "none":
        return "float32"
    if requested == "nf4" and not cuda:
        raise QuantizationError(
            "4-bit NF4 needs a CUDA GPU and none is available here: "
            "choose quantization 'none' (float32 on CPU) or 'auto'."
        )
    return requested


def hub_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def locate_base(base_model: str) -> str:
    """A local folder (resolved) or a Hugging Face id; fails fast when it cannot be had offline."""
    if not base_model or not str(base_model).strip():
        raise InvalidInput("No base model: type a Hugging Face id or a local model folder.")
    base_model = str(base_model).strip()
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise BaseModelUnavailable(
                f"Base model folder {folder} has no config.json: pick a Hugging Face model folder."
            )
        return str(folder.resolve())
    if base_model.startswith(("/", "./", "../", "~")) or os.sep + os.sep in base_model:
        raise BaseModelUnavailable(f"Base model folder not found: {folder}")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(base_model, "config.json")
    except HFValidationError as exc:
        raise BaseModelUnavailable(
            f"Base model {base_model!r} is neither a local folder nor a valid Hugging Face id."
        ) from exc
    if not isinstance(cached, str) and hub_offline():
        raise BaseModelUnavailable(
            f"not available offline: {base_model} is not a local folder and not in the local "
            "Hugging Face cache (HF_HUB_OFFLINE is set). Download it first, or give a local folder."
        )
    return base_model


def adapter_name(adapter_dir: Path) -> str:
    """Stable name for an adapter: its resolved folder + weights mtime (a retrain reloads)."""
    adapter_dir = Path(adapter_dir).resolve()
    mtime = 0
    for name in WEIGHT_FILES:
        if (adapter_dir / name).is_file():
            mtime = (adapter_dir / name).stat().st_mtime_ns
            break
    digest = hashlib.sha1(f"{adapter_dir}|{mtime}".encode()).hexdigest()[:12]
    return f"a{digest}"


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}
_SHA256_LOCK = threading.Lock()


def adapter_weights_file(adapter_dir: Path) -> Path | None:
    """The adapter's weights file (safetensors first), None when it has none."""
    for name in WEIGHT_FILES:
        if (Path(adapter_dir) / name).is_file():
            return Path(adapter_dir) / name
    return None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached by (resolved path, mtime_ns, size): a rewrite is hashed again."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _SHA256_LOCK:
        if key in _SHA256_CACHE:
            return _SHA256_CACHE[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    with _SHA256_LOCK:
        _SHA256_CACHE[key] = digest.hexdigest()
    return _SHA256_CACHE[key]


def adapter_sha256(adapter_dir: Path) -> tuple[str | None, str | None]:
    """(weights file, its SHA-256) of an adapter folder; (None, None) when it has no weights."""
    weights = adapter_weights_file(adapter_dir)
    if weights is None:
        return None, None
    return str(weights.resolve()), file_sha256(weights)


@dataclass(frozen=True)
class LoadedInfo:
    """What is loaded now, for status lines."""

    base_model: str
    quantization: str  # "float32" | "bf16" | "4-bit NF4"
    device: str  # "CPU" | "cuda:0"
    adapters: tuple[str, ...]  # loaded adapter folders, least recently used first
    describe: str
    load_s: float


@dataclass(eq=False)
class LoadedModel:
    """One base model in memory, with the adapters attached to it."""

    base_model: str  # as the caller named it
    source: str  # resolved folder or HF id
    mode: str  # "float32" | "bf16" | "nf4"
    device: str  # "cpu" | "cuda:0"
    model: object
    tokenizer: object
    context_length: int | None
    load_s: float
    adapters: OrderedDict = field(default_factory=OrderedDict)  # name -> folder, LRU order
    fast: object = None  # the fast decoder built for `model` (see ModelHost.decoder)
    fast_for: object = None

    @property
    def quantization(self) -> str:
        return QUANTIZATION_LABELS[self.mode]

    def describe(self) -> str:
        where = "CPU" if self.device == "cpu" else self.device
        return f"{self.quantization} on {where}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.mode)

    @property
    def revision(self) -> str | None:
        """The hub commit the weights came from (a cached hub model), None for a local folder."""
        config = getattr(self.model, "config", None)
        return getattr(config, "_commit_hash", None) or None

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        ids = []
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (gen_eos, self.tokenizer.eos_token_id):
            for item in value if isinstance(value, list | tuple) else [value]:
                if item is not None and item not in ids:
                    ids.append(int(item))
        return tuple(ids)


class ReplyStream:
    """Iterator of text pieces for one reply; `reply` is set when it ends or is closed.

    `waiting` is True while this reply waits for another session's reply to finish;
    `on_wait()` (if given) is called once, before blocking, so a UI can say so.
    """

    def __init__(self, host: "ModelHost", job: dict, on_wait: Callable[[], None] | None):
        self.host = host
        self.waiting = False
        self.on_wait = on_wait
        self.reply: Reply | None = None
        self._pieces = host._reply_pieces(self, **job)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop generating (within one token) and join the worker thread."""
        self._pieces.close()

    def text(self) -> str:
        """Consume the whole stream; the reply's text."""
        for _ in self:
            pass
        return self.reply.text if self.reply else ""


class ModelHost:
    """Holds at most one base model and its adapters; serializes generation with one lock.

    `decoder` is the seam for a faster decode loop: None uses transformers generate(); else a
    factory `decoder(model) -> obj` whose obj has `activate(adapter_name | None)` and
    `generate(input_ids, sampling, max_new_tokens, eos_token_ids, stop) -> Iterator[int]`
    (ff_lib.inference.fastpath.FastDecoder fits). It is rebuilt whenever the model object changes.
    """

    def __init__(
        self,
        max_adapters: int = DEFAULT_MAX_ADAPTERS,
        *,
        trust_remote_code: bool = False,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
        stream_timeout_s: float = STREAM_TIMEOUT_S,
    ):
        if max_adapters < 1:
            raise InvalidInput("max_adapters must be at least 1.")
        self.max_adapters = max_adapters
        self.trust_remote_code = trust_remote_code
        self.lock_timeout_s = lock_timeout_s
        self.stream_timeout_s = stream_timeout_s
        self.lock = threading.Lock()  # held while a base loads and for a whole reply
        self.decoder = None
        self.base_loads = 0
        self.adapter_loads = 0
        self.last_adapter_switch_s: float | None = None
        self._loaded: LoadedModel | None = None

    # --- base model ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a reply (or a load) holds the model now."""
        return self.lock.locked()

    def load_base(self, base_model: str, quantization: str = "auto") -> LoadedModel:
        """The loaded base for (base_model, quantization); loads it and releases another."""
        with self.lock:
            return self._load_base_locked(base_model, quantization)

    def info(self) -> LoadedInfo | None:
        loaded = self._loaded
        if loaded is None:
            return None
        return LoadedInfo(
            base_model=loaded.base_model,
            quantization=loaded.quantization,
            device="CPU" if loaded.device == "cpu" else loaded.device,
            adapters=tuple(loaded.adapters.values()),
            describe=loaded.describe(),
            load_s=round(loaded.load_s, 3),
        )

    def release(self) -> None:
        """Drop the loaded base and its adapters, freeing memory."""
        with self.lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._loaded is None:
            return
        self._loaded = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _load_base_locked(self, base_model: str, quantization: str) -> LoadedModel:
        import torch

        mode = choose_quantization(quantization, torch.cuda.is_available())
        source = locate_base(base_model)
        if self._loaded is not None and self._loaded.key == (source, mode):
            return self._loaded
        self._release_locked()
        started = time.perf_counter()
        model, tokenizer, device = self._from_pretrained(base_model, source, mode)
        config = getattr(model.config, "text_config", None) or model.config
        loaded = LoadedModel(
            base_model=str(base_model),
            source=source,
            mode=mode,
            device=device,
            model=model,
            tokenizer=tokenizer,
            context_length=getattr(config, "max_position_embeddings", None),
            load_s=time.perf_counter() - started,
        )
        self._loaded = loaded
        self.base_loads += 1
        return loaded

    def _from_pretrained(self, base_model: str, source: str, mode: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cuda = torch.cuda.is_available()
        device = "cuda:0" if cuda else "cpu"
        kwargs: dict = {"trust_remote_code": self.trust_remote_code}
        if mode == "nf4":
            try:
                import bitsandbytes  # noqa: F401
                from transformers import BitsAndBytesConfig
            except ImportError as exc:
                raise QuantizationError(
                    f"4-bit NF4 needs bitsandbytes, which failed: {exc}"
                ) from exc
            kwargs.update(
                dtype=torch.bfloat16,
                device_map={"": 0},
                quantization_config=BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_compute_dtype=torch.bfloat16,
                    bnb_4bit_use_double_quant=True,
                ),
            )
        else:
            kwargs["dtype"] = torch.bfloat16 if mode == "bf16" else torch.float32
        try:
            with quiet_libraries():
                tokenizer = AutoTokenizer.from_pretrained(
                    source, trust_remote_code=self.trust_remote_code
                )
                model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise BaseModelUnavailable(
                f"Base model {base_model} could not be loaded: {exc}"
            ) from exc
        except (RuntimeError, ValueError, ImportError) as exc:
            if mode == "nf4":
                raise QuantizationError(
                    f"Loading {base_model} in 4-bit NF4 failed: {exc}. "
                    "Choose quantization 'bf16' or 'none' instead."
                ) from exc
            raise BaseModelUnavailable(
                f"Base model {base_model} could not be loaded: {exc}"
            ) from exc
        if mode != "nf4":
            model.to(device)
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer, device

    # --- adapters -----------------------------------------------------------------------------
    def _select_adapter_locked(self, loaded: LoadedModel, adapter_dir: Path | None) -> str | None:
        """Make `adapter_dir` the active adapter (None = the base); its name."""
        if adapter_dir is None:
            return None
        from peft import PeftModel

        started = time.perf_counter()
        folder = str(Path(adapter_dir).resolve())
        name = adapter_name(Path(folder))
        if name in loaded.adapters:
            loaded.adapters.move_to_end(name)
        else:
            if loaded.fast is not None:
                loaded.fast.activate(None)  # merged weights must be clean before peft edits
            try:
                if isinstance(loaded.model, PeftModel):
                    loaded.model.load_adapter(folder, adapter_name=name, is_trainable=False)
                else:
                    with quiet_libraries():
                        loaded.model = PeftModel.from_pretrained(
                            loaded.model, folder, adapter_name=name, is_trainable=False
                        )
            # UnpicklingError: a .bin whose pickle asks for code; torch's weights_only load
            # refuses it before anything runs, and the user sees why.
            except (RuntimeError, ValueError, KeyError, OSError, pickle.UnpicklingError) as exc:
                raise AdapterInvalid(
                    f"Adapter {folder} could not be loaded on {loaded.base_model}: {exc}"
                ) from exc
            loaded.model.eval()
            loaded.adapters[name] = folder
            self.adapter_loads += 1
        if getattr(loaded.model, "active_adapter", None) != name:
            # peft's set_adapter unmerges every layer, even for the adapter already merged:
            # with a fast decoder that would cost an unmerge + merge on every reply.
            loaded.model.set_adapter(name)
        # A retrained adapter in the same folder replaces its old version; then the LRU bound.
        stale = [n for n, f in loaded.adapters.items() if f == folder and n != name]
        while len(loaded.adapters) - len(stale) > self.max_adapters:
            stale.append(next(n for n in loaded.adapters if n != name and n not in stale))
        for old in stale:
            loaded.model.delete_adapter(old)
            del loaded.adapters[old]
        self.last_adapter_switch_s = time.perf_counter() - started
        return name

    def _decoder_locked(self, loaded: LoadedModel):
        if self.decoder is None:
            return None
        if loaded.fast is None or loaded.fast_for is not loaded.model:
            loaded.fast = self.decoder(loaded.model)
            loaded.fast_for = loaded.model
        return loaded.fast

    # --- replies ------------------------------------------------------------------------------
    def stream_reply(
        self,
        base_model: str,
        messages: list[dict],
        settings: GenerationSettings,
        adapter_dir: Path | None,
        quantization: str = "auto",
        *,
        on_wait: Callable[[], None] | None = None,
    ) -> ReplyStream:
        """Stream the answer to the last user turn; the prompt and adapter are checked now.

        Raises EmptyPrompt / InvalidInput / AdapterInvalid at once; loading, generation and
        waiting for the model happen as the stream is read.
        """
        if not isinstance(settings, GenerationSettings):
            raise InvalidInput("settings must be a GenerationSettings.")
        normalize_messages(messages, settings.system_prompt)
        if adapter_dir is not None:
            check = validate_adapter(adapter_dir, base_model=base_model).raise_if_invalid()
            adapter_dir = Path(check.adapter_dir)
        if not base_model:
            raise InvalidInput("No base model: type a Hugging Face id or a local model folder.")
        job = {
            "base_model": str(base_model),
            "messages": [dict(m) for m in messages],
            "settings": settings,
            "adapter_dir": adapter_dir,
            "quantization": quantization,
        }
        return ReplyStream(self, job, on_wait)

    def generate(self, *args, **kwargs) -> Reply:
        """stream_reply, read to the end; the Reply."""
        stream = self.stream_reply(*args, **kwargs)
        stream.text()
        return stream.reply

    @contextmanager
    def holding(
        self, base_model: str, adapter_dir: Path | None, quantization: str = "auto"
    ) -> Iterator[tuple[LoadedModel, str | None]]:
        """Hold the model lock with `adapter_dir` attached and active: (loaded, adapter name).

        For work that needs raw forward passes (adapter on vs off): no other session's reply
        interleaves. Adapters are live (a fast decoder's merged weights are undone first), so
        `loaded.model.disable_adapter()` gives the bare base.
        """
        if adapter_dir is not None:
            check = validate_adapter(adapter_dir, base_model=base_model).raise_if_invalid()
            adapter_dir = Path(check.adapter_dir)
        if not self.lock.acquire(timeout=self.lock_timeout_s):
            raise GenerationError(
                f"The model stayed busy with another reply for {self.lock_timeout_s:.0f} s: "
                "try again."
            )
        try:
            loaded = self._load_base_locked(base_model, quantization)
            name = self._select_adapter_locked(loaded, adapter_dir)
            if loaded.fast is not None:
                loaded.fast.activate(None)
            yield loaded, name
        finally:
            self.lock.release()

    def _acquire(self, stream: ReplyStream) -> None:
        if self.lock.acquire(blocking=False):
            return
        stream.waiting = True
        if stream.on_wait is not None:
            stream.on_wait()
        acquired = self.lock.acquire(timeout=self.lock_timeout_s)
        stream.waiting = False
        if not acquired:
            raise GenerationError(
                f"The model stayed busy with another reply for {self.lock_timeout_s:.0f} s: "
                "try again."
            )

    def _reply_pieces(self, stream, base_model, messages, settings, adapter_dir, quantization):
        self._acquire(stream)
        try:
            loaded = self._load_base_locked(base_model, quantization)
            name = self._select_adapter_locked(loaded, adapter_dir)
            built = build_prompt(
                loaded.tokenizer,
                messages,
                system_prompt=settings.system_prompt,
                context_length=loaded.context_length,
                max_new_tokens=settings.max_new_tokens,
            )
            seed = settings.seed
            if seed is None and settings.sampling:
                seed = random.SystemRandom().randrange(2**31)
            req = DecodeRequest(
                input_ids=built.input_ids,
                settings=settings,
                seed=seed,
                eos_token_ids=loaded.eos_token_ids,
                pad_token_id=loaded.tokenizer.pad_token_id,
                adapter_name=name,
                max_new_tokens=built.max_new_tokens or settings.max_new_tokens,
            )
            weights, sha256 = (None, None) if adapter_dir is None else adapter_sha256(adapter_dir)
            fast = self._decoder_locked(loaded)
            if fast is not None and not getattr(fast, "ready_for", lambda _: True)(name):
                # Never make the user wait for a compile: this reply takes the plain path while
                # the fast path compiles (and captures, under this lock, between replies).
                fast.warm_up_in_background(self.lock, name)
                fast = None
            decode = self._fast_decode(fast) if fast is not None else self._hf_decode(loaded)
            outcome = DecodeOutcome()
            pieces: list[str] = []

            def finish() -> None:
                stream.reply = Reply(
                    text="".join(pieces),
                    stats=reply_stats(len(built.input_ids), outcome),
                    adapter=None if adapter_dir is None else str(adapter_dir),
                    adapter_name=name,
                    base_model=base_model,
                    quantization=loaded.quantization,
                    describe=loaded.describe(),
                    settings=settings.as_dict(),
                    seed=seed,
                    prompt_text=built.text,
                    template=built.template,
                    dropped_turns=built.dropped_turns,
                    truncated_tokens=built.truncated_tokens,
                    max_new_tokens=req.max_new_tokens,
                    stopped=outcome.stopped,
                    finish_reason=finish_reason(outcome, req.max_new_tokens),
                    decoder="generate" if fast is None else getattr(fast, "name", "fast"),
                    adapter_weights=weights,
                    adapter_sha256=sha256,
                    base_source=loaded.source,
                    base_revision=loaded.revision,
                )

            text = stream_text(
                decode, req, loaded.tokenizer, outcome, timeout_s=self.stream_timeout_s
            )
            try:
                for piece in text:
                    pieces.append(piece)
                    yield piece
            except GeneratorExit:
                text.close()  # joins the worker before the lock is released
                outcome.stopped = True
                finish()
                raise
            finish()
        finally:
            self.lock.release()

    def _hf_decode(self, loaded: LoadedModel):
        from peft import PeftModel

        model = loaded.model

        def decode(req: DecodeRequest) -> None:
            # Base answers on a model with adapters: switch them off for this reply only.
            base_only = req.adapter_name is None and isinstance(model, PeftModel)
            with model.disable_adapter() if base_only else nullcontext():
                hf_decode(model, req)

        return decode

    @staticmethod
    def _fast_decode(fast):
        def decode(req: DecodeRequest) -> None:
            import dataclasses

            import torch

            from ff_lib.inference.fastpath import Sampling

            fast.activate(req.adapter_name)
            sampling = Sampling.from_settings(dataclasses.replace(req.settings, seed=req.seed))
            req.streamer.put(torch.tensor(req.input_ids))  # the prompt, skipped by the streamer
            tokens = fast.generate(
                req.input_ids,
                sampling,
                req.max_new_tokens,
                eos_token_ids=req.eos_token_ids,
                stop=req.stop,
            )
            for token in tokens:
                req.streamer.put(torch.tensor([token]))

        return decode


def _default_decoder(model):
    """The fast decoder on CUDA (where plain generate is host-bound); None keeps generate()."""
    from ff_lib.inference.fastpath import cuda_decoder

    return cuda_decoder(model)


_HOST: ModelHost | None = None
_HOST_LOCK = threading.Lock()


def get_host() -> ModelHost:
    """The process-wide ModelHost (created on first use)."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = ModelHost()
            _HOST.decoder = _default_decoder
        return _HOST
