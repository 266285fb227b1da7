"""The Triton GEMVs (ff_lib/inference/gemv.py) at the decode step's weight shapes, tile
by tile, against cuBLAS at the same shape; every call reads its weight from HBM (a diagnostic
that picked gemv_config and rows_config; H200 figures in BENCHMARKS.md).

    python benchmarks/gemv_sweep.py --rows 1 --json /tmp/out/gemv-sweep.json [--budget-s 330]
    python benchmarks/gemv_sweep.py --rows 8,16 ...    # the tensor-core kernel of 2-16 rows
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

from ff_lib.inference.gemv import gemv, gemv_config, rows_config  # noqa: E402

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


ROW_TILES = [
    (bn, bk, warps, stages)
    for bn, bk, warps, stages in itertools.product(
        (16, 32, 64), (128, 256, 512, 1024), (2, 4, 8), (2, 3, 4, 5)
    )  # fmt: skip
    if stages * (bn + 16) * bk * 2 <= 160 * 1024  # shared memory of the pipelined tiles
]


def sweep_shape(name, n, k, rows: int, tiles, deadline: float) -> list[dict]:
    x = torch.randn(rows, k, dtype=torch.bfloat16, device="cuda")
    weights = hbm_copies(torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.02)
    reference = F.linear(x, weights[0]).float()
    found = [_row(name, n, k, "cublas", timed_us(x, weights), rows=rows)]
    for tile in tiles:
        if time.time() > deadline:
            print(f"{name}: budget spent after {len(found) - 1} tiles", flush=True)
            break
        err = (gemv(x, weights[0], config=tile).float() - reference).abs().max().item()
        us = timed_us(x, weights, fn=lambda a, w, t=tile: gemv(a, w, config=t))
        found.append(_row(name, n, k, "triton", us, rows=rows, tile=tile, max_abs_err=err))
    del weights
    torch.cuda.empty_cache()
    return found


def compile_all(rows: int, tiles) -> None:
    """Each tile compiled once (every shape shares its specialization)."""
    x = torch.ones(rows, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.ones(64, 4096, device="cuda", dtype=torch.bfloat16)
    for tile in tiles:
        gemv(x, w, config=tile)
    torch.cuda.synchronize()


def summary(results: list[dict], rows: int) -> None:
    default = gemv_config if rows == 1 else rows_config
    for name in dict.fromkeys(r["group"] for r in results):
        mine = [r for r in results if r["group"] == name and r["rows"] == rows]
        cublas = next(r for r in mine if r["kernel"] == "cublas")
        best = sorted(mine, key=lambda r: r["us"])[:6]
        print(f"{rows} rows, {name}: cuBLAS {cublas['us']} us; best: " + ", ".join(
            f"{r['kernel']} {r.get('tile')} {r['us']}" for r in best))  # fmt: skip
        chosen = [r for r in mine if r.get("tile") == default(r["n"], r["k"])]
        if chosen:
            print(f"  the default tile {chosen[0]['tile']}: {chosen[0]['us']} us")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--rows", default="1", help="comma-separated row counts, e.g. 1 or 8,16")
    p.add_argument("--budget-s", type=float, default=330)
    args = p.parse_args()
    shapes = [(name, base + a_rows, fan_in) for name, base, a_rows, fan_in in GROUPS]
    shapes.append(("lm_head", 128256, 4096))
    start, results = time.time(), []
    counts = [int(r) for r in args.rows.split(",")]
    runs = [(rows, shape) for rows in counts for shape in shapes]
    for i, (rows, (name, n, k)) in enumerate(runs):
        tiles = TILES if rows == 1 else ROW_TILES
        tiles = [(gemv_config if rows == 1 else rows_config)(n, k)] + tiles
        if i == 0 or rows != runs[i - 1][0]:
            compile_all(rows, tiles)
            print(f"{len(tiles)} tiles for {rows} rows compiled at {time.time() - start:.0f} s")
        share = (args.budget_s - (time.time() - start)) / (len(runs) - i)
        results += sweep_shape(name, n, k, rows, tiles, time.time() + share)
    for rows in counts:
        summary(results, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
