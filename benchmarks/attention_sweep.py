"""The decode attention kernel's time per layer for each split length (a diagnostic): the 8B
shape's rope_decode_attention at 1-16 rows for a few (KV bucket, row length) cases, replayed in
a CUDA graph as the step replays it (32 calls a replay, each on its own layer's cache, so that
no call finds its keys in L2). `now` is attention_splits' choice.

    python benchmarks/attention_sweep.py [--json out.json]
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from expand_sweep import time_us  # noqa: E402  (benchmarks/, beside this script)

from ff_lib.inference import kernels  # noqa: E402

N_HEADS, N_KV, D, LAYERS, MAX_LEN, MAX_ROWS = 32, 8, 128, 32, 4096, 16
CASES = ((512, 500), (1024, 576), (1024, 1000), (4096, 2100), (4096, 4000))  # (bucket, length)
SPLIT_LENS = (64, 128, 192, 256, 384, 512, 1024)


def launches(caches, cos, sin) -> list:
    """Warps and pipeline stages of the split kernel at attention_splits' choice."""
    results = []
    default = dict(kernels.ATTENTION_LAUNCH)
    for rows in (1, 8, 16):
        qkv = torch.randn(rows, (N_HEADS + 2 * N_KV) * D, device="cuda").bfloat16()
        for kv, length in ((1024, 576), (4096, 4000)):
            lengths = torch.full((rows,), length, dtype=torch.long, device="cuda")

            def call(layer=[0], qkv=qkv, lengths=lengths, kv=kv):  # noqa: B006 - a counter
                k, v = caches[layer[0] % LAYERS]
                layer[0] += 1
                return kernels.rope_decode_attention(qkv, cos, sin, k, v, lengths, kv, N_HEADS)

            timings = {}
            for dots in (0, 1, 2):
                for warps, stages in ((4, 2), (4, 3), (8, 3)):
                    kernels.ATTENTION_LAUNCH = {"num_warps": warps, "num_stages": stages}
                    kernels.ATTENTION_DOTS = dots
                    try:
                        timings[f"d{dots}:{warps}w{stages}s"] = time_us(call)
                    finally:
                        kernels.ATTENTION_LAUNCH, kernels.ATTENTION_DOTS = default, 0
            out = [call() for _ in range(LAYERS)]
            for dots in (1, 2):  # the largest change of an output against DOTS 0
                kernels.ATTENTION_DOTS = dots
                low = [call() for _ in range(LAYERS)]
                kernels.ATTENTION_DOTS = 0
                diff = (torch.stack(out).float() - torch.stack(low).float()).abs().max().item()
                timings[f"max_diff_dots{dots}"] = diff
            best = min((k for k in timings if k.startswith("d")), key=timings.get)
            now = f"d0:{default['num_warps']}w{default['num_stages']}s"
            print(
                f"launch rows {rows:2d} bucket {kv} length {length}: now {timings[now]:.2f} us; "
                f"best {timings[best]:.2f} us ({best}); "
                + " ".join(f"{k}:{v:.4g}" for k, v in timings.items())
            )
            results.append({"rows": rows, "kv": kv, "length": length, "launch_us": timings})
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", default="1,2,4,8,16", help="rows of the split-length sweep")
    p.add_argument("--json")
    args = p.parse_args()
    shape = (MAX_ROWS, N_KV, MAX_LEN, D)
    caches = [
        (torch.randn(shape, device="cuda").bfloat16(), torch.randn(shape, device="cuda").bfloat16())
        for _ in range(LAYERS)
    ]
    cos = torch.randn(MAX_LEN, D, device="cuda").bfloat16()
    sin = torch.randn(MAX_LEN, D, device="cuda").bfloat16()
    chosen = kernels.attention_splits
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        qkv = torch.randn(rows, (N_HEADS + 2 * N_KV) * D, device="cuda").bfloat16()
        for kv, length in CASES:
            lengths = torch.full((rows,), length, dtype=torch.long, device="cuda")
            now = chosen(rows, N_KV, kv)

            def call(layer=[0], qkv=qkv, lengths=lengths, kv=kv):  # noqa: B006 - a counter
                k, v = caches[layer[0] % LAYERS]  # each call its own layer's cache
                layer[0] += 1
                return kernels.rope_decode_attention(qkv, cos, sin, k, v, lengths, kv, N_HEADS)

            timings = {}
            for split_len in sorted({*(s for s in SPLIT_LENS if s <= kv), now[1]}):
                splits = -(-kv // split_len)
                kernels.attention_splits = lambda *a, s=splits, n=split_len: (s, n)
                try:
                    timings[split_len] = time_us(call)
                finally:
                    kernels.attention_splits = chosen
            best = min(timings, key=timings.get)
            print(
                f"rows {rows:2d} bucket {kv:4d} length {length:4d}: now {timings[now[1]]:6.2f} us "
                f"(split {now[1]}); best {timings[best]:6.2f} us (split {best}); "
                + " ".join(f"{s}:{us:.1f}" for s, us in timings.items())
            )
            results.append({"rows": rows, "kv": kv, "length": length, "now": now[1], "us": timings})
    results += launches(caches, cos, sin)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
