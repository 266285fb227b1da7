"""`python -m ff_lib bench`: the app's own door timed, beside the reference app's way of answering.

Ours is what the pages run: a fresh `ModelHost` configured as `get_host()` configures it, every
reply through `stream_reply` / `generate` / `generate_many`, so the scheduler, the cache policy,
the quantization choice and the NF4 configuration are the app's. The reference (the app we
replace) is an unmerged PeftModel answering with plain `generate`, the base reloaded per switch.

The bases are random weights whose end-of-turn rows are zeroed (benchmodels.silence_eos), and the
timed replies are greedy, so every timed reply runs to its asked length; a reply that ends
early stops the bench with an error rather than give a rate timed on fewer tokens.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ff_lib.bench_door import (
    Door,
    adapter_memory,
    batch_one,
    concurrent_rows,
    first_reply_after_load,
    greedy,
    greedy_tokens,
    prompt_messages,
    sampled_rate,
    scorecard,
    second_request_ttft,
    switching,
)
from ff_lib.inference import ModelHost, benchkit, benchmodels
from ff_lib.inference.bases import QUANTIZATIONS
from ff_lib.inference.host import new_host
from ff_lib.inference.prompts import encode, render

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("demo", "llama-8b-shape")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; the defaults are the CI-sized demo run."""

    model: str = "demo"
    quantization: str = "auto"  # what the pages ask for
    prompt_tokens: int = 64  # the short prompt, chat template included
    long_prompt_tokens: int | None = None  # None: the longest the context allows
    new_tokens: int = 64  # tokens of each timed batch-1 reply
    batch_new_tokens: int = 32  # tokens of each row of the concurrent batches
    scorecard_prompts: int = 8  # scorecard rows (each answered by the base and 2 adapters)
    scorecard_new_tokens: int = 16
    switches: int = 1000  # slot loads (with eviction) before the base is compared bit for bit
    reference_new_tokens: int = 32  # the reference is slow: fewer tokens give the same rate
    equality_tokens: int = 32  # greedy tokens compared between our door and the reference
    rank: int = 8
    repeats: int = 3  # timed replies per figure (medians)
    sample_rows: int = 1_000_000
    page_messages: int = 500  # 0: skip the page rerun
    models_dir: str | None = None  # keep the built base/adapters here and reuse them
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
        counts = (self.prompt_tokens, self.new_tokens, self.batch_new_tokens)
        if min(*counts, self.scorecard_new_tokens, self.reference_new_tokens) < 2:
            raise ValueError("token counts must be at least 2")
        if min(self.repeats, self.scorecard_prompts, self.switches) < 1:
            raise ValueError("repeats, scorecard prompts and switches must be at least 1")

    @classmethod
    def for_model(cls, model: str, **overrides) -> "BenchConfig":
        """The issue's sizes for the 8B shape (512 and 4,096-token prompts, 256 new, rank 16)."""
        if model == "llama-8b-shape":
            sizes = dict(
                prompt_tokens=512,
                long_prompt_tokens=4096,
                new_tokens=256,
                batch_new_tokens=128,
                scorecard_new_tokens=64,
                reference_new_tokens=64,
                equality_tokens=64,
                rank=16,
            )
            sizes.update(overrides)
            return cls(model=model, **sizes)
        return cls(model=model, **overrides)


def app_host(max_adapters: int | None = None) -> ModelHost:
    """A fresh ModelHost configured as `get_host()` configures the app's (FF_MAX_ADAPTERS)."""
    return new_host(max_adapters)


def drift_after_switches(cfg: BenchConfig, base: Path, adapters: dict, log) -> dict:
    """A host of 2 slots and 3 adapters: `switches` slot loads, each evicting another; every
    base weight tensor, and the base's logits, compared bit for bit before and after."""
    door = Door(app_host(max_adapters=2), base, cfg.quantization, adapters, log)
    try:
        engine = door.engine
        messages = prompt_messages(engine.tokenizer, 32, 3)
        ids = encode(engine.tokenizer, render(engine.tokenizer, messages)[0])
        snapshot = benchkit.snapshot_weights(engine.model)
        before = door.host.score(str(base), ids, [None], cfg.quantization)
        slots = engine.batched.slots
        folders = [str(adapters[n]) for n in ("a0", "a1", "a2")]

        def alternate():
            times, loads = [], slots.loads
            for i in range(cfg.switches):
                slots.ensure(folders[i % len(folders)], set())
                times.append(slots.last_switch_s)
            engine.batched.drop_stale_graphs()
            return times, slots.loads - loads

        times, loads = engine.scheduler.run_exclusive(alternate, timeout=max(600.0, cfg.switches))
        for name in ("a0", "a1", "a2", None):  # and each answers through the door afterwards
            door.reply(messages, name, greedy(2))
        after = door.host.score(str(base), ids, [None], cfg.quantization)
        drift = {
            "switches": cfg.switches,
            "slot_loads": loads,
            **benchkit.changed_fraction(snapshot),
            "base_logits_identical": benchkit.bit_identical(before, after),
        }
    finally:
        door.host.release()
    log(f"ours: after {cfg.switches} slot loads the base changed {drift['changed_fraction']:.3g}")
    return {
        "drift_after_switches": drift,
        "adapter_load_s": statistics.median(times),
    }


