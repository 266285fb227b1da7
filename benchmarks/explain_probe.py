"""Time the token view ("Why this answer?") through the app's door: explain_reply on a reply of
N tokens, adapter and base teacher-forced in one batched forward, as the pages and the CLI call it.

    python benchmarks/explain_probe.py --model llama-8b-shape --models-dir /tmp/ff-models \
        --quantization bf16 --reply-tokens 256 [--json FILE]
    python benchmarks/explain_probe.py --model demo --models-dir /tmp/ff-demo --quantization none
"""

import argparse
import json
import random
import time
from pathlib import Path

from ff_lib.inference.benchmodels import build_models
from ff_lib.inference.explain import explain_reply
from ff_lib.inference.host import new_host
from ff_lib.inference.prompts import encode


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="llama-8b-shape")
    p.add_argument("--models-dir", default="/tmp/ff-models")
    p.add_argument("--quantization", default="auto")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--reply-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    rank = 8 if args.model == "demo" else 16
    base, adapters = build_models(args.model, Path(args.models_dir) / args.model, rank)
    host = new_host()
    started = time.perf_counter()
    tokenizer = host.load_base(str(base), args.quantization).tokenizer
    load_s = time.perf_counter() - started
    rng = random.Random(0)
    low, high = max(tokenizer.all_special_ids) + 1, len(tokenizer)  # ordinary tokens only
    ids = [rng.randrange(low, high) for _ in range(args.prompt_tokens + args.reply_tokens)]
    prompt = tokenizer.decode(ids[: args.prompt_tokens])
    reply = tokenizer.decode(ids[args.prompt_tokens :])
    reply_len = len(encode(tokenizer, reply))
    times = []
    for _ in range(args.repeats + 1):  # the first also reads the adapter into a slot
        started = time.perf_counter()
        view = explain_reply(host, str(base), adapters["a0"], prompt, reply, 5)
        times.append(time.perf_counter() - started)
    result = {
        "model": args.model,
        "quantization": view.quantization,
        "prompt_tokens": len(encode(tokenizer, prompt)),
        "reply_tokens": reply_len,
        "positions": view.positions,
        "load_s": round(load_s, 2),
        "first_s": round(times[0], 4),
        "seconds": [round(t, 4) for t in times[1:]],
        "median_s": round(sorted(times[1:])[len(times[1:]) // 2], 4),
        "changed_share": view.changed_share,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
