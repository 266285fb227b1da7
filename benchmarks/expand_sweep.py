"""The lora_expand kernel's time per call for a few launch shapes (a diagnostic): each of the
8B shape's projection groups at 1 and 16 rows, replayed in a CUDA graph as the decode step
replays it (32 calls a replay, as 32 layers).

    python benchmarks/expand_sweep.py [--json out.json]
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ff_lib.inference import kernels  # noqa: E402

GROUP_WIDTHS = {"qkv": [4096, 1024, 1024], "o": [4096], "gate_up": [14336, 14336], "down": [4096]}


def time_us(fn, calls: int = 32, replays: int = 50) -> float:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (replays * calls)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    args = p.parse_args()
    capacity, rank = 4, 16
    results = []
    for group, widths in GROUP_WIDTHS.items():
        n = sum(widths)
        for rows in (1, 16):
            full = torch.randn(rows, n + len(widths) * capacity * rank, device="cuda").bfloat16()
            out, xa = full[:, :n], full[:, n:]
            b = (torch.randn(capacity, rank, n, device="cuda") * 0.01).bfloat16()
            slots = torch.arange(rows, device="cuda") % capacity
            for block in (64, 128, 256, 512):
                for warps in (2, 4, 8):
                    call = (out, xa, b, slots, capacity, widths, (block, warps))
                    us = time_us(lambda call=call: kernels.lora_expand(*call))
                    results.append(
                        {"group": group, "rows": rows, "block": block, "warps": warps, "us": us}
                    )
            best = min(
                (r for r in results if r["group"] == group and r["rows"] == rows),
                key=lambda r: r["us"],
            )
            now = next(
                r
                for r in results
                if r["group"] == group
                and r["rows"] == rows
                and r["block"] == 128
                and r["warps"] == 4
            )
            print(
                f"{group:8s} rows {rows:2d}: now {now['us']:.2f} us; best {best['us']:.2f} us (block {best['block']}, warps {best['warps']})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