def measure_ours(cfg: BenchConfig, base: Path, adapters: dict, log) -> tuple[dict, dict, list]:
    """Every figure of our door; (figures, our greedy tokens, the prompt ids they answered)."""
    benchkit.free_memory()
    benchkit.reset_peak()
    tokenizer = benchmodels.tokenizer_of(base)
    short = prompt_messages(tokenizer, cfg.prompt_tokens, 1)
    door = Door(app_host(), base, cfg.quantization, adapters, log)
    try:
        out = first_reply_after_load(door, short)
        log(
            f"ours: {out['describe']}, base loaded in {out['load_s']:.2f} s, first text "
            f"{out['first_text_after_load_s']:.3f} s after"
        )
        long = prompt_messages(
            tokenizer, cfg.long_prompt_tokens or out["context"] - cfg.new_tokens, 2
        )
        out.update(adapter_memory(door))
        out.update(batch_one(door, short, cfg.new_tokens, cfg.repeats))
        out.update(batch_one(door, long, cfg.new_tokens, cfg.repeats, "_long"))
        log(
            f"ours: batch 1: {out['decode_tokens_per_s']:.1f} tok/s at {out['prompt_tokens']} "
            f"prompt tokens, {out['decode_tokens_per_s_long']:.1f} at {out['prompt_tokens_long']}"
        )
        out["decode_tokens_per_s_sampled"] = sampled_rate(door, short, cfg.new_tokens)
        out.update(switching(door, short, cfg.repeats))
        out.update(concurrent_rows(door, cfg.prompt_tokens, cfg.batch_new_tokens, cfg.repeats))
        out["second_request_ttft_s"] = second_request_ttft(door, short, cfg.new_tokens, cfg.repeats)
        out.update(scorecard(door, cfg.scorecard_prompts, cfg.scorecard_new_tokens))
        log(
            f"ours: scorecard {out['scorecard_rows_per_s']:.2f} rows x models/s together, "
            f"{out['scorecard_sequential_rows_per_s']:.2f} one by one"
        )
        ours_tokens = greedy_tokens(door, short, cfg.equality_tokens)
        ids = encode(tokenizer, render(tokenizer, short)[0])
    finally:
        door.host.release()
    out.update(drift_after_switches(cfg, base, adapters, log))
    return out, ours_tokens, ids


def time_sample_prompts(rows: int) -> tuple[dict | None, str | None]:
    """({in_session, with_open, query} ms, reason when not measured)."""
    try:
        from ff_lib.data.bench import time_sample_prompts as timer
    except ImportError as exc:
        return None, f"ff_lib.data.bench unavailable: {exc}"
    return timer(rows=rows, repeats=10), None


def time_page_rerun(messages: int) -> tuple[float | None, str | None]:
    """Median ms of one Inference page rerun holding `messages` messages (a subprocess,
    so that Streamlit stays out of this process)."""
    if messages <= 0:
        return None, "skipped (--page-messages 0)"
    script = ROOT / "benchmarks" / "page_rerun.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--messages", str(messages)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"page rerun script failed: {tail[0]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])["page_rerun_ms"], None


def workspace_figures(cfg: BenchConfig, log) -> dict:
    sampled, reason = time_sample_prompts(cfg.sample_rows)
    if reason:
        log(f"sample_prompts not measured: {reason}")
    sampled = sampled or {}
    page_ms, page_reason = time_page_rerun(cfg.page_messages)
    if page_reason:
        log(f"page rerun not measured: {page_reason}")
    return {
        # As the page calls it: inside the rerun's one DuckDB session.
        "sample_prompts_ms": sampled.get("in_session"),
        "sample_prompts_query_ms": sampled.get("query"),
        "sample_prompts_open_ms": sampled.get("with_open"),
        "sample_prompts_rows": cfg.sample_rows,
        "page_rerun_ms": page_ms,
        "page_rerun_messages": cfg.page_messages,
        "page_rerun_reason": page_reason,
    }


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Every figure of the table, as one JSON-ready dict."""
    from ff_lib.inference.bases import choose_quantization

    choose_quantization(cfg.quantization, benchkit.cuda())  # refuses bf16/NF4 without CUDA now
    result: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "config": asdict(cfg),
        "versions": benchkit.versions(),
        "device": benchkit.device_name(),
        "bandwidth_gb_s": benchkit.copy_bandwidth_gb_s(),
    }
    with tempfile.TemporaryDirectory(prefix="ff-bench-") as tmp:
        started = time.perf_counter()
        folder = Path(cfg.models_dir) / cfg.model if cfg.models_dir else Path(tmp)
        base, adapters = benchmodels.build_models(cfg.model, folder, cfg.rank, cfg.seed)
        log(f"base + {len(adapters)} adapters ready in {time.perf_counter() - started:.1f} s")
        ours, ours_tokens, ids = measure_ours(cfg, base, adapters, log)
        result.update(ours)
        mode = ours["quantization_mode"]
        sizes = benchkit.ReferenceSizes(cfg.reference_new_tokens, cfg.repeats)
        result.update(
            benchkit.measure_reference(base, adapters["a1"], mode, ids, ours_tokens, sizes)
        )
        log(
            f"reference: {result['reference_decode_tokens_per_s']:.1f} tok/s, switch "
            f"{result['reference_switch_s']:.2f} s"
        )
    result.update(derived(result))
    result.update(workspace_figures(cfg, log))
    return result


def derived(r: dict) -> dict:
    """Floor (copy bandwidth / weight bytes per token), % of it, the switch speed-up."""
    bw = r["bandwidth_gb_s"]
    floor = bw * 1e9 / r["weight_bytes_per_token"] if bw else None
    return {
        "floor_tokens_per_s": floor,
        "percent_of_floor": 100 * r["decode_tokens_per_s"] / floor if floor else None,
        "percent_of_floor_long": 100 * r["decode_tokens_per_s_long"] / floor if floor else None,
        # an adapter not in a slot yet: read into a slot, against the reference's base reload
        "switch_speedup": r["reference_switch_s"] / max(r["adapter_load_s"], 1e-9),
    }
