"""Where the wall time of rows answered together goes, and what a reply's first token waits for
(a diagnostic beside the bench, not its figures): n mixed-adapter rows through the door as the
bench times them (`generate_many`'s steps one by one: checks, prepare, submit, read), each
request's submitted / placed / first token / ended times, and the prefill calls' host and GPU
times; then the time to first token of a short reply after a 256-token reply and after a
4-token one, split into admission, prefill and the first token.

    python benchmarks/batch_timeline.py --model llama-8b-shape --models-dir /tmp/ff-models
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _watch_prefills(records: list) -> None:
    """Each prefill call's host time and (CUDA events, read later) its GPU time."""
    import torch

    from ff_lib.inference.decode import BatchedLM

    for name in ("prefill", "prefill_many"):
        fn = getattr(BatchedLM, name)

        def timed(self, *a, _fn=fn, _name=name, **k):
            gpu = torch.cuda.is_available()
            start, end = (torch.cuda.Event(enable_timing=True) for _ in "se") if gpu else (0, 0)
            t = time.perf_counter()
            _ = gpu and start.record()
            out = _fn(self, *a, **k)
            _ = gpu and end.record()
            records.append([_name, t, time.perf_counter() - t, start, end])
            return out

        setattr(BatchedLM, name, timed)


def _settled(records: list, t0: float) -> list:
    import torch

    gpu = torch.cuda.is_available()
    _ = gpu and torch.cuda.synchronize()
    return [
        {"call": n, "at_ms": round((t - t0) * 1e3, 2), "host_ms": round(h * 1e3, 2),
         "gpu_ms": round(s.elapsed_time(e), 2) if gpu else None}
        for n, t, h, s, e in records if t >= t0
    ]  # fmt: skip


def rows_timeline(door, n: int, records: list, tokens: int) -> dict:
    from ff_lib.bench_door import ROTATION, greedy, prompt_messages
    from ff_lib.inference.door import checks_shared, prepare_together

    tokenizer = door.engine.tokenizer
    scheduler = door.engine.scheduler
    prompts = [prompt_messages(tokenizer, tokens, 100 + i) for i in range(n)]
    jobs = [door.job(prompts[i], ROTATION[i % len(ROTATION)], greedy(128)) for i in range(n)]
    door.many(jobs)  # graphs of this batch captured
    steps = scheduler.steps
    t0 = time.perf_counter()
    with checks_shared():  # as generate_many builds them
        streams = [door.host.stream_reply(**job) for job in jobs]
    t_checked = time.perf_counter()
    prepare_together(streams)  # as generate_many prepares them (one base here)
    t_prepared = time.perf_counter()
    for s in streams:
        s.start()
    t_started = time.perf_counter()
    read = []
    for s in streams:
        s.text()
        read.append(round((time.perf_counter() - t0) * 1e3, 2))
    wall = time.perf_counter() - t0

    def ms(t):
        return None if t is None else round((t - t0) * 1e3, 2)

    return {
        "rows": n,
        "wall_ms": round(wall * 1e3, 2),
        "tokens_per_s": sum(s.reply.stats.new_tokens for s in streams) / wall,
        "steps": scheduler.steps - steps,
        "checked_ms": ms(t_checked), "prepared_ms": ms(t_prepared), "started_ms": ms(t_started),
        "requests": [
            {"submitted": ms(s.request.submitted_at), "placed": ms(s.request.placed_at),
             "first": ms(s.request.first_token_at), "ended": ms(s.request.ended_at), "read": r}
            for s, r in zip(streams, read, strict=True)
        ],
        "prefills": _settled(records, t0),
    }  # fmt: skip


def ttft_after(door, messages, records: list, previous_tokens: int) -> dict:
    from ff_lib.bench_door import greedy

    door.reply(messages, "a0", greedy(previous_tokens))
    t0 = time.perf_counter()
    stream = door.host.stream_reply(**door.job(messages, "a0", greedy(4)))
    stream.text()
    r = stream.request
    return {
        "after_tokens": previous_tokens,
        "ttft_ms": round((r.first_token_at - r.submitted_at) * 1e3, 2),
        "admitted_ms": round((r.placed_at - r.submitted_at) * 1e3, 2),
        "prefill_to_token_ms": round((r.first_token_at - r.placed_at) * 1e3, 2),
        "prefills": _settled(records, t0),
    }


def main() -> None:
    from ff_lib.bench_door import first_reply_after_load, fresh_door, probe_parser

    p = probe_parser()
    p.add_argument("--rows", default="1,8,16")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--reply-tokens", type=int, default=256)
    args = p.parse_args()
    records: list = []
    _watch_prefills(records)
    door, messages = fresh_door(args.model, args.models_dir, args.quantization)
    from ff_lib.bench_door import prompt_messages

    messages = prompt_messages(door.engine.tokenizer, args.prompt_tokens, 7)
    out = {"first": {k: v for k, v in first_reply_after_load(door, messages).items()
                     if isinstance(v, float)}}  # fmt: skip
    out["ttft"] = [ttft_after(door, messages, records, t) for t in [args.reply_tokens, 4] * 3]
    for t in out["ttft"]:
        print("ttft after", t["after_tokens"], t["ttft_ms"], t["admitted_ms"],
              t["prefill_to_token_ms"], t["prefills"], flush=True)  # fmt: skip
    out["rows"] = [
        rows_timeline(door, int(n), records, args.prompt_tokens) for n in args.rows.split(",")
    ]
    for r in out["rows"]:
        print(json.dumps({k: v for k, v in r.items() if k != "requests"}), flush=True)
        for q in r["requests"]:
            print("   ", q)
    door.host.release()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
