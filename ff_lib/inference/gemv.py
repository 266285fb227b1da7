"""A few rows' projection (`x @ W.T + bias`, up to 16 tokens) as a Triton GEMV: the decode
step's base GEMMs.

At 1-16 rows a projection is a pure weight read, and cuBLAS reads the 8B shape's o and down
weights at 2.7 and 3.7 TB/s (a split-K kernel plus its reduce), q/k/v at 3.3 TB/s, against the
H200's ~4.2 TB/s (benchmarks/gemv_shapes.py). Neither kernel here splits K. The one-row kernel
reads `block_n` whole weight rows in `block_k`-wide tiles, multiplies them by the row in
float32 and sums once at the end; the kernel of 2-16 rows multiplies each weight tile by every
row on the tensor cores (the rows padded to 16). The tile sizes were measured on the H200 (benchmarks/gemv_sweep.py;
BENCHMARKS.md). Used for CUDA bf16/fp16 weights when the decode step's kernels are on
(`ff_lib.inference.kernels.available`); the tests run both through Triton's interpreter on CPU
against torch's linear.
"""

import functools

import torch

from ff_lib.inference.kernels import triton

MAX_ROWS = 16  # the rows kernel's tile (tensor-core dots need 16); more rows go to cuBLAS

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _gemv_kernel(
        x, w, bias, out, N, K, w_stride, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr,
    ):  # fmt: skip
        """One row: BLOCK_N outputs a program, products summed in float32 once at the end."""
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        k = tl.arange(0, BLOCK_K)
        n_ok = n < N
        tiles = w + n[:, None].to(tl.int64) * w_stride + k[None, :]
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for start in range(0, K, BLOCK_K):
            if EVEN_K:
                xs = tl.load(x + start + k)
                ws = tl.load(tiles + start, mask=n_ok[:, None], other=0.0)
            else:
                k_ok = start + k < K
                xs = tl.load(x + start + k, mask=k_ok, other=0.0)
                ws = tl.load(tiles + start, mask=n_ok[:, None] & k_ok[None, :], other=0.0)
            acc += ws.to(tl.float32) * xs.to(tl.float32)[None, :]
        y = tl.sum(acc, axis=1)
        if HAS_BIAS:
            y += tl.load(bias + n, mask=n_ok, other=0.0).to(tl.float32)
        tl.store(out + n, y.to(out.dtype.element_ty), mask=n_ok)

    @triton.jit
    def _gemv_rows_kernel(
        x, x_stride, w, bias, out, M, N, K, w_stride, HAS_BIAS: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr,
    ):  # fmt: skip
        """Up to BLOCK_M rows: each weight tile read once, (tile @ rows.T) on the tensor cores."""
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        m = tl.arange(0, BLOCK_M)
        k = tl.arange(0, BLOCK_K)
        n_ok, m_ok = n < N, m < M
        w_tiles = w + n[:, None].to(tl.int64) * w_stride + k[None, :]
        x_tiles = x + m[None, :] * x_stride + k[:, None]  # (BLOCK_K, BLOCK_M): rows transposed
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        for start in range(0, K, BLOCK_K):
            if EVEN_K:
                ws = tl.load(w_tiles + start, mask=n_ok[:, None], other=0.0)
                xs = tl.load(x_tiles + start, mask=m_ok[None, :], other=0.0)
            else:
                k_ok = start + k < K
                ws = tl.load(w_tiles + start, mask=n_ok[:, None] & k_ok[None, :], other=0.0)
                xs = tl.load(x_tiles + start, mask=m_ok[None, :] & k_ok[:, None], other=0.0)
            acc = tl.dot(ws, xs, acc)
        if HAS_BIAS:
            acc += tl.load(bias + n, mask=n_ok, other=0.0).to(tl.float32)[:, None]
        at = out + m[None, :] * N + n[:, None]
        tl.store(at, acc.to(out.dtype.element_ty), mask=n_ok[:, None] & m_ok[None, :])


