"""The base GEMMs of a decode step at the shapes the engine gives cuBLAS (a group's base rows,
then every slot's A rows), with zero rows appended up to +1,024: does a padded shape run at a
higher bandwidth? (a diagnostic; H200 figures in BENCHMARKS.md)

    python benchmarks/gemv_shapes.py --json /tmp/out/gemv.json
"""

import argparse
import json

import torch
import torch.nn.functional as F

# (group, base rows, A rows with 4 rank-16 slots, in_features) of the Llama-3.1-8B shape
GROUPS = (("qkv", 6144, 192, 4096), ("o", 4096, 64, 4096), ("gate_up", 28672, 128, 4096),
          ("down", 4096, 64, 14336))  # fmt: skip


def timed_us(x, weights, calls: int = 48, fn=F.linear) -> float:
    """Microseconds a call of `fn(x, w)`, from a graph of `calls` back-to-back calls (no launch
    gaps), each on the next of `weights` (copies enough to overflow the 50 MB L2: every call
    reads HBM)."""
    fn(x, weights[0])
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(x, weights[i % len(weights)])
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / (5 * calls)


def hbm_copies(w) -> list:
    """`w` and enough copies of it that cycling through them overflows the 50 MB L2."""
    return [w] + [w.clone() for _ in range(max(1, 400_000_000 // w.nbytes))]


def hbm_us(x, w) -> float:
    """timed_us of `x @ w.T` with every call reading `w` from HBM (copies past the L2)."""
    return timed_us(x, hbm_copies(w))


def kernel_names(x, w) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    F.linear(x, w)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        F.linear(x, w)
        torch.cuda.synchronize()
    return [e.name[:60] for e in prof.events() if e.device_type.name == "CUDA"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    args = p.parse_args()
    results = []
    for name, base, k, fan_in in GROUPS:
        for rows in (1, 8, 16):
            x = torch.randn(rows, fan_in, dtype=torch.bfloat16, device="cuda")
            for pad in range(0, 769, 64):
                n = base + k + pad
                w = torch.randn(n, fan_in, dtype=torch.bfloat16, device="cuda") * 0.01
                us = hbm_us(x, w)
                names = kernel_names(x, w)
                useful = (base + k) * fan_in * 2  # the bytes the step needs
                results.append({"group": name, "rows": rows, "n": n, "pad": pad, "us": round(us, 2),
                                "GB/s": round(n * fan_in * 2 / us / 1e3, 1),
                                "useful_GB/s": round(useful / us / 1e3, 1), "kernels": names})  # fmt: skip
                print(json.dumps(results[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
