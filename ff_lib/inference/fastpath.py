"""The fast decoder: our own decode loop with a static KV cache and, on CUDA, one captured graph.

Plain `generate` is host-bound at batch 1 (about 1,600 kernel launches per token on an 8B
Llama). Here one decode step is captured once as a CUDA graph and replayed, so a token costs
one launch. Adapters stay graph-compatible by being merged into the base weights in place
(bf16/fp32 weights keep their addresses, so a switch is a merge/unmerge, never a recapture).
Quantized bases (NF4) cannot merge in place: their LoRA runs live and each adapter gets its
own graph, captured on first use.

On the CPU the same loop runs without graphs, so the CPU tests exercise its logic.
"""

import functools
import inspect
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from ff_lib.errors import GenerationError

# Additive mask value for keys a query may not see; finfo.min rather than -inf so that a fully
# masked row (never produced here) could not turn into NaN.
MASKED = "min"


@dataclass(frozen=True)
class Sampling:
    """The knobs of one reply that the decode loop reads (a subset of GenerationSettings)."""

    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")

    @classmethod
    def from_settings(cls, settings) -> "Sampling":
        """From anything shaped like GenerationSettings."""
        return cls(
            temperature=float(settings.temperature),
            top_p=float(getattr(settings, "top_p", 1.0)),
            top_k=int(getattr(settings, "top_k", 0) or 0),
            repetition_penalty=float(getattr(settings, "repetition_penalty", 1.0)),
            seed=getattr(settings, "seed", None),
        )


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float):
    """HF's RepetitionPenaltyLogitsProcessor, with `seen` a (vocab,) bool mask instead of ids."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def sample(logits: torch.Tensor, s: Sampling, generator=None) -> torch.Tensor:
    """Next token (shape (1,)) from float32 logits (1, vocab); temperature, top-k, top-p as HF."""
    if s.temperature == 0:
        return logits.argmax(-1)
    logits = logits / s.temperature
    if s.top_k:
        kth = torch.topk(logits, min(s.top_k, logits.shape[-1])).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative <= 1 - s.top_p
        remove[..., -1:] = False  # keep at least the most likely token
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(remove, float("-inf")))
    probs = logits.softmax(-1)
    # Sample without a device sync: argmax(p / q) with q ~ Exp(1) draws i with probability p_i
    # (gpt-fast's trick), where torch.multinomial would validate its input on the host.
    noise = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / noise).argmax(-1)


class TextStream:
    """Token ids in, text pieces out, as soon as they form whole characters (not whole words)."""

    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.emitted = 0  # characters handed out

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

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


@dataclass
class DecodeStats:
    """Figures of the last reply the decoder produced."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    ttft_s: float = 0.0
    decode_s: float = 0.0
    graph: bool = False

    @property
    def tokens_per_s(self) -> float:
        """Decode rate after the first token."""
        if self.new_tokens < 2 or self.decode_s <= 0:
            return 0.0
        return (self.new_tokens - 1) / self.decode_s


