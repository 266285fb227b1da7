"""The one-row Triton GEMV (ff_lib/inference/gemv.py) at the decode step's weight shapes, tile
by tile, against cuBLAS at the same shape; every call reads its weight from HBM (a diagnostic
that picked gemv_config; H200 figures in BENCHMARKS.md).

    python benchmarks/gemv_sweep.py --json /tmp/out/gemv-sweep.json [--budget-s 330]
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemv_shapes import GROUPS, hbm_copies, timed_us  # noqa: E402  (benchmarks/, beside this)

from ff_lib.inference.gemv import gemv, gemv_config  # noqa: E402

TILES = [
    (bn, bk, warps, stages)
    for bn, bk, warps, stages in itertools.product(
        (2, 4, 8, 16, 32), (256, 512, 1024, 2048), (2, 4, 8), (1, 2, 3, 4)
    )  # fmt: skip
    if 8 <= bn * bk // (32 * warps) <= 128  # float32 values a thread holds
]


def _row(name, n, k, label, us, **extra) -> dict:
    row = {"group": name, "n": n, "k": k, "kernel": label, "us": round(us, 2),
           "GB/s": round(n * k * 2 / us / 1e3, 1), **extra}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def sweep_shape(name, n, k, deadline: float) -> list[dict]:
    x = torch.randn(1, k, dtype=torch.bfloat16, device="cuda")
    weights = hbm_copies(torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.02)
    reference = F.linear(x, weights[0]).float()
    rows = [_row(name, n, k, "cublas", timed_us(x, weights))]
    tried = []
    for tile in [gemv_config(n, k)] + TILES:
        if time.time() > deadline:
            print(f"{name}: budget spent after {len(tried)} tiles", flush=True)
            break
        err = (gemv(x, weights[0], config=tile).float() - reference).abs().max().item()
        us = timed_us(x, weights, fn=lambda a, w, t=tile: gemv(a, w, config=t))
        tried.append(_row(name, n, k, "triton", us, tile=tile, max_abs_err=err))
    del weights
    torch.cuda.empty_cache()
    return rows + tried


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--budget-s", type=float, default=330)
    args = p.parse_args()
    shapes = [(name, base + a_rows, fan_in) for name, base, a_rows, fan_in in GROUPS]
    shapes.append(("lm_head", 128256, 4096))
    start, results = time.time(), []
    x, w = (
        torch.ones(1, 4096, device="cuda", dtype=torch.bfloat16),
        torch.ones(64, 4096, device="cuda", dtype=torch.bfloat16),
    )
    for tile in TILES:  # compile each tile once (every shape shares its specialization)
        gemv(x, w, config=tile)
    torch.cuda.synchronize()
    print(f"{len(TILES)} tiles compiled in {time.time() - start:.0f} s", flush=True)
    for i, (name, n, k) in enumerate(shapes):
        share = (args.budget_s - (time.time() - start)) / (len(shapes) - i)
        results += sweep_shape(name, n, k, time.time() + share)
    for name, _, _ in shapes:
        mine = [r for r in results if r["group"] == name]
        cublas = next(r for r in mine if r["kernel"] == "cublas")
        best = sorted(mine, key=lambda r: r["us"])[:6]
        print(f"{name}: cuBLAS {cublas['us']} us; best: " + ", ".join(
            f"{r['kernel']} {r.get('tile')} {r['us']}" for r in best))  # fmt: skip
        default = next(r for r in mine if r.get("tile") == gemv_config(r["n"], r["k"]))
        print(f"  gemv_config's {default['tile']}: {default['us']} us")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
