"""A small independent driver of the app's path on the GPU: replies through ModelHost.stream_reply
(the door the pages call), no bench code; used to cross-check the bench's figures
(BENCHMARKS.md). PROBE_STEP=1 also tries compiling the whole decode step (an experiment).

    python benchmarks/door_probe.py bf16 nf4      # JSON and a log line per mode; $OUT or /tmp/out
"""

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.getcwd())
from ff_lib.inference import benchmodels
from ff_lib.inference.host import ModelHost
from ff_lib.inference.settings import GenerationSettings

STEP = os.environ.get("PROBE_STEP") == "1"
if STEP:
    from ff_lib.inference import decode

    orig = decode.BatchedLM._decode_step
    compiled = {}

    def step(self, tok, pos, slot, kv, lora):
        key = (tok.shape[0], kv, lora)
        if key not in compiled:
            t0 = time.time()
            compiled[key] = torch.compile(
                lambda t, p, s: orig(self, t, p, s, kv, lora), dynamic=False
            )
            compiled[key](tok, pos, slot)
            print("compiled", key, time.time() - t0, flush=True)
        return compiled[key](tok, pos, slot)

    decode.BatchedLM._decode_step = step
    decode.BatchedLM.warm_up.__defaults__ = ((1,), (1024,))
OUT = Path(os.environ.get("OUT", "/tmp/out"))
res = {}


def log(*a):
    print(*a, flush=True)


t = time.time()
base = Path("/tmp/b8")
if not (base / "config.json").exists():
    benchmodels.build_llama_8b_shape(base)
ads = [
    benchmodels.build_random_adapter(Path(f"/tmp/ad{i}"), base, rank=16, seed=i) for i in range(4)
]
log("built", time.time() - t)
S = GenerationSettings(temperature=0.0, max_new_tokens=256, repetition_penalty=1.0)


def prompt(n):
    return " ".join(f"w{100 + (i * 7919) % 120000}" for i in range(n))


def one(host, n, adapter, settings=S):
    st = host.stream_reply(
        str(base), [{"role": "user", "content": prompt(n)}], settings, adapter, quantization=mode
    )
    time.perf_counter()
    first = None
    for _piece in st:
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    r = st.reply
    rate = (r.stats.new_tokens - 1) / (end - first) if first and r.stats.new_tokens > 1 else 0
    return {
        "tok_s": round(rate, 1),
        "ttft": r.stats.ttft_s,
        "new": r.stats.new_tokens,
        "prompt": r.stats.prompt_tokens,
        "finish": r.finish_reason,
    }


for mode in sys.argv[1:]:
    comp = os.environ.get("FF_COMPILE", "1")
    host = ModelHost()
    t = time.time()
    eng = host.load_base(str(base), mode)
    load = time.time() - t
    r = {
        "load_s": round(load, 1),
        "rows": eng.batched.max_rows,
        "ctx": eng.context_length,
        "quant": eng.quantization.label,
    }
    r["first"] = one(host, 512, ads[0])
    r["b1_512"] = one(host, 512, ads[0])
    r["b1_512_again"] = one(host, 512, ads[1])
    r["b1_base"] = one(host, 512, None)
    if STEP:
        res[f"{mode}-step"] = r
        log(mode, "step", json.dumps(r))
        continue
    r["b1_4096"] = one(host, 4096, ads[0])
    for rows in (8, 16):
        jobs = [
            dict(
                base_model=str(base),
                messages=[{"role": "user", "content": prompt(512 + i)}],
                settings=S,
                adapter_dir=(ads + [None])[i % 5],
                quantization=mode,
            )
            for i in range(rows)
        ]
        t = time.time()
        reps = host.generate_many(jobs)
        dt = time.time() - t
        r[f"batch{rows}_tok_s"] = round(sum(x.stats.new_tokens for x in reps) / dt, 1)
    r["captures"] = eng.batched.captures
    r["slot_gib"] = eng.batched.slots.bytes_per_adapter() / 2**30
    r["mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    res[f"{mode}-compile{comp}"] = r
    log(mode, json.dumps(r))
    host.release()
    del host, eng
    torch.cuda.empty_cache()
OUT.mkdir(parents=True, exist_ok=True)
(OUT / f"probe-{os.environ.get('FF_COMPILE', '1')}.json").write_text(json.dumps(res, indent=1))
