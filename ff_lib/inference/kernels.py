"""Triton kernels of the CUDA decode step: fewer, fused launches where torch's ops take many.

- `rope_cache_write`: rotary on q and k of every token plus the new keys/values written into
  the KV cache at their positions (one launch instead of rotary, two index_puts, index_selects);
  the prefill's.
- `decode_attention`: split-KV attention of one new query per row against its cache row, GQA
  heads sharing their KV head's reads (flash-decoding: the key range is cut into splits that run
  in parallel, then combined by log-sum-exp), reading only the positions the row has;
  `rope_decode_attention` rotates the step's q and k and writes the new key/value in the same
  launch (the decode step's, Llama-family models without per-head q/k norms).
- `silu_mul`: SiLU gating of a gate/up output in one launch (the prefill's).
- `lora_expand`: each row's LoRA up-projection added into the base output, from the row's own
  slot only (Punica's "expand"): B is stored per module, not block-diagonal.
- `add_rms_norm`: the residual add and the next RMSNorm, each row in one pass.

Each runs on CUDA tensors; the tests run them through Triton's interpreter on CPU
(TRITON_INTERPRET=1, tests/test_kernels.py) against the torch arithmetic they replace.
`available()` says whether the engine uses them on a device (CUDA only).
"""

import math

import torch

from ff_lib.inference.ops import env_switch

try:  # Triton ships with torch's CUDA builds; the CPU builds have none (eager ops then)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on machines without Triton
    triton = None

SPLIT_BLOCK = 64  # keys per iteration of the attention kernel
TARGET_PROGRAMS = 264  # about two programs per SM on an H100/H200
COMBINE_SPLITS = 16  # see combine_width
ROPE_HEADS = 8  # heads of one token a rope_cache_write program
ATTENTION_LAUNCH = {"num_warps": 4, "num_stages": 3}  # Triton's defaults (attention_sweep.py)
# bf16/fp16 caches: _attend_cached_keys' DOTS. 2 (the cache's dtype in both dots, as flash
# attention) against 0 (float32 dots) on the H200, 8B shape, a layer: 8 rows at 576 keys 13.4 ->
# 11.3 us, 16 rows 19.8 -> 17.8, 8 rows at 4,000 keys 52.6 -> 39.5; outputs within one bf16 ulp.
# p is rounded against its split's running max and the splits follow the row count, so a bf16
# row alone and in a batch may differ by that ulp (with 0, by a tf32 one); float32 is exact.
ATTENTION_DOTS = 2


def available(device) -> bool:
    """Whether the decode step uses these kernels on `device` (FF_KERNELS=0: never)."""
    if not env_switch("FF_KERNELS") or triton is None:
        return False
    return torch.device(device).type == "cuda"


def attention_supported(head_dim: int, group: int) -> bool:
    """Head sizes the attention kernel is written for (powers of two, up to 16 query heads per
    KV head); other models use torch's attention."""
    return head_dim in (64, 128, 256) and group <= 16