def _cache_keyword(lm) -> str:
    # transformers 5.17 calls the cache `past_key_values`; 5.24 renamed it `cache` (and warns
    # on the old name on every call).
    params = inspect.signature(lm.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _lora_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _is_quantized(lm) -> bool:
    return bool(getattr(lm, "is_loaded_in_4bit", False) or getattr(lm, "is_loaded_in_8bit", False))


def _merge_factors(layer, name: str, sign: float):
    """(B * scaling * sign, A) of one vanilla LoRA, in the base weight's dtype."""
    weight = layer.get_base_layer().weight
    b = layer.lora_B[name].weight.to(weight.dtype) * (layer.scaling[name] * sign)
    return b, layer.lora_A[name].weight.to(weight.dtype)


def _switch_merged(layer, new: str | None) -> None:
    """Make `new` (None = nothing) the adapter merged into this layer's weight, in place.

    Unmerging the old delta and merging the new one is one addmm_: a single rounding of the
    weight per switch (peft's unmerge + merge rounds twice, and rounds each delta to bf16 first),
    so the base drifts less over many switches. The storage never moves, so captured graphs
    stay valid.
    """
    old = list(layer.merged_adapters)
    if old == ([new] if new else []):
        return
    weight = layer.get_base_layer().weight
    plain = (
        weight.dim() == 2
        and not getattr(layer, "lora_variant", None)
        and not any(getattr(layer, "lora_bias", {}).get(n, False) for n in [*old, new] if n)
        and all(n in layer.lora_A for n in [*old, new] if n)
    )
    if not plain:  # DoRA, LoRA bias, convolutions: peft's own merge
        if old:
            layer.unmerge()
        if new:
            layer.merge(adapter_names=[new])
        return
    factors = [_merge_factors(layer, n, -1.0) for n in old]
    if new:
        factors.append(_merge_factors(layer, new, 1.0))
    b = torch.cat([f[0] for f in factors], dim=1)
    a = torch.cat([f[1] for f in factors], dim=0)
    if layer.fan_in_fan_out:
        weight.data.addmm_(a.T, b.T)
    else:
        weight.data.addmm_(b, a)
    layer.merged_adapters[:] = [new] if new else []


# --- fused small ops ---------------------------------------------------------------------------
# Between the GEMMs an 8B Llama decode step launches ~30 tiny elementwise kernels per layer
# (RMSNorm alone is 7); in a graph each still costs a few microseconds. Compiling these three
# pure functions fuses them (one kernel each) in seconds, without tracing the model (which takes
# ~50 s and would bake peft's adapter state into the trace).


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Exactly LlamaRMSNorm.forward's arithmetic.
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(gate) * up


@functools.cache
def _compiled(name: str, fn=None):
    fns = {"rms_norm": _rms_norm, "silu_mul": _silu_mul}
    return torch.compile(fns.get(name, fn), dynamic=False, fullgraph=True)


def _norm_forward(self, hidden_states):
    return _compiled("rms_norm")(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self, x):
    return self.down_proj(_compiled("silu_mul")(self.gate_proj(x), self.up_proj(x)))


def _fusable(lm) -> tuple[list, list, types.ModuleType | None]:
    """(norm modules, MLP modules, modeling module with apply_rotary_pos_emb) of a Llama-like lm."""
    norms, mlps = [], []
    for m in lm.modules():
        name = type(m).__name__
        if name.endswith("RMSNorm") and hasattr(m, "variance_epsilon") and m.weight.dim() == 1:
            norms.append(m)
        elif (
            name.endswith("MLP")
            and all(hasattr(m, p) for p in ("gate_proj", "up_proj", "down_proj"))
            and isinstance(getattr(m, "act_fn", None), torch.nn.SiLU)
        ):
            mlps.append(m)
    module = sys.modules.get(type(lm).__module__)
    rope = module if callable(getattr(module, "apply_rotary_pos_emb", None)) else None
    return norms, mlps, rope


@contextmanager
def _fused_small_ops(lm):
    """While a graph is captured: norms, rotary and SiLU-gating as compiled kernels. The model
    is back to its own forwards afterwards (the plain path keeps transformers' arithmetic)."""
    norms, mlps, rope = _fusable(lm)
    original_rope = rope.apply_rotary_pos_emb if rope is not None else None
    for m in norms:
        m.forward = types.MethodType(_norm_forward, m)
    for m in mlps:
        m.forward = types.MethodType(_mlp_forward, m)
    if rope is not None:
        rope.apply_rotary_pos_emb = _compiled("rope", original_rope)
    try:
        yield
    finally:
        for m in [*norms, *mlps]:
            del m.forward
        if rope is not None:
            rope.apply_rotary_pos_emb = original_rope


def _precompile(lm, dtype, device) -> None:
    """Compile the fused ops on stand-in tensors shaped like a decode step's (no model access,
    so it can run while the plain path answers)."""
    cfg = lm.config
    norms, mlps, rope = _fusable(lm)
    hidden, heads, kv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    x = torch.zeros(1, 1, hidden, dtype=dtype, device=device)
    if norms:
        _compiled("rms_norm")(x, norms[0].weight, norms[0].variance_epsilon)
    if mlps:
        g = torch.zeros(1, 1, cfg.intermediate_size, dtype=dtype, device=device)
        _compiled("silu_mul")(g, g)
    if rope is not None:
        q = torch.zeros(1, 1, heads, head_dim, dtype=dtype, device=device).transpose(1, 2)
        k = torch.zeros(1, 1, kv, head_dim, dtype=dtype, device=device).transpose(1, 2)
        cos = torch.zeros(1, 1, head_dim, dtype=dtype, device=device)
        _compiled("rope", rope.apply_rotary_pos_emb)(q, k, cos, cos)


class FastDecoder:
    """A decode loop around one causal LM (plain or PeftModel); `generate` yields token ids.

    Not thread-safe across replies by itself beyond its own lock: the caller serializes
    generation on one base (the engine's lock) because the fast path and the plain path share
    the weights.
    """

    name = "fast"  # what Reply.decoder says when this decoder answered

    def __init__(
        self,
        model,
        max_len: int | None = None,
        use_graph: bool | None = None,
        compile_step: bool = False,
        fuse: bool | None = None,
    ):
        self.peft = model if hasattr(model, "get_base_model") else None
        self.lm = model.get_base_model() if self.peft is not None else model
        embed = self.lm.get_input_embeddings().weight
        self.device = embed.device
        self.dtype = embed.dtype
        cfg = self.lm.config
        self.vocab_size = int(self.lm.get_output_embeddings().weight.shape[0])
        self.max_len = int(max_len or min(getattr(cfg, "max_position_embeddings", 2048), 4096))
        self.use_graph = self.device.type == "cuda" if use_graph is None else use_graph
        if self.use_graph and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        # Merging in place keeps one graph valid for every adapter; 4-bit weights cannot.
        self.merge_adapters = self.peft is not None and not _is_quantized(self.lm)
        self.lock = threading.RLock()
        self._cache_kw = _cache_keyword(self.lm)
        from transformers import StaticCache

        self.cache = StaticCache(config=cfg, max_cache_len=self.max_len)
        self.key_pos = torch.arange(self.max_len, device=self.device)
        self.tok = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self.pos = torch.zeros((1,), dtype=torch.long, device=self.device)
        self._neg = torch.finfo(self.dtype).min
        self._graphs: dict = {}  # state key -> (CUDAGraph, static logits)
        self._pool = None
        self._step = torch.compile(self._decode_step, dynamic=False) if compile_step else None
        # Fusing needs Triton (CUDA); a fully compiled step has fused everything already.
        self.fuse = (self.use_graph and not compile_step) if fuse is None else fuse
        self._warming: threading.Thread | None = None
        self.warm_up_error: BaseException | None = None
        self.adapter: str | None = None  # what replies answer with now (None = the base)
        self.stats = DecodeStats()
        self._layers: list = []
        self._layers_for: tuple | None = None
        if self.peft is not None:
            self._lora_layers()
        if self.peft is not None:
            self.adapter = self._current_adapter()

    # --- adapters ------------------------------------------------------------------------
    def _current_adapter(self) -> str | None:
        if not self._layers:
            return None
        first = self._layers[0]
        if self.merge_adapters:
            return first.merged_adapters[-1] if first.merged else None
        if first.disable_adapters:
            return None
        active = first.active_adapters
        return active[0] if active else None

    def activate(self, adapter: str | None) -> float:
        """Answer with `adapter` (None = the base) from now on; returns the seconds it took."""
        if adapter is not None and self.peft is None:
            raise GenerationError("This model has no adapters loaded.")
        if self.peft is None:
            return 0.0
        t0 = time.perf_counter()
        with self.lock, torch.no_grad():
            layers = self._lora_layers()
            if self.merge_adapters:
                for layer in layers:
                    _switch_merged(layer, adapter if adapter in layer.lora_A else None)
            if adapter is not None:
                for layer in layers:
                    if adapter in layer.lora_A and layer.active_adapters != [adapter]:
                        layer.set_adapter(adapter, inference_mode=True)
                self.peft.base_model.active_adapter = adapter
                self.peft.active_adapter = adapter
            self.adapter = adapter
            self._sync()
        return time.perf_counter() - t0

    def _lora_layers(self) -> list:
        # Cached per set of adapters: peft's model-wide calls walk the whole module tree several
        # times, which costs more than the merge itself on a small model.
        names = tuple(getattr(self.peft, "peft_config", {}))
        if names != self._layers_for:
            self._layers, self._layers_for = _lora_layers(self.lm), names
        return self._layers

    def _state_context(self):
        # Base answers with unmerged weights must also skip the live LoRA branch.
        if self.peft is not None and self.adapter is None:
            return self.peft.disable_adapter()
        return nullcontext()

    def _graph_key(self):
        if self.merge_adapters or self.peft is None:
            return "weights"  # one graph: whatever is merged lives in the same storage
        if self.adapter is None:
            return None
        # A live adapter's graph points at its LoRA tensors; a reloaded adapter needs a new one.
        layer = self._layers[0]
        return (self.adapter, layer.lora_A[self.adapter].weight.data_ptr())

    # --- model steps ---------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _forward(self, input_ids, position_ids, mask) -> torch.Tensor:
        out = self.lm(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: self.cache},
        )
        return out.logits[:, -1, :]

    def _decode_step(self) -> torch.Tensor:
        # Device-side only (no .item(), no Python branch on values): safe to capture.
        mask = torch.where(self.key_pos <= self.pos, 0.0, self._neg).to(self.dtype)
        logits = self._forward(self.tok, self.pos.view(1, 1), mask.view(1, 1, 1, -1))
        self.pos.add_(1)
        return logits

    def _prefill(self, ids: list[int]) -> torch.Tensor:
        from transformers import DynamicCache
        from transformers.cache_utils import StaticLayer

        n = len(ids)
        layers = self.cache.layers
        if not all(type(layer) is StaticLayer for layer in layers):
            return self._prefill_static(ids)  # sliding windows etc.: let the cache place them
        if not layers[0].is_initialized:
            self._prefill_static(ids[:1])  # allocates the static tensors
        # The prompt goes through a dynamic cache with no mask, exactly as generate() runs it
        # (the causal flash kernel, not a masked one over the whole static length), then its
        # keys/values are copied into the static cache the graph reads.
        dynamic = DynamicCache(config=self.lm.config)
        inp = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.lm(input_ids=inp, use_cache=True, logits_to_keep=1, **{self._cache_kw: dynamic})
        for static, layer in zip(layers, dynamic.layers, strict=True):
            static.keys[:, :, :n].copy_(layer.keys)
            static.values[:, :, :n].copy_(layer.values)
            static.cumulative_length.fill_(n)
        self.pos.fill_(n)
        return out.logits[:, -1, :]

    def _prefill_static(self, ids: list[int]) -> torch.Tensor:
        n = len(ids)
        self.cache.reset()
        inp = torch.tensor([ids], dtype=torch.long, device=self.device)
        qpos = torch.arange(n, device=self.device)
        allowed = self.key_pos[None, :] <= qpos[:, None]
        mask = torch.where(allowed, 0.0, self._neg).to(self.dtype)[None, None]
        logits = self._forward(inp, qpos[None], mask)
        self.pos.fill_(n)
        return logits

    def _capture(self, key) -> None:
        with _fused_small_ops(self.lm) if self.fuse else nullcontext():
            self._capture_step(key)

    def _capture_step(self, key) -> None:
        step = self._step or self._decode_step
        self._prefill_static([0])
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up (and compile) outside the capture, as graphs require
                step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = step()
        self._pool = graph.pool()
        self._graphs[key] = (graph, logits)

    def warm_up(self) -> float:
        """Capture (and compile) the decode step for the current adapter; returns seconds."""
        t0 = time.perf_counter()
        with self.lock, torch.no_grad(), self._state_context():
            if self.use_graph and self._graph_key() not in self._graphs:
                self._capture(self._graph_key())
            elif not self.use_graph:
                self._prefill_static([0])
                self._decode_step()
            self._sync()
        return time.perf_counter() - t0

    @property
    def ready(self) -> bool:
        """True when a reply now would not pay for a capture."""
        return not self.use_graph or self._graph_key() in self._graphs

    def ready_for(self, adapter: str | None) -> bool:
        """True when a reply with `adapter` would not pay for a compile or a capture."""
        if not self.use_graph:
            return True
        if self.merge_adapters or self.peft is None:
            return "weights" in self._graphs
        if adapter is None:
            return None in self._graphs
        if adapter not in self._layers[0].lora_A:
            return False
        ptr = self._layers[0].lora_A[adapter].weight.data_ptr()
        return (adapter, ptr) in self._graphs

    def warm_up_in_background(self, lock, adapter: str | None) -> bool:
        """Compile and capture for `adapter` in a thread; the caller answers on its plain path
        meanwhile. `lock` (the host's) is taken only for the capture itself (a second or two).
        Returns False when a warm-up is already running."""
        if self._warming is not None and self._warming.is_alive():
            return False

        def work() -> None:
            try:
                if self.fuse:
                    _precompile(self.lm, self.dtype, self.device)  # the slow part, no lock
                with lock:
                    self.activate(adapter)
                    self.warm_up()
            except (RuntimeError, ValueError, GenerationError) as exc:
                # Kept for the status; the plain path goes on answering.
                self.warm_up_error = exc

        self._warming = threading.Thread(target=work, name="ff-fastpath-warm-up", daemon=True)
        self._warming.start()
        return True

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Wait for a background warm-up; True when none is running any more."""
        if self._warming is not None:
            self._warming.join(timeout)
            return not self._warming.is_alive()
        return True

    def _step_logits(self) -> torch.Tensor:
        if self.use_graph:
            graph, logits = self._graphs[self._graph_key()]
            graph.replay()
            return logits
        return (self._step or self._decode_step)()

    # --- the loop ------------------------------------------------------------------------
    def generate(
        self,
        input_ids: list[int],
        sampling: Sampling,
        max_new_tokens: int,
        eos_token_ids: tuple[int, ...] = (),
        stop: threading.Event | None = None,
    ) -> Iterator[int]:
        """Token ids of one reply, one at a time; closing the iterator stops the decode."""
        if not input_ids:
            raise GenerationError("Nothing to answer: the prompt has no tokens.")
        if len(input_ids) + max_new_tokens > self.max_len:
            raise GenerationError(
                f"Prompt ({len(input_ids)} tokens) plus {max_new_tokens} new tokens exceeds the "
                f"fast path's context of {self.max_len} tokens: shorten the conversation."
            )
        eos = set(eos_token_ids)
        cuda = self.device.type == "cuda"
        self.stats = DecodeStats(prompt_tokens=len(input_ids), graph=self.use_graph)
        with self.lock, torch.no_grad(), self._state_context():
            if self.use_graph and self._graph_key() not in self._graphs:
                self._capture(self._graph_key())
            generator = None
            if sampling.seed is not None:
                generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
            seen = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
            seen[torch.tensor(input_ids, device=self.device)] = True
            pending: deque = deque()

            def choose(logits: torch.Tensor) -> None:
                scores = apply_repetition_penalty(logits.float(), seen, sampling.repetition_penalty)
                nxt = sample(scores, sampling, generator)
                seen.index_fill_(0, nxt, True)
                self.tok.copy_(nxt.view(1, 1))
                # Read the token back later: the next step is queued before we wait for this one.
                host = torch.empty(1, dtype=torch.long, pin_memory=cuda)
                host.copy_(nxt, non_blocking=cuda)
                event = None
                if cuda:
                    event = torch.cuda.Event()
                    event.record()
                pending.append((host, event))

            t0 = time.perf_counter()
            choose(self._prefill(input_ids))
            queued, first_at = 1, None
            while pending:
                if queued < max_new_tokens:
                    choose(self._step_logits())
                    queued += 1
                host, event = pending.popleft()
                if event is not None:
                    event.synchronize()
                token = int(host[0])
                now = time.perf_counter()
                if first_at is None:
                    first_at = now
                    self.stats.ttft_s = now - t0
                self.stats.decode_s = now - first_at
                if token in eos or (stop is not None and stop.is_set()):
                    break
                self.stats.new_tokens += 1
                yield token
            pending.clear()


def cuda_decoder(model) -> FastDecoder | None:
    """ModelHost's default decoder factory: the fast path on CUDA, None (generate) elsewhere."""
    embed = model.get_input_embeddings().weight
    return FastDecoder(model) if embed.device.type == "cuda" else None
