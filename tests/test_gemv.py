"""The Triton GEMVs of 1 and of 2-16 rows (CUDA in the app, Triton's interpreter here) equal
torch's linear, and the engine's decode steps through them equal the steps through torch."""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from ff_lib.inference import ModelHost, decode
from ff_lib.inference.gemv import MAX_ROWS, fit_stages, gemv, gemv_config, rows_config
from tests.fixtures_models import CAPITAL_PAIRS
from tests.test_kernels import BF16_DOT_SKIP


@pytest.mark.parametrize(
    "n,k,tile",
    [
        (70, 256, "small"),  # n not a multiple of the rows a program
        (33, 300, "small"),  # k not a multiple of the tile's columns
        (64, 2048, None),  # gemv_config's / rows_config's tile
        (5, 96, None),
    ],
)
@pytest.mark.parametrize("rows", [1, 3, MAX_ROWS])
@pytest.mark.parametrize(
    "dtype,tol", [(torch.float32, 1e-4), (torch.float16, 0.004), (torch.bfloat16, 0.02)]
)
def test_gemv_equals_linear(n, k, tile, rows, dtype, tol):
    if dtype == torch.bfloat16 and rows > 1:
        pytest.skip(BF16_DOT_SKIP)  # gemv_sweep.py checks every tile's bf16 result on the GPU
    torch.manual_seed(n + k + rows)
    if tile == "small":
        tile = (4, 128, 4, 1) if rows == 1 else (16, 128, 4, 2)
    x = torch.randn(rows + 2, k, dtype=dtype)[1 : rows + 1]  # rows of a larger tensor
    fused = torch.randn(n + 12, k, dtype=dtype)  # a group's tensor: base rows, then A rows
    bias = torch.randn(n + 12, dtype=dtype)
    for weight, b in ((fused, None), (fused[:n], bias[:n]), (fused[n:], None)):
        got = gemv(x, weight, b, config=tile)
        want = F.linear(x.float(), weight.float(), None if b is None else b.float())
        assert got.shape == want.shape and got.dtype == dtype
        assert (got.float() - want).abs().max() <= tol * max(1.0, want.abs().max().item())


def test_gemv_refuses_more_rows_than_its_tile():
    with pytest.raises(AssertionError):
        gemv(torch.randn(MAX_ROWS + 1, 64), torch.randn(8, 64))


@pytest.mark.parametrize("k", [64, 896, 4096, 14336])
def test_the_tile_covers_short_rows_without_growing(k):
    block_n, block_k, _, _ = gemv_config(4096, k)
    assert block_k <= max(2048, k) and block_k < 2 * k
    assert block_n * block_k == 8192


@pytest.mark.parametrize("n,k", [(4160, 4096), (6336, 4096), (28800, 4096), (4160, 14336)])
def test_the_rows_tile_is_a_tensor_core_tile(n, k):
    block_n, block_k, warps, stages = rows_config(n, k)
    assert block_n >= 16 and block_k >= 16 and k % block_k == 0 and warps in (2, 4, 8)


@pytest.mark.parametrize("n,k", [(4160, 4096), (6336, 4096), (28800, 4096), (4160, 14336)])
def test_the_rows_tiles_fit_small_gpus_with_fewer_stages(n, k):
    block_n, block_k, _, stages = rows_config(n, k)
    assert fit_stages(block_n, block_k, stages, 232448) == stages  # an H200: as measured
    small = fit_stages(block_n, block_k, stages, 101376)  # an RTX 4090's 99 KB a block
    assert 1 <= small <= stages
    assert small * (block_n + MAX_ROWS) * block_k * 2 <= 101376 - 8192


def test_decode_steps_through_the_gemv_equal_steps_through_torch(
    tiny_base, capitals_adapter, monkeypatch
):
    calls = []

    def counted(x, *args, **kwargs):
        calls.append(x.shape)
        return gemv(x, *args, **kwargs)

    monkeypatch.setattr(decode, "gemv", counted)
    host = ModelHost()
    engine = host.load_base(str(tiny_base))
    batched, tok = engine.batched, engine.tokenizer
    prompt = tok(CAPITAL_PAIRS[0][0])["input_ids"]

    def steps():
        name = batched.slots.ensure(str(capitals_adapter), set())
        out = {}
        for slot in (batched.slots.slot_of(name), batched.slots.none_slot):
            for use in (False, True):
                batched.gemv = use
                batched.prefill(0, prompt, slot)
                one = batched.decode([prompt[-1]], [len(prompt)], [slot]).clone()
                two = batched.decode([prompt[-1]] * 2, [len(prompt)] * 2, [slot] * 2).clone()
                out[(slot, use)] = (one, two)
        x = torch.randn(MAX_ROWS + 1, batched.lm.config.hidden_size)
        weight, before = batched.fused[0]["o"][0], len(calls)
        wide = torch.equal(batched._linear(x, weight, None), F.linear(x, weight))
        strided = weight.t().contiguous().t()  # the same values, rows not contiguous
        wide = wide and torch.equal(batched._linear(x[:1], strided, None), F.linear(x[:1], strided))
        wide = wide and len(calls) == before and batched.gemv
        batched.gemv = False
        return out, len(batched.layers), wide

    with torch.inference_mode():
        out, layers, wide = engine.scheduler.run_exclusive(steps)
    host.release()
    # (adapter, then none) x (prefill, one row, two rows): every group of each pass, the head
    # of each step and of each prefill's last token
    groups = 4 * layers
    assert len(prompt) <= MAX_ROWS
    assert Counter(shape[0] for shape in calls) == {
        len(prompt): 2 * groups,
        1: 2 * (groups + 2),
        2: 2 * (groups + 1),
    }
    # more rows than the GEMV's tile, or a weight it cannot read: torch's linear, no GEMV call
    assert wide
    for slot in {s for s, _ in out}:
        for got, want in zip(out[(slot, True)], out[(slot, False)], strict=True):
            assert torch.allclose(got, want, atol=1e-5)
            assert torch.equal(got.argmax(-1), want.argmax(-1))