def gemv_config(n: int, k: int) -> tuple[int, int, int, int]:
    """(weight rows a program, columns a tile, warps, pipeline stages) for an (n, k) weight:
    4 x 2,048 with 4 warps, 1 stage, was the best tile or within 1.6 % of it at each of the 8B
    shape's five weights on the H200 (q/k/v 14.3 us against cuBLAS's 15.9, o 10.2 / 12.7, gate/up
    54.4 / 59.4, down 29.1 / 33.1, lm_head 232 / 246; benchmarks/gemv_sweep.py, run with an
    evict-first hint on the weight loads, since dropped: without it the best tiles read within
    0.3 % of those times). Shorter rows keep the tile's 8,192 values."""
    block_k = min(2048, triton.next_power_of_2(k))
    return 8192 // block_k, block_k, 4, 1


def rows_config(n: int, k: int) -> tuple[int, int, int, int]:
    """gemv_config's tuple for 2 to MAX_ROWS rows (the tensor-core kernel), by the weight's
    shape class, as measured at 2, 4, 8 and 16 rows of the 8B shape on the H200
    (benchmarks/gemv_sweep.py --rows 16,8,4,2; cuBLAS -> this, 8 rows): long rows or few
    outputs (down 33.4 -> 30.2 us, o 12.7 -> 11.0), q/k/v-sized (16.1 -> 14.9), wide (gate/up
    55.7 -> 55.4, 60.9 -> 56.1 at 16 rows; lm_head 241.5 -> 236.4)."""
    if k >= 8192 or n <= 5120:
        return 16, 512, 2, 3
    if n <= 8192:
        return 64, 128, 4, 5
    return 32, 128, 2, 3


def fit_stages(block_n: int, block_k: int, stages: int, shared_bytes: int) -> int:
    """The rows kernel's pipeline stages whose tiles (weights and rows, 2 bytes a value) fit a
    device's shared memory, keeping 8 KB aside: the H200's 227 KB hold every tile measured; a
    GPU of 100 KB a block (an RTX 4090) gets fewer stages, not a launch that fails."""
    per_stage = (block_n + MAX_ROWS) * block_k * 2
    return max(1, min(stages, (shared_bytes - 8192) // per_stage))


@functools.cache
def _shared_bytes(device_index: int) -> int:
    from triton.runtime import driver

    return driver.active.utils.get_device_properties(device_index)["max_shared_mem"]


def gemv(x: torch.Tensor, weight: torch.Tensor, bias=None, config=None) -> torch.Tensor:
    """x (rows <= MAX_ROWS, K) @ weight (N, K, unit column stride).T (+ bias) -> (rows, N) in
    x's dtype, the sum in float32. `config`: gemv_config's / rows_config's tuple by default (the
    sweep passes its own)."""
    rows, (n, k) = x.shape[0], weight.shape
    assert 1 <= rows <= MAX_ROWS and x.shape[1] == k and weight.stride(1) == 1, (
        x.shape, weight.shape, weight.stride(),
    )  # fmt: skip
    x = x.contiguous()
    out = torch.empty(rows, n, dtype=x.dtype, device=x.device)
    bias_or_any = out if bias is None else bias  # unread without HAS_BIAS
    if rows == 1:
        block_n, block_k, warps, stages = config or gemv_config(n, k)
        kernel, lead, extra = _gemv_kernel, (x, weight, bias_or_any, out, n, k), {}
    else:
        block_n, block_k, warps, stages = config or rows_config(n, k)
        if x.is_cuda:
            stages = fit_stages(block_n, block_k, stages, _shared_bytes(x.device.index or 0))
        kernel = _gemv_rows_kernel
        lead = (x, x.stride(0), weight, bias_or_any, out, rows, n, k)
        extra = {"BLOCK_M": MAX_ROWS}
    kernel[(triton.cdiv(n, block_n),)](
        *lead, weight.stride(0), HAS_BIAS=bias is not None, BLOCK_N=block_n, BLOCK_K=block_k,
        EVEN_K=k % block_k == 0, num_warps=warps, num_stages=stages, **extra,
    )  # fmt: skip
    return out
