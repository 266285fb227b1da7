"""The forward passes of a Llama-family model over many rows: prefill, decode step, scoring.

Each row of a batch has its own KV-cache row, position and adapter slot. The base's own modules
do the base arithmetic (so NF4 layers work as they are); the weights of a bf16/fp32 base are
copied once per group (q/k/v and gate/up concatenated) into one tensor with AdapterSlots' A_all
rows after them (the modules keep views of the base rows, which are never written), so one GEMM
gives a group's base output and every slot's x @ A. Each row then adds its own slot's B (dense
ops with a 0/1 mask, or the lora_expand kernel in the CUDA decode step). On CUDA the decode step
is captured as a graph per (rows, KV length) bucket, with Triton kernels for rotary + cache write
+ split-KV attention in one launch (kernels.py), so attention reads what each row needs, and
its GEMMs of up to 16 rows are Triton GEMVs (gemv.py); prefill runs the same kernels."""

import logging
import threading
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ff_lib.errors import GenerationError
from ff_lib.inference import kernels
from ff_lib.inference.decode_step import DecodeSteps
from ff_lib.inference.gemv import MAX_ROWS, gemv
from ff_lib.inference.ops import EAGER_OPS, compiled_ops, env_switch, flash_gqa
from ff_lib.inference.slots import GROUPS, AdapterSlots

log = logging.getLogger(__name__)
PREFILL_CHUNK = 2048


def _without_cudnn_attention() -> None:
    """Turn cuDNN's attention off for the process (said once in the log): torch's default
    on Hopper, it builds a plan for every new sequence length, ~50 ms for each new prompt
    length and 0.6-1.2 s the first times (measured on the H200); SDPA then takes flash
    attention, or memory-efficient attention where a mask is given. A process-wide flag
    rather than a context around each prefill: torch keeps these flags global, and a context
    in one thread changes them under every other."""
    if torch.backends.cuda.cudnn_sdp_enabled():
        torch.backends.cuda.enable_cudnn_sdp(False)
        log.info(
            "cuDNN attention turned off for this process: prefill uses flash attention (cuDNN "
            "builds a plan for every new prompt length)."
        )


class RowLoRA(NamedTuple):
    """What `_project` needs to add each row's adapter, in one of three forms: `only`, one slot
    every row uses (a prompt's prefill: that slot's B alone, one matmul a module); `masks`,
    each row's 0/1 mask over every slot's A columns (dense ops, any mix of slots); or neither,
    the CUDA kernel reading `slot_ids` itself."""

    slot_ids: torch.Tensor | None
    masks: dict | None = None
    only: int | None = None


def unsupported_reason(lm) -> str | None:
    """Why the batched engine cannot run this model ('' / None when it can)."""
    inner = getattr(lm, "model", None)
    layers = getattr(inner, "layers", None)
    if inner is None or layers is None or not hasattr(inner, "rotary_emb"):
        return f"{type(lm).__name__} is not a Llama-family decoder"
    cfg = lm.config
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"{type(lm).__name__} uses the {cfg.hidden_act} activation"
    attn, mlp = layers[0].self_attn, layers[0].mlp
    for owner, names in (
        (attn, GROUPS["qkv"] + GROUPS["o"]),
        (mlp, GROUPS["gate_up"] + ("down_proj",)),
    ):
        if not all(hasattr(owner, n) for n in names):
            return f"{type(lm).__name__} has no {'/'.join(names)} projections"
    head_dim = attn.head_dim
    if abs(getattr(attn, "scaling", head_dim**-0.5) - head_dim**-0.5) > 1e-9:
        return f"{type(lm).__name__} scales attention by {attn.scaling}"
    window = (
        getattr(cfg, "sliding_window", None) if getattr(cfg, "use_sliding_window", True) else None
    )
    if window and window < getattr(cfg, "max_position_embeddings", 0):
        return f"{type(lm).__name__} uses sliding-window attention"
    return None


