"""Where a decode step's time goes on CUDA (a diagnostic, not the product's figure: the bench is).

Builds Llama-3.1-8B's shape with random bf16 weights on the GPU (no files), wraps it in the
engine's BatchedLM with one random rank-16 adapter in a slot, and prints for a few (rows, KV
length, adapter) buckets: the captured graph's step time, and the kernels of one eager step
(torch.profiler: GPU time per kernel name, summed); the 1-row step with its GEMMs through
cuBLAS, then through the engine's Triton GEMVs (gemv_ab); and the bandwidth cuBLAS reaches on
each base GEMM at one row (the GEMVs' own, tile by tile: benchmarks/gemv_sweep.py).

    python benchmarks/step_profile.py [--layers 32] [--json out.json]
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ff_lib.inference.benchmodels import LLAMA_8B_SHAPE  # noqa: E402
from ff_lib.inference.decode import BatchedLM  # noqa: E402
from ff_lib.inference.ops import EAGER_OPS  # noqa: E402
from ff_lib.inference.slots import GROUPS, LoraFactors  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemv_shapes import hbm_us  # noqa: E402  (benchmarks/, beside this script)


def build(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**{**LLAMA_8B_SHAPE, "num_hidden_layers": layers})
    with torch.device("cuda"):
        torch.manual_seed(0)
        lm = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    return lm


def random_adapter(engine: BatchedLM, rank: int = 16) -> LoraFactors:
    factors = {}
    for layer in range(len(engine.layers)):
        for group, mods in GROUPS.items():
            fan_in, outs = engine.slots.dims[group]
            for module, out in zip(mods, outs, strict=True):
                a = torch.randn(rank, fan_in) * 0.01
                b = torch.randn(out, rank) * 0.01
                factors[(layer, module)] = (a, b, 2.0)
    return LoraFactors("probe", "/nonexistent/probe", factors, rank)


def graph_step_ms(engine: BatchedLM, rows: int, kv: int, slot: int, steps: int = 50) -> float:
    tokens, positions = [1] * rows, [kv - 2] * rows
    engine.decode(tokens, positions, [slot] * rows)  # capture
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        engine.decode(tokens, positions, [slot] * rows)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def step_inputs(engine: BatchedLM, tokens, positions, slots) -> tuple:
    """(tokens, positions, slots) as the engine's own step reads them (rows of one tensor)."""
    ids = engine._graph_inputs(len(tokens))
    engine._fill(ids, len(tokens), tokens, positions, slots, chained=False)
    return ids[0], ids[1], ids[2]


def kernel_table(engine: BatchedLM, rows: int, kv: int, slot: int, top: int = 25) -> dict:
    from torch.profiler import ProfilerActivity, profile

    inputs = step_inputs(engine, [1] * rows, [kv - 2] * rows, [slot] * rows)
    lora = slot != engine.slots.none_slot
    with torch.inference_mode():
        for _ in range(3):
            engine._decode_step(*inputs, kv, lora)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            engine._decode_step(*inputs, kv, lora)
            torch.cuda.synchronize()
    return summed_kernels(prof, "eager step", top)


def summed_kernels(prof, label: str, top: int, width: int = 90) -> dict:
    """A torch.profiler run's GPU time per kernel name (the first `width` characters), summed
    and printed under `label`, the `top` longest first."""
    kernels: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type.name == "CUDA":
            entry = kernels.setdefault(event.name[:width], [0, 0.0])
            entry[0] += 1
            entry[1] += event.device_time_total / 1000
    ordered = sorted(kernels.items(), key=lambda kv_: -kv_[1][1])
    total = sum(v[1] for v in kernels.values())
    count = sum(v[0] for v in kernels.values())
    print(f"  {label}: {count} kernels, {total:.3f} ms of GPU time")
    for name, (n, ms) in ordered[:top]:
        print(f"    {ms:7.3f} ms {n:5d}x  {name}")
    return {"kernels": count, "gpu_ms": total, "top": ordered[:top]}


