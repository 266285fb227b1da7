"""Where the first reply after a fresh load spends its time (a diagnostic, not a figure of the
bench): the engine's own methods are timed (CUDA synchronized around each) while the page's
first request runs through the door; then prefills of new prompt lengths, under each SDPA
backend, and a profile of one warm prefill (kernel count, GPU time against wall time).

    python benchmarks/first_reply_trace.py --model llama-8b-shape --models-dir /tmp/ff-models
"""

import functools
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TRACED = {
    "ff_lib.inference.decode:BatchedLM": ("prefill", "prefill_many", "warm_up", "_capture"),
    "ff_lib.inference.decode_step:DecodeSteps": ("start_chain", "chain_step", "chain_read"),
    "ff_lib.inference.slots:AdapterSlots": ("ensure", "_grow", "_write", "_check_shapes"),
    "ff_lib.inference.slots:": ("read_lora", "_load_state", "_on_device"),
    "ff_lib.inference.sampling:RowSampler": ("start", "choose"),
}


def _trace(calls: list, t0: float) -> None:
    import importlib

    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    for where, names in TRACED.items():
        module, cls = where.split(":")
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner  # a class, or the module's functions
        for name in names:
            fn = getattr(owner, name, None)
            if fn is None:
                continue

            @functools.wraps(fn)
            def timed(*a, _fn=fn, _name=f"{cls or module}.{name}", **k):
                sync()
                start = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    sync()
                    end = time.perf_counter()
                    calls.append((_name, round(start - t0, 4), round(end - start, 4)))

            setattr(owner, name, timed)


def _watch_compiles(calls: list, t0: float) -> None:
    """Record each Triton kernel compiled, and each torch.compile graph, with its time."""
    import torch
    from triton import knobs

    def triton_hook(*, key, repr, fn, compile, is_manual_warmup, already_compiled):
        calls.append(("triton compile " + repr[:600], round(time.perf_counter() - t0, 4), 0))
        return None  # compile as usual

    knobs.runtime.jit_cache_hook = triton_hook
    callbacks = torch._dynamo.callback_handler

    def started(*_):
        calls.append(("dynamo compile start", round(time.perf_counter() - t0, 4), 0))

    def ended(*_):
        calls.append(("dynamo compile end", round(time.perf_counter() - t0, 4), 0))

    callbacks.register_start_callback(started)
    callbacks.register_end_callback(ended)
    gc_started = {}

    def collected(phase, info):  # Python's garbage collector: full collections, when slow
        now = time.perf_counter()
        if phase == "start":
            gc_started["at"] = now
        elif now - gc_started.get("at", now) > 0.005:
            gen = info["generation"]
            calls.append(
                (f"gc gen {gen}", round(gc_started["at"] - t0, 4), round(now - gc_started["at"], 4))
            )

    gc.callbacks.append(collected)


class _StackSampler:
    """Every 20 ms, where each other thread is (its innermost project frames): to find what a
    thread waits in when a call is slow for no reason its own timings show."""

    def __init__(self):
        import threading

        self.counts: dict = {}
        self.loads: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="stack-sampler")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def _run(self):
        import threading
        import traceback

        names = {}
        while not self._stop.wait(0.02):
            names.update({t.ident: t.name for t in threading.enumerate()})
            self.loads.append(os.getloadavg()[0])
            for ident, frame in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue
                stack = traceback.extract_stack(frame)[-4:]
                where = " < ".join(
                    f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)
                )
                key = f"{names.get(ident, ident)}: {where}"
                self.counts[key] = self.counts.get(key, 0) + 1

    def top(self, n: int = 25) -> list:
        return sorted(self.counts.items(), key=lambda kv: -kv[1])[:n]