class BatchedLM(DecodeSteps):
    """A loaded causal LM driven row by row: KV cache rows, slots, graphs per bucket.

    Called from one thread at a time (the scheduler's worker, or a caller holding `lock`).
    """

    def __init__(
        self, lm, max_rows: int, max_len: int, max_slots: int, use_graphs: bool, compile_ops=None
    ):
        reason = unsupported_reason(lm)
        if reason:
            raise GenerationError(
                f"The engine cannot run this base: {reason}. Supported: Llama, Mistral, Qwen2/3 "
                "and other Llama-family decoders."
            )
        self.lm = lm
        self.lock = threading.RLock()
        cfg = lm.config
        inner = lm.model
        self.layers = list(inner.layers)
        embed = inner.embed_tokens.weight
        self.device, self.dtype = embed.device, embed.dtype
        self.compute_dtype = self.dtype
        attn = self.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.max_rows, self.max_len = max_rows, max_len
        self.use_graphs = use_graphs
        self.compiled = use_graphs if compile_ops is None else compile_ops
        self.ops = compiled_ops() if self.compiled else EAGER_OPS
        self.vocab = int(lm.get_output_embeddings().weight.shape[0])
        self._fuse_base()
        self.slots = AdapterSlots(
            self._group_dims(),
            len(self.layers),
            self.dtype,
            self.device,
            max_slots,
            a_storage=self._a_rows,
        )
        if self.device.type == "cuda":
            _without_cudnn_attention()
        group = self.n_heads // self.n_kv
        self.kernels = (
            use_graphs
            and kernels.available(self.device)
            and self.dtype in (torch.bfloat16, torch.float16)
            and kernels.attention_supported(self.head_dim, group)
        )
        self.gemv = self.kernels and env_switch("FF_GEMV")  # the step's GEMMs: see _linear
        self.prefill_ops = self._prefill_ops()
        self.fused_rope = self.kernels and not hasattr(attn, "q_norm")  # Qwen3 norms q/k first
        shape = (max_rows, self.n_kv, max_len, self.head_dim)
        self.k_cache = [
            torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers
        ]
        self.v_cache = [
            torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers
        ]
        self.key_pos = torch.arange(max_len, device=self.device)
        self._neg = torch.finfo(self.dtype).min
        self.cos, self.sin = self._rope_table(max_len)
        self._graphs: dict = {}  # (rows, kv, slots.version) -> (graph, inputs, logits)
        self._pool = None
        self.captures = 0

    # --- setup ---------------------------------------------------------------------------------
    def _prefill_ops(self) -> dict:
        """Prefill's element-wise chains: the decode step's Triton kernels where it has them (a
        512-token prefill was 1,517 launches, its host time the first token's wait)."""
        if not self.kernels:
            return EAGER_OPS
        return {**EAGER_OPS, "add_norm": kernels.add_rms_norm, "silu_mul": kernels.silu_mul}

    def _fuse_base(self) -> None:
        """Each group's plain Linear weights copied once into one tensor (see _a_rows)."""
        self.fused: list[dict] = []  # per layer: group -> (weight + A rows, bias or None, n)
        for i, layer in enumerate(self.layers):
            self.fused.append({})
            for group in GROUPS:
                mods = self._modules(layer, group)
                if all(type(m) is torch.nn.Linear for m in mods):  # NF4 layers answer alone
                    weight = torch.cat([m.weight.detach() for m in mods])
                    bias = None
                    if any(m.bias is not None for m in mods):
                        bias = torch.cat(
                            [
                                m.bias if m.bias is not None else weight.new_zeros(m.out_features)
                                for m in mods
                            ]
                        )
                    self._bind(i, group, weight, bias, weight.shape[0])

    @staticmethod
    def _modules(layer, group: str) -> list:
        owner = layer.self_attn if group in ("qkv", "o") else layer.mlp
        return [getattr(owner, n) for n in GROUPS[group]]

    def _bind(self, i: int, group: str, weight, bias, n: int) -> None:
        """Make `weight` (n base rows, then A rows) the group's one tensor; the modules take
        views of their base rows (the same values: nothing of the base is rewritten)."""
        start = 0
        with torch.no_grad():
            for m in self._modules(self.layers[i], group):
                end = start + m.out_features
                m.weight = torch.nn.Parameter(weight[start:end], requires_grad=False)
                if m.bias is not None:
                    m.bias = torch.nn.Parameter(bias[start:end], requires_grad=False)
                start = end
        self.fused[i][group] = (weight, bias, n)

    def _a_rows(self, i: int, group: str, k: int) -> torch.Tensor:
        """Storage for AdapterSlots' A_all of layer i's group: k zeroed rows appended to the
        group's base tensor (a new tensor; the base rows copied bit for bit), so one GEMM
        gives the base output and x @ A_all. Quantized groups get a tensor of their own."""
        found = self.fused[i].get(group)
        if found is None:
            fan_in = self._modules(self.layers[i], group)[0].in_features
            return torch.zeros(k, fan_in, dtype=self.dtype, device=self.device)
        old, old_bias, n = found
        weight = torch.zeros(n + k, old.shape[1], dtype=old.dtype, device=old.device)
        weight[:n] = old[:n]
        bias = None
        if old_bias is not None:
            bias = torch.zeros(n + k, dtype=old_bias.dtype, device=old_bias.device)
            bias[:n] = old_bias[:n]
        self._bind(i, group, weight, bias, n)
        return weight[n:]

    def _group_dims(self) -> dict:
        layer = self.layers[0]
        dims = {}
        for group, mods in GROUPS.items():
            owner = layer.self_attn if group in ("qkv", "o") else layer.mlp
            modules = [getattr(owner, n) for n in mods]
            dims[group] = (modules[0].in_features, [m.out_features for m in modules])
        return dims

    def _rope_table(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The model's own rotary module, once for every position (its values on each call).
        pos = torch.arange(n, device=self.device)[None]
        probe = torch.zeros(1, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            cos, sin = self.lm.model.rotary_emb(probe, pos)
        return cos[0], sin[0]

    # --- one layer -----------------------------------------------------------------------------
    def _project(self, i: int, group: str, x: torch.Tensor, lora) -> torch.Tensor:
        """Base output of a projection group (concatenated) plus each row's LoRA; `lora` is
        None (no row has an adapter) or a RowLoRA (one slot, masks, or the CUDA kernel)."""
        fused = self.fused[i].get(group)
        if fused is not None:
            weight, bias, n = fused
            if lora is None:
                return self._linear(x, weight[:n], None if bias is None else bias[:n])
            full = self._linear(x, weight, bias)
            out, xa = full[:, :n], full[:, n:]
        else:
            outs = [m(x) for m in self._modules(self.layers[i], group)]
            out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if lora is None:
                return out
            xa = F.linear(x, self.slots.A[i][group])
        return self._add_lora(i, group, out, xa, lora)

    def _linear(self, x, weight, bias) -> torch.Tensor:
        """F.linear, but up to 16 rows (the decode step's) through the Triton GEMVs: cuBLAS reads
        the 8B shape's o and down weights at 2.7 / 3.7 TB/s at 1-16 rows (gemv.py; FF_GEMV=0
        keeps cuBLAS; a weight whose rows are not contiguous goes to cuBLAS too)."""
        if self.gemv and x.shape[0] <= MAX_ROWS and weight.stride(1) == 1:
            return gemv(x, weight, bias)
        return F.linear(x, weight, bias)

    def _add_lora(self, i: int, group: str, out, xa, lora: RowLoRA) -> torch.Tensor:
        """out + each row's own slot's (x @ A) @ B, module by module."""
        b = self.slots.B[i][group]  # (slots, rank, out), pre-scaled
        widths = self.slots.dims[group][1]
        per_module = self.slots.capacity * self.slots.rank
        if lora.only is not None:  # one slot for every row: its columns of xa, its B, in place
            rank, start = self.slots.rank, 0
            for m, width in enumerate(widths):
                first = m * per_module + lora.only * rank
                out[:, start : start + width].addmm_(
                    xa[:, first : first + rank], b[lora.only, :, start : start + width]
                )
                start += width
            return out
        if lora.masks is None:  # CUDA decode: the kernel reads only the row's slot, in place
            kernels.lora_expand(out, xa, b, lora.slot_ids, self.slots.none_slot, widths)
            return out
        xa = xa * lora.masks[len(widths)]
        # In place, as above: a new tensor per module and their concatenation copied a joint
        # prefill's outputs twice (the same sums: addmm adds into a copy of `out` alike).
        start = 0
        for m, width in enumerate(widths):
            block = b[:, :, start : start + width].reshape(per_module, width)
            rows = xa[:, m * per_module : (m + 1) * per_module]
            out[:, start : start + width].addmm_(rows, block)
            start += width
        return out

    def _rotated(self, i: int, qkv, cos, sin, ops):
        """q, k, v (tokens, heads, head_dim) of a qkv output: q/k normed (Qwen3), rotated."""
        attn = self.layers[i].self_attn
        nq, nk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        tokens = qkv.shape[0]
        q = qkv[:, :nq].view(tokens, self.n_heads, self.head_dim)
        k = qkv[:, nq : nq + nk].view(tokens, self.n_kv, self.head_dim)
        v = qkv[:, nq + nk : nq + 2 * nk].view(tokens, self.n_kv, self.head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3: per-head norms before the rotation
            q = ops["norm"](q, attn.q_norm.weight, attn.q_norm.variance_epsilon)
            k = ops["norm"](k, attn.k_norm.weight, attn.k_norm.variance_epsilon)
        q, k = ops["rope"](q, k, cos[:, None], sin[:, None])
        return q, k, v

    def _layer(self, i: int, x, h, lora, attend, ops):
        """One decoder layer; `h` is x already normed by this layer's input norm; `attend(i,
        qkv)` gives the attention output (tokens, heads * head_dim). Returns (x after the
        layer, x normed by the next layer's input norm or the final norm)."""
        layer = self.layers[i]
        out = attend(i, self._project(i, "qkv", h, lora))
        norm = layer.post_attention_layernorm
        x, h = ops["add_norm"](
            x, self._project(i, "o", out, lora), norm.weight, norm.variance_epsilon
        )
        act = ops["silu_mul"](self._project(i, "gate_up", h, lora))
        following = self.layers[i + 1].input_layernorm if i + 1 < len(self.layers) else None
        norm = following or self.lm.model.norm
        return ops["add_norm"](
            x, self._project(i, "down", act, lora), norm.weight, norm.variance_epsilon
        )

    def _layers_forward(self, x, lora, attend, ops=EAGER_OPS) -> torch.Tensor:
        """All layers; the final-normed hidden states. `ops`: scoring's eager ops, prefill's
        (`prefill_ops`: Triton kernels on CUDA, never compiled: varying lengths would recompile),
        the decode step's compiled ones."""
        norm = self.layers[0].input_layernorm
        h = ops["norm"](x, norm.weight, norm.variance_epsilon)
        for i in range(len(self.layers)):
            x, h = self._layer(i, x, h, lora, attend, ops)
        return h

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        head = self.lm.get_output_embeddings()
        if type(head) is torch.nn.Linear:  # a quantized head answers alone
            return self._linear(h, head.weight, head.bias)
        return head(h)

    def _lora(self, slot_ids: torch.Tensor, kernel: bool = False) -> RowLoRA | None:
        """Each row's adapter for `_project`: masks for dense ops, or the slot ids for the CUDA
        kernel; None when no slot exists."""
        if not self.slots.capacity:
            return None
        if kernel:
            return RowLoRA(slot_ids)
        return RowLoRA(
            slot_ids, {n: m.index_select(0, slot_ids) for n, m in self.slots.masks.items()}
        )

    def _token_lora(self, slots: list[int], tokens: int) -> RowLoRA | None:
        """The adapters of prompts of `tokens` positions each, one slot per prompt: its B alone
        when every prompt has the same adapter, masks for a mix; None when none has one."""
        if not self._any_lora(slots):
            return None
        if len(set(slots)) == 1:
            return RowLoRA(None, only=slots[0])
        ids = torch.tensor(slots, dtype=torch.long, device=self.device)
        return self._lora(ids.repeat_interleave(tokens))

    def _sdpa(self, q, keys, values, **how) -> torch.Tensor:
        """Prefill/scoring attention of (batch, heads, tokens, D) queries: grouped KV heads as
        they are where flash runs (0.106 vs 0.155 ms a layer, 4 x 512 tokens, H200), else
        repeated for memory-efficient attention; flash takes causal bf16/fp16 passes only."""
        group = q.shape[1] // keys.shape[1]
        half = q.dtype in (torch.bfloat16, torch.float16)
        flash = "attn_mask" not in how and half and flash_gqa(self.device, q.shape[-1])
        if self.device.type == "cuda" and group > 1 and not flash:
            keys = keys.repeat_interleave(group, dim=1)
            values = values.repeat_interleave(group, dim=1)
        gqa = keys.shape[1] != q.shape[1]
        return F.scaled_dot_product_attention(q, keys, values, enable_gqa=gqa, **how)

    # --- prefill -------------------------------------------------------------------------------
    def prefill(self, row: int, ids: list[int], slot: int, start: int = 0) -> torch.Tensor:
        """Run `ids` (positions start..) for cache row `row`; float32 logits of the last one."""
        if start + len(ids) > self.max_len:
            raise GenerationError(
                f"Prompt of {start + len(ids)} tokens does not fit the engine's context of "
                f"{self.max_len} tokens."
            )
        with self.lock, torch.inference_mode():
            logits = None
            for offset in range(0, len(ids), PREFILL_CHUNK):
                chunk = ids[offset : offset + PREFILL_CHUNK]
                logits = self._prefill_chunk(row, chunk, slot, start + offset)
            return logits

    def _prefill_chunk(self, row: int, ids: list[int], slot: int, start: int) -> torch.Tensor:
        n = len(ids)
        end = start + n
        tok = torch.tensor(ids, dtype=torch.long, device=self.device)
        x = F.embedding(tok, self.lm.model.embed_tokens.weight)
        tables = self._rope_tables(start, n, 1)
        lora = self._token_lora([slot], n)
        if start:
            allowed = (
                self.key_pos[None, :end] <= torch.arange(start, end, device=self.device)[:, None]
            )
            attn_mask = torch.where(allowed, 0.0, self._neg).to(self.dtype)[None, None]

        def attend(i, qkv):
            q = self._rotate_into_cache(i, qkv, tables, slice(row, row + 1), start, n)
            keys = self.k_cache[i][row : row + 1, :, :end]
            values = self.v_cache[i][row : row + 1, :, :end]
            qh = q.transpose(0, 1)[None]
            if start:
                out = self._sdpa(qh, keys, values, attn_mask=attn_mask)
            else:
                out = self._sdpa(qh, keys, values, is_causal=True)
            return out[0].transpose(0, 1).reshape(n, -1)

        h = self._layers_forward(x, lora, attend, self.prefill_ops)
        return self._head(h[-1:]).float()[0]

    def _rope_tables(self, start: int, length: int, rows: int):
        """What a prefill's rotary reads, for `rows` prompts of `length` tokens from `start`:
        each token's position (the fused kernel looks the tables up itself), else the tables'
        rows."""
        if self.fused_rope:
            pos = self.key_pos[start : start + length]
            return pos.repeat(rows) if rows > 1 else pos
        cos, sin = self.cos[start : start + length], self.sin[start : start + length]
        return (cos.repeat(rows, 1), sin.repeat(rows, 1)) if rows > 1 else (cos, sin)

    def _rotate_into_cache(self, i: int, qkv, tables, rows: slice, start: int, length: int):
        """q (tokens, heads, D) of a prefill's qkv; its rotated keys and its values written into
        cache rows `rows` at positions start..start+length (`length` tokens a row): one Triton
        launch on CUDA, torch's rotary and two copies otherwise. `tables`: _rope_tables'."""
        if self.fused_rope:
            return kernels.rope_cache_write(
                qkv, self.cos, self.sin, tables, self.k_cache[i][rows], self.v_cache[i][rows],
                self.n_heads, self.n_kv, per_row=length,
            )  # fmt: skip
        q, k, v = self._rotated(i, qkv, *tables, EAGER_OPS)

        def heads(t):  # (rows, kv heads, tokens, D)
            return t.reshape(-1, length, t.shape[1], self.head_dim).transpose(1, 2)

        self.k_cache[i][rows, :, start : start + length] = heads(k)
        self.v_cache[i][rows, :, start : start + length] = heads(v)
        return q

    def prefill_many(self, first_row: int, prompts: list[list[int]], slots: list[int]):
        """Fresh prompts (positions 0..) into cache rows first_row.. in one padded forward;
        float32 logits (len(prompts), vocab) of each prompt's last token. Padding sits after
        each prompt, so causal attention keeps it out of every real position; the cache
        positions it fills lie past the row's length and are overwritten before being read."""
        n, longest = len(prompts), max(len(p) for p in prompts)
        if longest > self.max_len:
            raise GenerationError(
                f"Prompt of {longest} tokens does not fit the engine's context of "
                f"{self.max_len} tokens."
            )
        with self.lock, torch.inference_mode():
            padded = [p + [0] * (longest - len(p)) for p in prompts]
            tok = torch.tensor(padded, dtype=torch.long, device=self.device).view(-1)
            x = F.embedding(tok, self.lm.model.embed_tokens.weight)
            tables = self._rope_tables(0, longest, n)
            lora = self._token_lora(slots, longest)
            rows = slice(first_row, first_row + n)

            def attend(i, qkv):
                q = self._rotate_into_cache(i, qkv, tables, rows, 0, longest)
                keys = self.k_cache[i][rows, :, :longest]
                values = self.v_cache[i][rows, :, :longest]
                q = q.reshape(n, longest, -1, self.head_dim).transpose(1, 2)
                out = self._sdpa(q, keys, values, is_causal=True)
                return out.transpose(1, 2).reshape(n * longest, -1)

            h = self._layers_forward(x, lora, attend, self.prefill_ops)
            last = torch.tensor(
                [j * longest + len(p) - 1 for j, p in enumerate(prompts)], device=self.device
            )
            return self._head(h.index_select(0, last)).float()

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy a row's cache (its first `length` positions) to another row (compaction)."""
        with self.lock, torch.inference_mode():
            for cache in (*self.k_cache, *self.v_cache):
                cache[dst, :, :length] = cache[src, :, :length]

    # --- scoring -------------------------------------------------------------------------------
    def score(self, ids: list[int], slots: list[int]) -> torch.Tensor:
        """Teacher-forced float32 logits (len(slots), len(ids), vocab): one row per slot."""
        n, rows = len(ids), len(slots)
        if n > self.max_len:
            raise GenerationError(
                f"Text of {n} tokens is longer than the context ({self.max_len})."
            )
        with self.lock, torch.inference_mode():
            tok = torch.tensor(ids, dtype=torch.long, device=self.device).repeat(rows)
            x = F.embedding(tok, self.lm.model.embed_tokens.weight)
            cos, sin = self.cos[:n].repeat(rows, 1), self.sin[:n].repeat(rows, 1)
            lora = self._token_lora(slots, n)

            def attend(i, qkv):
                def heads(t):
                    return t.reshape(rows, n, -1, self.head_dim).transpose(1, 2)

                q, k, v = self._rotated(i, qkv, cos, sin, EAGER_OPS)
                out = self._sdpa(heads(q), heads(k), heads(v), is_causal=True)
                return out.transpose(1, 2).reshape(rows * n, -1)

            h = self._layers_forward(x, lora, attend)
            return self._head(h).float().view(rows, n, -1)