if triton is not None:
    # A prefill's positions are a slice of the engine's position table (any alignment) and
    # `per_row` is its prompt length: neither is specialized, so every prompt shares one kernel.
    @triton.jit(do_not_specialize=["per_row"], do_not_specialize_on_alignment=["pos_ptr"])
    def _rope_cache_kernel(
        qkv, qkv_stride, cos, sin, pos_ptr, q_out, k_cache, v_cache,
        cache_row, cache_head, n_heads, n_kv, per_row, D: tl.constexpr, HEADS: tl.constexpr,
    ):  # fmt: skip
        # HEADS consecutive heads of one token (q heads, then k heads; a program of one head
        # of 128 values ran a 2,048-token prefill's layer at 1 TB/s).
        row = tl.program_id(0)  # a token: of cache row row // per_row
        head = tl.program_id(1) * HEADS + tl.arange(0, HEADS)[:, None]
        pos = tl.load(pos_ptr + row)
        d = tl.arange(0, D)
        c, s, partner, sign = _rotation(cos, sin, pos, D)
        is_q, is_k = head < n_heads, (head >= n_heads) & (head < n_heads + n_kv)
        base = qkv + row * qkv_stride + head * D  # q heads, then k heads: consecutive columns
        real = is_q | is_k
        x = tl.load(base + d[None, :], mask=real, other=0.0).to(tl.float32)
        xp = tl.load(base + partner[None, :], mask=real, other=0.0).to(tl.float32)
        rotated = x * c[None, :] + sign[None, :] * xp * s[None, :]
        tl.store(
            q_out + (row * n_heads + head) * D + d[None, :],
            rotated.to(q_out.dtype.element_ty),
            mask=is_q,
        )
        kh = head - n_heads
        at = (row // per_row) * cache_row + kh * cache_head + pos * D + d[None, :]
        tl.store(k_cache + at, rotated.to(k_cache.dtype.element_ty), mask=is_k)
        v = tl.load(qkv + row * qkv_stride + (n_heads + n_kv + kh) * D + d[None, :], mask=is_k)
        tl.store(v_cache + at, v, mask=is_k)

    @triton.jit
    def _rotation(cos, sin, pos, D: tl.constexpr):
        """Rotary tables at `pos` (float32), and each dimension's rotate-half partner and sign."""
        d = tl.arange(0, D)
        partner = tl.where(d < D // 2, d + D // 2, d - D // 2)
        sign = tl.where(d < D // 2, -1.0, 1.0)
        c = tl.load(cos + pos * D + d).to(tl.float32)
        s = tl.load(sin + pos * D + d).to(tl.float32)
        return c, s, partner, sign

    @triton.jit
    def _attend_new_key(
        qkv_row, qb, m, lsum, acc, k_cache, v_cache, at, c, s, partner, sign, k_head, v_head,
        scale_log2, D: tl.constexpr,
    ):  # fmt: skip
        """Rotate the row's new key (its head's columns start at `k_head`), write it and the
        value (`v_head`) into the caches at `at`, and fold them into the online softmax from
        registers, rounded as cached ones: (m, lsum, acc)."""
        d = tl.arange(0, D)
        kx = tl.load(qkv_row + k_head + d).to(tl.float32)
        kp = tl.load(qkv_row + k_head + partner).to(tl.float32)
        key = (kx * c + sign * kp * s).to(k_cache.dtype.element_ty)
        value = tl.load(qkv_row + v_head + d)
        tl.store(k_cache + at + d, key)
        tl.store(v_cache + at + d, value)
        score = tl.sum(qb * key.to(tl.float32)[None, :], 1) * scale_log2
        m_new = tl.maximum(m, score)
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(score - m_new)
        acc = acc * alpha[:, None] + p[:, None] * value.to(tl.float32)[None, :]
        return m_new, lsum * alpha + p, acc

    @triton.jit
    def _attend_cached_keys(
        qb, k_cache, v_cache, kv_base, start, end, scale_log2,
        BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr, PRECISION: tl.constexpr,
        DOTS: tl.constexpr,
    ):  # fmt: skip
        """Online softmax of the queries `qb` (BLOCK_H, D) over cached keys start..end-1 of one
        cache row's KV head (at `kv_base`): (running max, sum, weighted values), log2 scale.
        DOTS 1: q.k in the cache's dtype (qb holds values of that dtype: the same products);
        2: p.v too (p rounded to it, as flash attention does)."""
        d = tl.arange(0, D)
        n = tl.arange(0, BLOCK_N)
        m = tl.full([BLOCK_H], -1.0e30, tl.float32)
        lsum = tl.zeros([BLOCK_H], tl.float32)
        acc = tl.zeros([BLOCK_H, D], tl.float32)
        for first in range(start, end, BLOCK_N):
            keys = first + n
            kmask = keys < end
            at = kv_base + keys[:, None] * D + d[None, :]
            kb = tl.load(k_cache + at, mask=kmask[:, None], other=0.0)
            if DOTS >= 1:
                scores = tl.dot(qb.to(kb.dtype), tl.trans(kb)) * scale_log2
            else:
                kf = kb.to(tl.float32)
                scores = tl.dot(qb, tl.trans(kf), input_precision=PRECISION) * scale_log2
            scores = tl.where(kmask[None, :], scores, -1.0e30)
            m_new = tl.maximum(m, tl.max(scores, 1))
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(scores - m_new[:, None])
            lsum = lsum * alpha + tl.sum(p, 1)
            vb = tl.load(v_cache + at, mask=kmask[:, None], other=0.0)
            if DOTS >= 2:
                acc = acc * alpha[:, None] + tl.dot(p.to(vb.dtype), vb)
            else:
                pv = tl.dot(p, vb.to(tl.float32), input_precision=PRECISION)
                acc = acc * alpha[:, None] + pv
            m = m_new
        return m, lsum, acc

    # Triton compiles a variant for each int argument equal to 1 or a multiple of 16: the
    # arguments that change between KV buckets, row counts and slot layouts are kept out of
    # that, so a new bucket's graph capture compiles nothing (splits going from 8 to 16 cost
    # the first reply's warm-up 1.05 s on the H200).
    @triton.jit(do_not_specialize=["splits"])
    def _attention_split_kernel(
        src, src_stride, cos, sin, k_cache, v_cache, lengths, part_acc, part_ml,
        cache_row, cache_head, n_heads, n_kv, splits, split_len, scale_log2,
        GROUP: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
        PRECISION: tl.constexpr, ROPE: tl.constexpr, DOTS: tl.constexpr,
    ):  # fmt: skip
        # One split of a row's keys for one KV head's query group; `src`: each row's queries (q
        # heads first). ROPE: `src` is the step's qkv, the queries are rotated here (rounded as
        # stored), and the split holding the new position writes its key and value and attends
        # to them from registers. bf16/fp16 caches: DOTS (ATTENTION_DOTS); float32 caches ask
        # for IEEE float32 dots.
        row = tl.program_id(0)
        kvh = tl.program_id(1)
        split = tl.program_id(2)
        length = tl.load(lengths + row)
        start = split * split_len
        h = tl.arange(0, BLOCK_H)
        d = tl.arange(0, D)
        heads = kvh * GROUP + h
        hmask = h < GROUP
        q_at = src + row * src_stride + heads[:, None] * D
        qb = tl.load(q_at + d[None, :], mask=hmask[:, None], other=0.0).to(tl.float32)
        end = tl.minimum(start + split_len, length)
        if ROPE:
            pos = length - 1
            end = tl.minimum(start + split_len, pos)  # the new key is attended from registers
            c, s, partner, sign = _rotation(cos, sin, pos, D)
            qp = tl.load(q_at + partner[None, :], mask=hmask[:, None], other=0.0).to(tl.float32)
            qb = qb * c[None, :] + sign[None, :] * qp * s[None, :]
            qb = qb.to(src.dtype.element_ty).to(tl.float32)
        kv_base = row * cache_row + kvh * cache_head
        m, lsum, acc = _attend_cached_keys(
            qb, k_cache, v_cache, kv_base, start, end, scale_log2, BLOCK_H, BLOCK_N, D, PRECISION,
            DOTS,
        )  # fmt: skip
        if ROPE:  # noqa: SIM102 - a compile-time branch (pos exists only with ROPE)
            if (start <= pos) & (pos < start + split_len):
                m, lsum, acc = _attend_new_key(
                    src + row * src_stride, qb, m, lsum, acc, k_cache, v_cache,
                    kv_base + pos * D, c, s, partner, sign, (n_heads + kvh) * D,
                    (n_heads + n_kv + kvh) * D, scale_log2, D,
                )  # fmt: skip
        out = ((row * n_heads + heads) * splits + split)[:, None]
        tl.store(part_acc + out * D + d[None, :], acc, mask=hmask[:, None])
        ml = ((row * n_heads + heads) * splits + split) * 2
        tl.store(part_ml + ml, m, mask=hmask)
        tl.store(part_ml + ml + 1, lsum, mask=hmask)

    @triton.jit(do_not_specialize=["splits"])
    def _attention_combine_kernel(
        part_acc, part_ml, out, splits, n_heads, SPLITS: tl.constexpr, D: tl.constexpr
    ):
        row = tl.program_id(0)
        head = tl.program_id(1)
        s = tl.arange(0, SPLITS)
        d = tl.arange(0, D)
        smask = s < splits
        base = (row * n_heads + head) * splits + s
        m = tl.load(part_ml + base * 2, mask=smask, other=-1.0e30)
        lsum = tl.load(part_ml + base * 2 + 1, mask=smask, other=0.0)
        top = tl.max(m, 0)
        w = tl.exp2(m - top)
        acc = tl.load(part_acc + base[:, None] * D + d[None, :], mask=smask[:, None], other=0.0)
        total = tl.sum(acc * w[:, None], 0) / tl.sum(lsum * w, 0)
        tl.store(out + (row * n_heads + head) * D + d, total.to(out.dtype.element_ty))

    @triton.jit
    def _add_rms_norm_kernel(
        x, y, y_stride, weight, x_out, h_out, n_cols, eps, BLOCK: tl.constexpr
    ):
        # One row in one pass (inductor's compiled chain reads a 4,096-wide row twice, in a
        # loop). Llama's arithmetic: x + y rounded to the model's dtype, the norm in float32,
        # rounded, times the weight.
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        xs = tl.load(x + row * n_cols + cols, mask=mask, other=0.0)
        ys = tl.load(y + row * y_stride + cols, mask=mask, other=0.0)
        total = (xs.to(tl.float32) + ys.to(tl.float32)).to(xs.dtype)
        tl.store(x_out + row * n_cols + cols, total, mask=mask)
        f = total.to(tl.float32)
        inv = tl.rsqrt(tl.sum(f * f, 0) / n_cols + eps)
        normed = (f * inv).to(xs.dtype).to(tl.float32)
        w = tl.load(weight + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(h_out + row * n_cols + cols, (w * normed).to(xs.dtype), mask=mask)

    @triton.jit
    def _silu_mul_kernel(gate_up, gu_stride, out, half, BLOCK: tl.constexpr):
        # torch's arithmetic: SiLU in float32 rounded to the model's dtype, then the product
        # in float32 rounded.
        row = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < half
        g = tl.load(gate_up + row * gu_stride + cols, mask=mask, other=0.0)
        u = tl.load(gate_up + row * gu_stride + half + cols, mask=mask, other=0.0)
        gf = g.to(tl.float32)
        silu = (gf / (1.0 + tl.exp(-gf))).to(g.dtype).to(tl.float32)
        tl.store(out + row * half + cols, (silu * u.to(tl.float32)).to(g.dtype), mask=mask)

    @triton.jit(
        do_not_specialize=["none_slot", "capacity"], do_not_specialize_on_alignment=["slot_ids"]
    )
    def _lora_expand_kernel(
        out, out_stride, xa, xa_stride, b, slot_ids, none_slot, n_cols, capacity,
        bound1, bound2, rank, R: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(1)
        slot = tl.load(slot_ids + row)
        if slot != none_slot:
            cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
            cmask = cols < n_cols
            module = (cols >= bound1).to(tl.int32) + (cols >= bound2).to(tl.int32)
            j = tl.arange(0, R)
            both = (j[:, None] < rank) & cmask[None, :]
            xa_at = xa + row * xa_stride + (module[None, :] * capacity + slot) * rank + j[:, None]
            xav = tl.load(xa_at, mask=both, other=0.0).to(tl.float32)
            b_at = b + (slot * rank + j[:, None]) * n_cols + cols[None, :]
            bv = tl.load(b_at, mask=both, other=0.0)
            delta = tl.sum(xav * bv.to(tl.float32), 0)
            at = out + row * out_stride + cols
            base = tl.load(at, mask=cmask).to(tl.float32)
            tl.store(at, (base + delta).to(out.dtype.element_ty), mask=cmask)


def rope_cache_write(
    qkv, cos, sin, pos, k_cache, v_cache, n_heads: int, n_kv: int, per_row: int = 1
):
    """Rotate q and k of each token (position `pos[token]`, tables `cos`/`sin` (max_len, D)),
    write the rotated k and the v into the caches at (token // per_row, kv head, pos); the
    rotated q (tokens, heads, D). A prefill writes `per_row` tokens a row (its prompt's
    length), into `k_cache`/`v_cache` views starting at its first row; per_row 1 gives each
    token a row of its own. `qkv` (tokens, >= (n_heads + 2 n_kv) D) may be a strided view of a
    wider output."""
    tokens = qkv.shape[0]
    d = k_cache.shape[-1]
    q = torch.empty(tokens, n_heads, d, dtype=qkv.dtype, device=qkv.device)
    _rope_cache_kernel[(tokens, triton.cdiv(n_heads + n_kv, ROPE_HEADS))](
        qkv, qkv.stride(0), cos, sin, pos, q, k_cache, v_cache,
        k_cache.stride(0), k_cache.stride(1), n_heads, n_kv, per_row, D=d, HEADS=ROPE_HEADS,
    )  # fmt: skip
    return q


def combine_width(splits: int) -> int:
    """The combine kernel's compiled width: at least COMBINE_SPLITS, so that the buckets the
    warm-up captures (512 and 1,024 keys) share one compiled kernel (`splits` itself is not
    specialized). Wider is slower: a width of 64 for every bucket cost 0.03 ms a step."""
    return max(COMBINE_SPLITS, triton.next_power_of_2(splits))


def attention_splits(rows: int, n_kv: int, kv: int) -> tuple[int, int]:
    """(splits, keys per split) for a KV bucket: about TARGET_PROGRAMS programs in all."""
    blocks = -(-kv // SPLIT_BLOCK)
    wanted = max(1, min(blocks, -(-TARGET_PROGRAMS // (rows * n_kv))))
    split_len = -(-blocks // wanted) * SPLIT_BLOCK
    return -(-kv // split_len), split_len


def decode_attention(q, k_cache, v_cache, lengths, kv: int):
    """Attention of each row's query (rows, heads, D) over its first `lengths[row]` cached keys
    (at most `kv`): (rows, heads * D). Softmax scaled by 1/sqrt(D)."""
    rows, n_heads, d = q.shape
    return _attention(q, n_heads * d, None, None, k_cache, v_cache, lengths, kv, n_heads, False)


def rope_decode_attention(qkv, cos, sin, k_cache, v_cache, lengths, kv: int, n_heads: int):
    """decode_attention of a step's qkv output (rows, >= (n_heads + 2 n_kv) D, any row stride):
    each row's q and new k rotated at position lengths[row] - 1 (tables `cos`/`sin` (max_len,
    D)), the new key and value written into the caches there: rope_cache_write and
    decode_attention in one launch."""
    return _attention(qkv, qkv.stride(0), cos, sin, k_cache, v_cache, lengths, kv, n_heads, True)


def _attention(src, src_stride, cos, sin, k_cache, v_cache, lengths, kv, n_heads, rope: bool):
    rows, n_kv, d = src.shape[0], k_cache.shape[1], k_cache.shape[-1]
    group = n_heads // n_kv
    splits, split_len = attention_splits(rows, n_kv, kv)
    part_acc = torch.empty(rows, n_heads, splits, d, dtype=torch.float32, device=src.device)
    part_ml = torch.empty(rows, n_heads, splits, 2, dtype=torch.float32, device=src.device)
    scale_log2 = (1.0 / math.sqrt(d)) * 1.4426950408889634
    tables = (cos, sin) if rope else (src, src)  # unread without ROPE
    _attention_split_kernel[(rows, n_kv, splits)](
        src, src_stride, *tables, k_cache, v_cache, lengths, part_acc, part_ml,
        k_cache.stride(0), k_cache.stride(1), n_heads, n_kv, splits, split_len, scale_log2,
        GROUP=group, BLOCK_H=max(16, triton.next_power_of_2(group)), BLOCK_N=SPLIT_BLOCK, D=d,
        PRECISION="ieee" if src.dtype == torch.float32 else "tf32", ROPE=rope,
        DOTS=0 if src.dtype == torch.float32 else ATTENTION_DOTS, **ATTENTION_LAUNCH,
    )  # fmt: skip
    out = torch.empty(rows, n_heads * d, dtype=src.dtype, device=src.device)
    _attention_combine_kernel[(rows, n_heads)](
        part_acc, part_ml, out, splits, n_heads, SPLITS=combine_width(splits), D=d
    )
    return out


def expand_launch(rows: int, rank: int = 16) -> tuple[int, int]:
    """(columns a program, warps) of lora_expand for a batch of `rows`: measured per 8B-shape
    group at rank 16 on the H200 (benchmarks/expand_sweep.py), two warps are best at any size;
    narrow programs at 1-2 rows (gate/up 2.4 us a call against 3.2 before), wide ones at more
    (16 rows: gate/up 5.2 us against 22). A program holds rank x columns values: wide programs
    narrow as the rank grows, so a rank-64 adapter's tile is no larger than rank 16's."""
    if rows <= 2:
        return 64, 2
    return max(64, 512 * 16 // max(16, triton.next_power_of_2(rank))), 2


def add_rms_norm(x, y, weight, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + y, its RMS norm times `weight`) for rows of contiguous `x` (rows, width) and `y` of
    any row stride: ops._add_rms_norm's arithmetic in one launch, one pass over each row."""
    rows, width = x.shape
    x_out, h_out = torch.empty_like(x), torch.empty_like(x)
    block = triton.next_power_of_2(width)
    _add_rms_norm_kernel[(rows,)](
        x, y, y.stride(0), weight, x_out, h_out, width, eps, BLOCK=block,
        num_warps=min(16, max(4, block // 512)),
    )  # fmt: skip
    return x_out, h_out


def silu_mul(gate_up) -> torch.Tensor:
    """SiLU(gate) * up of a (tokens, 2 x width) output, gate's columns first (any row stride):
    ops._silu_mul's arithmetic in one launch."""
    tokens, width = gate_up.shape[0], gate_up.shape[1] // 2
    out = torch.empty(tokens, width, dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _silu_mul_kernel[(tokens, triton.cdiv(width, block))](
        gate_up, gate_up.stride(0), out, width, BLOCK=block
    )
    return out


def lora_expand(
    out, xa, b, slot_ids, none_slot: int, widths: list[int], launch: tuple[int, int] | None = None
) -> None:
    """out[row] += xa[row, module's slot block] @ b[slot] per module, in place, for each row
    whose slot is not `none_slot`. xa (rows, modules x capacity x R); b (capacity, R, sum of
    widths), pre-scaled; `widths` the modules' output widths (at most three). `launch`:
    (columns a program, warps), expand_launch's by default."""
    block, warps = launch or expand_launch(out.shape[0], b.shape[1])
    rows, n_cols = out.shape
    capacity, rank = b.shape[0], b.shape[1]
    bounds = [sum(widths[: i + 1]) for i in range(len(widths) - 1)] + [n_cols, n_cols]
    _lora_expand_kernel[(triton.cdiv(n_cols, block), rows)](
        out, out.stride(0), xa, xa.stride(0), b, slot_ids, none_slot, n_cols, capacity,
        bounds[0], bounds[1], rank, R=max(16, triton.next_power_of_2(rank)), BLOCK_N=block,
        num_warps=warps,
    )  # fmt: skip
