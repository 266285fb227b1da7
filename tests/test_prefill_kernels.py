"""Prefill through the decode step's Triton kernels (rotary + cache write, residual add + norm,
SiLU gating; CUDA in the app, Triton's interpreter here) equals prefill through torch's ops:
one prompt, prompts padded together, and a long prompt in chunks (positions past 0)."""

import torch

from ff_lib.inference import ModelHost, decode, kernels
from ff_lib.inference.ops import EAGER_OPS
from tests.fixtures_models import CAPITAL_PAIRS


def _prefills(batched, prompts, slots) -> dict:
    """Every prefill path's logits and the cache rows it wrote (rows 0-2 together, 3 alone,
    4 in chunks of 4 tokens), into caches filled with NaN: a position a path fails to write
    shows."""
    for cache in (*batched.k_cache, *batched.v_cache):
        cache.fill_(float("nan"))
    out = {"together": batched.prefill_many(0, prompts, slots)}
    out["alone"] = batched.prefill(3, prompts[2], slots[2])
    chunk = decode.PREFILL_CHUNK
    decode.PREFILL_CHUNK = 4
    try:
        out["chunked"] = batched.prefill(4, prompts[1], slots[1])
    finally:
        decode.PREFILL_CHUNK = chunk
    rows = [*enumerate(prompts), (3, prompts[2]), (4, prompts[1])]
    for cache in ("k_cache", "v_cache"):
        for layer, tensor in enumerate(getattr(batched, cache)):
            for r, p in rows:
                out[f"{cache}{layer}/{r}"] = tensor[r, :, : len(p)].clone()
    return out


def test_prefills_through_the_kernels_equal_prefills_through_torch(tiny_base, capitals_adapter):
    host = ModelHost()
    engine = host.load_base(str(tiny_base))
    batched, tok = engine.batched, engine.tokenizer
    texts = (CAPITAL_PAIRS[0][0], CAPITAL_PAIRS[1][0] + " Tell me more.", "Hi")
    prompts = [tok(q)["input_ids"] for q in texts]
    assert len({len(p) for p in prompts}) == 3  # padding is exercised

    def both():
        name = batched.slots.ensure(str(capitals_adapter), set())
        slots = [batched.slots.slot_of(name), batched.slots.none_slot, batched.slots.slot_of(name)]
        with torch.inference_mode():
            eager = _prefills(batched, prompts, slots)
            batched.fused_rope = True
            batched.prefill_ops = {
                **EAGER_OPS, "add_norm": kernels.add_rms_norm, "silu_mul": kernels.silu_mul
            }  # fmt: skip
            try:
                fused = _prefills(batched, prompts, slots)
            finally:
                batched.fused_rope, batched.prefill_ops = False, EAGER_OPS
        return eager, fused

    eager, fused = engine.scheduler.run_exclusive(both)
    host.release()
    assert eager.keys() == fused.keys()
    for key, value in eager.items():
        assert torch.allclose(fused[key], value, atol=1e-5), key
    assert torch.equal(fused["together"].argmax(-1), eager["together"].argmax(-1))


def test_grouped_kv_heads_go_to_flash_only_where_flash_runs(monkeypatch):
    """Before compute capability 8.0, or for a head size flash cannot take, SDPA would run the
    math kernel for grouped heads: the engine repeats them for memory-efficient attention."""
    from ff_lib.inference.ops import flash_gqa

    assert not flash_gqa(torch.device("cpu"), 128)
    cuda = torch.device("cuda", 0)
    for capability, expected in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        flash_gqa.cache_clear()
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d, c=capability: c)
        assert flash_gqa(cuda, 128) is expected
        assert not flash_gqa(cuda, 320) and not flash_gqa(cuda, 100)  # sizes flash cannot take
    flash_gqa.cache_clear()
