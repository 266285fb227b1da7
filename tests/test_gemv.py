"""The one-row Triton GEMV (CUDA in the app, Triton's interpreter here) equals torch's linear,
and the engine's batch-1 decode step through it equals the step through torch."""

import pytest
import torch
import torch.nn.functional as F

from ff_lib.inference import ModelHost, decode
from ff_lib.inference.gemv import gemv, gemv_config
from tests.fixtures_models import CAPITAL_PAIRS


@pytest.mark.parametrize(
    "n,k,tile",
    [
        (70, 256, (4, 128, 4, 1)),  # n not a multiple of the rows a program
        (33, 300, (4, 128, 4, 1)),  # k not a multiple of the tile's columns
        (64, 2048, None),  # gemv_config's tile
        (5, 96, None),
    ],
)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 0.02)])
def test_gemv_equals_linear(n, k, tile, dtype, tol):
    torch.manual_seed(n + k)
    x = torch.randn(1, k, dtype=dtype)
    fused = torch.randn(n + 12, k, dtype=dtype)  # a group's tensor: base rows, then A rows
    bias = torch.randn(n + 12, dtype=dtype)
    for weight, b in ((fused, None), (fused[:n], bias[:n]), (fused[n:], None)):
        got = gemv(x, weight, b, config=tile)
        want = F.linear(x.float(), weight.float(), None if b is None else b.float())
        assert got.shape == want.shape and got.dtype == dtype
        assert (got.float() - want).abs().max() <= tol * max(1.0, want.abs().max().item())


def test_gemv_refuses_more_than_one_row():
    with pytest.raises(AssertionError):
        gemv(torch.randn(2, 64), torch.randn(8, 64))


@pytest.mark.parametrize("k", [64, 896, 4096, 14336])
def test_the_tile_covers_short_rows_without_growing(k):
    block_n, block_k, _, _ = gemv_config(4096, k)
    assert block_k <= max(2048, k) and block_k < 2 * k
    assert block_n * block_k == 8192


def test_batch_one_decode_through_the_gemv_equals_decode_through_torch(
    tiny_base, capitals_adapter, monkeypatch
):
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return gemv(*args, **kwargs)

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
        batched.gemv = False
        return out, len(batched.layers)

    with torch.inference_mode():
        out, layers = engine.scheduler.run_exclusive(steps)
    host.release()
    # two steps through the GEMV (adapter, then none): every group and the head at one row,
    # and each prefill's head (its last token alone); never at two rows
    assert len(calls) == 2 * (4 * layers + 1 + 1)
    for slot in {s for s, _ in out}:
        (one, two), (one_gemv, two_gemv) = out[(slot, False)], out[(slot, True)]
        assert torch.allclose(one_gemv, one, atol=1e-5)
        assert torch.equal(one_gemv.argmax(-1), one.argmax(-1))
        assert torch.equal(two_gemv, two)  # two rows never take the GEMV
