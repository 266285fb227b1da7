"""One row's projection (`x @ W.T + bias` for a single token) as a Triton GEMV: the batch-1
decode step's base GEMMs.

At one row a projection is a pure weight read: the 8B shape's o and down projections reach
2.7 and 3.7 TB/s through cuBLAS (a split-K kernel plus its reduce), q/k/v 3.3 TB/s, against
the H200's ~4.2 TB/s (benchmarks/gemv_shapes.py). Here each program reads `block_n` whole
weight rows in `block_k`-wide tiles, multiplies them by the row in float32 and sums once at the
end: no split-K, no reduce kernel. The tile sizes per shape were measured on the H200
(benchmarks/gemv_sweep.py; BENCHMARKS.md). Used for CUDA bf16/fp16 weights when the decode
step's kernels are on (`ff_lib.inference.kernels.available`); the tests run it through Triton's
interpreter on CPU against torch's linear.
"""

import torch

from ff_lib.inference.kernels import triton

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _gemv_kernel(
        x, w, bias, out, N, K, w_stride, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr,
    ):  # fmt: skip
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


def gemv_config(n: int, k: int) -> tuple[int, int, int, int]:
    """(weight rows a program, columns a tile, warps, pipeline stages) for an (n, k) weight:
    4 x 2,048 with 4 warps, 1 stage, was the best tile or within 1.6 % of it at each of the 8B
    shape's five weights on the H200 (q/k/v 14.3 us against cuBLAS's 15.9, o 10.2 / 12.7, gate/up
    54.4 / 59.4, down 29.1 / 33.1, lm_head 232 / 246; benchmarks/gemv_sweep.py). Shorter rows
    keep the tile's 8,192 values."""
    block_k = min(2048, triton.next_power_of_2(k))
    return 8192 // block_k, block_k, 4, 1


def gemv(x: torch.Tensor, weight: torch.Tensor, bias=None, config=None) -> torch.Tensor:
    """x (1, K) @ weight (N, K, unit column stride).T (+ bias) -> (1, N) in x's dtype, the sum
    in float32. `config`: gemv_config's tuple by default (the sweep passes its own)."""
    n, k = weight.shape
    assert x.shape == (1, k) and weight.stride(1) == 1, (x.shape, weight.shape, weight.stride())
    block_n, block_k, warps, stages = config or gemv_config(n, k)
    x = x.contiguous()
    out = torch.empty(1, n, dtype=x.dtype, device=x.device)
    _gemv_kernel[(triton.cdiv(n, block_n),)](
        x, weight, bias if bias is not None else out, out, n, k, weight.stride(0),
        HAS_BIAS=bias is not None, BLOCK_N=block_n, BLOCK_K=block_k, EVEN_K=k % block_k == 0,
        num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return out
