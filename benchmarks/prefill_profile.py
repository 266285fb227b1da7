"""Where a joint prefill's time goes on CUDA (a diagnostic, not the product's figure: the bench is).

Builds Llama-3.1-8B's shape with random bf16 weights on the GPU (no files), wraps it in the
engine's BatchedLM with 4 random rank-16 adapters in slots, and prints: `prefill_many`'s time
for 4 prompts of 512 tokens (the bench's rows, PREFILL_TOKENS a pass) on mixed adapters, one
adapter and none, and for 8 and 16 prompts in one pass; one prompt's `prefill`; the kernels of
the mixed pass (torch.profiler: GPU time per kernel name, summed); and cuBLAS's time for each
base projection alone at the same token count (the floor of the pass's GEMMs).

    python benchmarks/prefill_profile.py [--layers 32] [--json out.json]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_profile import build, random_adapter, summed_kernels  # noqa: E402  (benchmarks/, beside this script)

from ff_lib.inference.decode import BatchedLM  # noqa: E402

PROMPT = 512


def timed_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def prompts(n: int) -> list[list[int]]:
    return [[(7 * j + 13 * i) % 1000 + 10 for i in range(PROMPT)] for j in range(n)]


def passes(engine: BatchedLM) -> list:
    none = engine.slots.none_slot
    mixed = [0, 1, 2, 3, none]
    cases = [
        ("4 prompts, mixed adapters", 4, [mixed[j % 5] for j in range(4)]),
        ("4 prompts, one adapter", 4, [0] * 4),
        ("4 prompts, no adapter", 4, [none] * 4),
        ("8 prompts, mixed adapters", 8, [mixed[j % 5] for j in range(8)]),
        ("16 prompts, mixed adapters", 16, [mixed[j % 5] for j in range(16)]),
    ]
    results = []
    for name, n, slots in cases:
        ms = timed_ms(lambda n=n, slots=slots: engine.prefill_many(0, prompts(n), slots))
        rate = n * PROMPT / ms * 1e3
        print(f"  prefill_many {name}: {ms:.2f} ms ({rate:,.0f} tokens/s)")
        results.append({"case": name, "prompts": n, "ms": ms, "tokens_per_s": rate})
    ms = timed_ms(lambda: engine.prefill(0, prompts(1)[0], 0))
    print(f"  prefill one prompt, adapter: {ms:.2f} ms")
    results.append({"case": "1 prompt, adapter (prefill)", "prompts": 1, "ms": ms})
    return results


def kernel_table(engine: BatchedLM, top: int = 30) -> dict:
    from torch.profiler import ProfilerActivity, profile

    none = engine.slots.none_slot
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine.prefill_many(0, prompts(4), [0, 1, 2, none])
        torch.cuda.synchronize()
    return summed_kernels(prof, f"mixed 4 x {PROMPT} pass", top, width=100)


def gemm_floor(engine: BatchedLM, tokens: int) -> dict:
    """cuBLAS alone on each base projection (no LoRA columns) at `tokens` rows, x 32 layers."""
    layer = engine.layers[0]
    fused = engine.fused[0]
    weights = {
        "qkv": fused["qkv"][0][: fused["qkv"][2]],
        "o": layer.self_attn.o_proj.weight,
        "gate_up": fused["gate_up"][0][: fused["gate_up"][2]],
        "down": layer.mlp.down_proj.weight,
    }
    out, total = {}, 0.0
    for name, w in weights.items():
        x = torch.randn(tokens, w.shape[1], dtype=w.dtype, device="cuda")
        with torch.inference_mode():
            ms = timed_ms(lambda x=x, w=w: F.linear(x, w), repeats=20)
        tflops = 2 * tokens * w.shape[0] * w.shape[1] / ms / 1e9
        out[name] = {"ms": ms, "tflops": tflops}
        total += ms * len(engine.layers)
        print(
            f"  cuBLAS {name:8s} {tuple(w.shape)} at {tokens} tokens: {ms:.3f} ms, {tflops:.0f} TFLOPS"
        )
    print(f"  the base GEMMs of one pass: {total:.2f} ms")
    out["pass_ms"] = total
    return out


def gqa_ab(tokens: int = PROMPT, rows: int = 4) -> dict:
    """Prefill attention of one layer: KV heads repeated for flash (the engine's way) against
    SDPA's own enable_gqa, and whether the two agree."""
    q = torch.randn(rows, 32, tokens, 128, dtype=torch.bfloat16, device="cuda")
    k, v = (torch.randn(rows, 8, tokens, 128, dtype=torch.bfloat16, device="cuda") for _ in "kv")

    def repeated():
        keys, values = k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1)
        return F.scaled_dot_product_attention(q, keys, values, is_causal=True)

    def native():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    with torch.inference_mode():
        out = {"repeated_ms": timed_ms(repeated, 20), "enable_gqa_ms": timed_ms(native, 20)}
        out["max_diff"] = (repeated() - native()).abs().max().item()
    print(f"  attention of a layer, {rows} x {tokens} tokens: {out}")
    return out


def trace(engine: BatchedLM, path: str) -> None:
    """A Chrome trace (CPU and CUDA) of one mixed 4 x 512 pass, for its host gaps."""
    from torch.profiler import ProfilerActivity, profile

    none = engine.slots.none_slot
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        engine.prefill_many(0, prompts(4), [0, 1, 2, none])
        torch.cuda.synchronize()
    prof.export_chrome_trace(path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--json")
    parser.add_argument("--trace", help="write a Chrome trace of one mixed pass here")
    args = parser.parse_args()
    lm = build(args.layers)
    engine = BatchedLM(lm, max_rows=16, max_len=8192, max_slots=4, use_graphs=True)
    engine.slots.reserve(4, 16)
    for slot in range(4):
        engine.slots._write(slot, random_adapter(engine))
        engine.slots.names[f"probe{slot}"] = slot
    print(f"kernels in use: {engine.kernels}; none slot {engine.slots.none_slot}")
    out = {"passes": passes(engine), "kernels": kernel_table(engine)}
    out["gemm_floor_2048"] = gemm_floor(engine, 4 * PROMPT)
    out["gqa"] = gqa_ab()
    if args.trace:
        trace(engine, args.trace)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