def _prefill_times(engine, lengths, backend) -> dict:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    batched = engine.batched
    out = {}
    for n in lengths:
        ids = [(7 * i) % 1000 + 10 for i in range(n)]

        def run(ids=ids):
            ctx = sdpa_kernel(getattr(SDPBackend, backend)) if backend else _nothing()
            with ctx:
                torch.cuda.synchronize()
                start = time.perf_counter()
                batched.prefill(0, ids, batched.slots.slot_of(None))
                torch.cuda.synchronize()
                return time.perf_counter() - start

        out[n] = [round(engine.scheduler.run_exclusive(run), 4) for _ in range(2)]
    return out


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _prefill_many_times(engine) -> list:
    """Four 512-token prompts in one padded forward, as 16 rows arriving together are prefilled
    (four forwards of 2,048 tokens)."""
    import torch

    batched = engine.batched
    prompts = [[(7 * i + r) % 1000 + 10 for i in range(512)] for r in range(4)]
    slots = [batched.slots.none_slot] * 4

    def run():
        torch.cuda.synchronize()
        start = time.perf_counter()
        batched.prefill_many(0, prompts, slots)
        torch.cuda.synchronize()
        return round(time.perf_counter() - start, 4)

    return [engine.scheduler.run_exclusive(run) for _ in range(3)]


def _profile_prefill(engine, n: int, adapter_slot: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    batched = engine.batched
    ids = [(7 * i) % 1000 + 10 for i in range(n)]

    def run():
        batched.prefill(0, ids, adapter_slot)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            batched.prefill(0, ids, adapter_slot)
            torch.cuda.synchronize()
            wall = time.perf_counter() - start
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        gpu = sum(e.device_time_total for e in kernels) / 1e3
        top: dict = {}
        for e in kernels:
            count, ms = top.get(e.name[:60], (0, 0.0))
            top[e.name[:60]] = (count + 1, ms + e.device_time_total / 1e3)
        ranked = sorted(top.items(), key=lambda kv: -kv[1][1])[:12]
        return {"wall_ms": wall * 1e3, "gpu_ms": gpu, "kernels": len(kernels), "top": ranked}

    return engine.scheduler.run_exclusive(run)


def main() -> None:
    from ff_lib.bench_door import probe_parser

    p = probe_parser()
    p.add_argument("--first-only", action="store_true", help="only the first reply after a load")
    args = p.parse_args()
    import torch

    from ff_lib.bench_door import first_reply_after_load, fresh_door

    calls: list = []
    t0 = time.perf_counter()
    _trace(calls, t0)
    _watch_compiles(calls, t0)
    door, messages = fresh_door(args.model, args.models_dir, args.quantization)
    with _StackSampler() as sampler:
        first = first_reply_after_load(door, messages)
    figures_stacks = sampler.top()
    load_avg = (min(sampler.loads, default=0), max(sampler.loads, default=0))
    figures = {k: v for k, v in first.items() if isinstance(v, float)}
    figures["calls"] = calls[:120]
    figures["stacks_during_first_reply"] = figures_stacks
    figures["load_average_min_max"] = load_avg
    if args.first_only:
        print(json.dumps(figures, indent=1, default=str))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
        return
    from torch._dynamo.utils import counters

    figures["dynamo"] = {k: dict(v) for k, v in counters.items() if v}
    engine = door.engine
    calls.clear()
    # Prompt lengths never seen before in this process, each prefilled twice (the engine's
    # own attention backends; FF_TRACE_SDPA names one to force around them, e.g. CUDNN_ATTENTION)
    backend = os.environ.get("FF_TRACE_SDPA") or None
    figures[f"prefill_s_{backend}"] = _prefill_times(engine, (301, 517, 777, 1201), backend)
    slots = engine.batched.slots
    slot = slots.slot_of(next(iter(slots.names))) if slots.names else slots.none_slot
    figures["profile_prefill_512_adapter"] = _profile_prefill(engine, 512, slot)
    figures["profile_prefill_512_base"] = _profile_prefill(
        engine, 512, engine.batched.slots.none_slot
    )
    figures["prefill_many_4x512_s"] = _prefill_many_times(engine)
    figures["torch"] = torch.__version__
    text = json.dumps(figures, indent=1, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