def gemv_bandwidth(engine: BatchedLM) -> dict:
    results = {}
    x = torch.randn(1, 4096, dtype=torch.bfloat16, device="cuda")
    fused = engine.fused[0]
    layer = engine.layers[0]
    weights = {
        "qkv": fused["qkv"][0],
        "o": layer.self_attn.o_proj.weight,
        "gate_up": fused["gate_up"][0],
        "down": layer.mlp.down_proj.weight,
        "lm_head": engine.lm.lm_head.weight,
    }
    for name, w in weights.items():
        inp = x if w.shape[1] == 4096 else torch.randn(1, w.shape[1], dtype=x.dtype, device="cuda")
        with torch.inference_mode():
            us = hbm_us(inp, w)  # every call reads the weight from HBM, as the step does
        gbs = w.numel() * w.element_size() / us / 1e3
        results[name] = {"us": us, "GB/s": gbs, "shape": list(w.shape)}
        print(f"  GEMV {name:8s} {tuple(w.shape)}: {us:7.1f} us, {gbs:6.0f} GB/s")
    return results


def check_kernels(engine: BatchedLM) -> list:
    """The kernel step's logits against the torch step's (SDPA, dense LoRA) on the same cache:
    rows on the adapter and on none, short and long positions."""
    results = []
    for rows, kv in ((1, 512), (4, 4096)):
        slots = [0, engine.slots.none_slot] * (rows // 2) or [0]
        positions = [kv - 2 - 37 * r for r in range(rows)]
        inputs = step_inputs(engine, [7 + r for r in range(rows)], positions, slots)
        with torch.inference_mode():
            gemv, engine.kernels, engine.gemv = engine.gemv, False, False
            ref = engine._decode_step(*inputs, kv, True)
            compiled, engine.ops = engine.ops, EAGER_OPS  # bf16 noise: same math, other kernels
            eager = engine._decode_step(*inputs, kv, True)
            engine.ops, engine.kernels, engine.gemv = compiled, True, gemv
            got = engine._decode_step(*inputs, kv, True)
        diff = (got - ref).abs().max().item()
        noise = (eager - ref).abs().max().item()
        same = bool(torch.equal(got.argmax(-1), ref.argmax(-1)))
        scale = ref.abs().max().item()
        print(
            f"  kernels vs torch, rows {rows} kv {kv}: max |diff| {diff:.4f}; torch's eager vs "
            f"compiled element-wise ops {noise:.4f} (logits up to {scale:.2f}); same argmax {same}"
        )
        results.append(
            {"rows": rows, "kv": kv, "max_diff": diff, "noise": noise, "scale": scale, "same": same}
        )
    return results


def gemv_ab(engine: BatchedLM) -> list:
    """1-row graph steps with the GEMMs through cuBLAS, then through the Triton GEMV."""
    results = []
    for use in (False, True, False, True):
        engine.gemv, engine._graphs = use and engine.kernels, {}
        for kv in (512, 4096):
            ms = graph_step_ms(engine, 1, kv, 0)
            print(
                f"  1 row kv {kv} adapter, GEMMs by {'Triton GEMV' if use else 'cuBLAS'}: {ms:.3f} ms"
            )
            results.append({"gemv": use, "kv": kv, "graph_ms": ms})
    engine._graphs = {}
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args()
    lm = build(args.layers)
    engine = BatchedLM(lm, max_rows=16, max_len=8192, max_slots=4, use_graphs=True)
    engine.slots.reserve(4, 16)
    engine.slots._write(0, random_adapter(engine))
    engine.slots.names["probe"] = 0
    out = {"gemv": gemv_bandwidth(engine), "buckets": [], "kernels": engine.kernels}
    print(f"kernels in use: {engine.kernels}")
    if engine.kernels:
        out["check"] = check_kernels(engine)
        out["gemv_ab"] = gemv_ab(engine)
    for rows, kv, lora in (
        (1, 512, True),
        (1, 512, False),
        (1, 4096, True),
        (8, 512, True),
        (16, 1024, True),
    ):
        slot = 0 if lora else engine.slots.none_slot
        ms = graph_step_ms(engine, rows, kv, slot)
        print(
            f"rows {rows} kv {kv} adapter {lora}: graph step {ms:.3f} ms "
            f"({rows * 1000 / ms:.1f} tok/s)"
        )
        table = kernel_table(engine, rows, kv, slot)
        out["buckets"].append({"rows": rows, "kv": kv, "lora": lora, "graph_ms": ms, **table})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
