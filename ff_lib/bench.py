"""`python -m ff_lib bench`: our inference path and the reference app's, side by side, in one process.

Ours: base loaded once, adapters attached by name and merged in place on switch, the fast
decoder (static KV cache, one CUDA graph per step on CUDA) streaming text token by token.
Reference (the app we replace): unmerged PeftModel, plain `generate`, no streaming, the whole
base reloaded for every adapter switch.
"""

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from ff_lib.inference import benchkit
from ff_lib.inference.fastpath import FastDecoder, Sampling, TextStream

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("demo", "llama-8b-shape")
QUANTIZATIONS = ("none", "nf4")
DEMO_CORPUS_FILES = ("capitals.jsonl", "pirate.jsonl")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; the defaults are the CI-sized demo run."""

    model: str = "demo"
    quantization: str = "none"
    prompt_tokens: int = 48
    new_tokens: int = 64
    reference_new_tokens: int = 32  # the reference is slow: fewer tokens give the same rate
    equality_tokens: int = 32  # greedy tokens compared between our path and the reference
    rank: int = 8
    repeats: int = 7  # the demo's replies take milliseconds: medians of several
    sample_rows: int = 1_000_000
    page_messages: int = 500
    compile_step: bool = False  # torch.compile the captured step (fuses the small kernels)
    use_graph: bool | None = None  # None: CUDA graphs on CUDA; False: the plain static-cache loop
    models_dir: str | None = None  # keep the built base/adapters here and reuse them
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
        if min(self.prompt_tokens, self.new_tokens, self.reference_new_tokens) < 2:
            raise ValueError("token counts must be at least 2")

    @classmethod
    def for_model(cls, model: str, **overrides) -> "BenchConfig":
        """The issue's sizes for the 8B shape (512-token prompt, 256 new, rank 16)."""
        if model == "llama-8b-shape":
            sizes = dict(
                prompt_tokens=512,
                new_tokens=256,
                reference_new_tokens=64,
                equality_tokens=64,
                rank=16,
            )
            sizes.update(overrides)
            return cls(model=model, **sizes)
        return cls(model=model, **overrides)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _demo_corpus() -> list[str]:
    texts = []
    for name in DEMO_CORPUS_FILES:
        path = ROOT / "ff_lib" / "demo_data" / name
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    texts.extend(str(v) for v in row.values())
    return texts or ["The capital of France is Paris.", "Arr, hoist the sails!"]


def build_models(cfg: BenchConfig, folder: Path, n_adapters: int = 4) -> tuple[Path, dict]:
    """A base folder and `n_adapters` random LoRA folders named a0, a1, ..."""
    base = folder / "base"
    # the tiny model needs large deltas for adapters to change its answers
    b_std = 0.5 if cfg.model == "demo" else 0.02
    if not (base / "config.json").exists():
        if cfg.model == "demo":
            from ff_lib.inference.tiny import build_tiny_base

            build_tiny_base(base, _demo_corpus())
        else:
            benchkit.build_llama_8b_shape(base, seed=cfg.seed)
    adapters = {}
    for i in range(n_adapters):
        path = folder / f"a{i}"
        if not (path / "adapter_config.json").exists():
            benchkit.build_random_adapter(path, base, cfg.rank, seed=i + 1, b_std=b_std)
        adapters[f"a{i}"] = path
    return base, adapters


def _prompt(cfg: BenchConfig, tokenizer) -> list[int]:
    rng = random.Random(cfg.seed)
    low = len(tokenizer.all_special_ids) + 1
    return [rng.randrange(low, len(tokenizer)) for _ in range(cfg.prompt_tokens)]


def _fast_run(decoder: FastDecoder, ids: list[int], n: int, tokenizer=None):
    """(token ids, stats, total seconds) of one greedy reply forced to n tokens."""
    stream = TextStream(tokenizer) if tokenizer is not None else None
    t0 = time.perf_counter()
    tokens = []
    for token in decoder.generate(ids, Sampling(), n):
        tokens.append(token)
        if stream is not None:
            stream.push(token)
    if stream is not None:
        stream.flush()
    return tokens, decoder.stats, time.perf_counter() - t0


def _first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def measure_ours(cfg: BenchConfig, base: Path, adapters: dict, log) -> dict:
    """Our path: load once, hot-swap adapters, fast decoder."""
    out: dict = {}
    benchkit.free_memory()
    benchkit.reset_peak()
    t0 = time.perf_counter()
    model, tokenizer = benchkit.load_base(base, cfg.quantization)
    benchkit.sync()
    out["load_s"] = time.perf_counter() - t0
    out["base_memory_gib"] = benchkit.peak_memory_gib()
    out["weight_bytes_per_token"] = benchkit.decode_bytes_per_token(model)
    log(f"ours: base loaded in {out['load_s']:.2f} s ({model.dtype})")

    names = list(adapters)
    peft = benchkit.attach_adapters(model, {names[0]: adapters[names[0]]})
    # A base weight watched for drift: merging and unmerging round it each time.
    probe = peft.get_base_model().model.layers[0].mlp.down_proj.get_base_layer().weight
    probe_before = probe.detach().clone()
    max_len = -(-(cfg.prompt_tokens + cfg.new_tokens + 8) // 128) * 128
    decoder = FastDecoder(
        peft, max_len=max_len, use_graph=cfg.use_graph, compile_step=cfg.compile_step
    )
    out["describe"] = (
        f"{'nf4' if cfg.quantization == 'nf4' else str(model.dtype)} on {decoder.device}"
    )
    out["fast_path"] = "cuda-graph" if decoder.use_graph else "static-cache loop (no graphs)"
    out["adapter_mode"] = "merged in place" if decoder.merge_adapters else "live LoRA"
    switched = [0]
    activate = decoder.activate

    def counting_activate(adapter):
        switched[0] += 1
        return activate(adapter)

    decoder.activate = counting_activate
    decoder.activate(names[0])
    out["warm_up_s"] = decoder.warm_up()
    log(f"ours: warm-up {out['warm_up_s']:.2f} s")
    ids = _prompt(cfg, tokenizer)

    # Plain and streamed replies alternate, so a busy moment of the machine hits both alike;
    # the overhead is the median of each pair's ratio.
    runs, streamed = [], []
    for _ in range(cfg.repeats):
        runs.append(_fast_run(decoder, ids, cfg.new_tokens))
        streamed.append(_fast_run(decoder, ids, cfg.new_tokens, tokenizer))
    out["ttft_s"] = _median([r[1].ttft_s for r in runs])
    out["decode_tokens_per_s"] = _median([r[1].tokens_per_s for r in runs])
    out["stream_overhead"] = _median([s[2] / r[2] for r, s in zip(runs, streamed, strict=True)]) - 1
    fast_tokens = {names[0]: runs[0][0][: cfg.equality_tokens]}
    peaks = {"1": benchkit.peak_memory_gib()}
    log(f"ours: ttft {out['ttft_s'] * 1000:.1f} ms, {out['decode_tokens_per_s']:.1f} tok/s")

    # Switching: the second adapter is loaded once, then switching is merge/unmerge in place.
    peft.load_adapter(adapters[names[1]], adapter_name=names[1])
    graphs_before = len(decoder._graphs)
    switches = [decoder.activate(names[1 - i % 2]) for i in range(2 * cfg.repeats)]
    out["switch_s"] = _median(switches)
    out["switch_recaptures"] = len(decoder._graphs) - graphs_before
    decoder.activate(names[1])
    fast_tokens[names[1]] = _fast_run(decoder, ids, cfg.equality_tokens)[0]
    decoder.activate(None)
    fast_tokens["base"] = _fast_run(decoder, ids, cfg.equality_tokens)[0]
    out["switch_recaptures"] = len(decoder._graphs) - graphs_before
    peaks["2"] = benchkit.peak_memory_gib()
    for name in names[2:4]:
        peft.load_adapter(adapters[name], adapter_name=name)
    decoder.activate(names[3])
    _fast_run(decoder, ids, cfg.equality_tokens)
    peaks["4"] = benchkit.peak_memory_gib()
    out["peak_memory_gib"] = peaks
    log(f"ours: switch {out['switch_s'] * 1000:.1f} ms, recaptures {out['switch_recaptures']}")

    # Greedy equality with the plain path, each pair on the same weights.
    n = cfg.equality_tokens
    decoder.activate(names[0])
    merged_fast = _fast_run(decoder, ids, n)[0]
    merged_plain = benchkit.plain_generate(peft, ids, n).tokens
    decoder.activate(None)
    base_fast = _fast_run(decoder, ids, n)[0]
    with peft.disable_adapter():
        base_plain = benchkit.plain_generate(peft, ids, n).tokens
    out["greedy_first_difference"] = {
        "merged_adapter_vs_generate": _first_difference(merged_fast, merged_plain),
        "base_vs_generate": _first_difference(base_fast, base_plain),
    }
    out["greedy_tokens_compared"] = n
    gaps = {}
    for label, fast, plain, ctx in (
        ("merged_adapter_vs_generate", merged_fast, merged_plain, names[0]),
        ("base_vs_generate", base_fast, base_plain, None),
    ):
        k = _first_difference(fast, plain)
        if k is not None and k < min(len(fast), len(plain)):
            decoder.activate(ctx)
            with peft.disable_adapter() if ctx is None else nullcontext():
                gaps[label] = benchkit.logit_gap(peft, ids, plain[:k], fast[k], plain[k])
    out["greedy_disagreement_gaps"] = gaps
    out["base_drift"] = {"switches": switched[0], **benchkit.weight_drift(probe, probe_before)}
    log(
        f"ours: greedy first difference {out['greedy_first_difference']}, drift {out['base_drift']}"
    )
    del decoder, peft, model
    benchkit.free_memory()
    return {"out": out, "fast_tokens": fast_tokens, "ids": ids}


def measure_reference(cfg: BenchConfig, base: Path, adapters: dict, log) -> dict:
    """The reference app: reload the base per adapter, unmerged PeftModel, plain generate."""
    from peft import PeftModel

    out: dict = {}
    names = list(adapters)
    benchkit.free_memory()
    t0 = time.perf_counter()
    model, tokenizer = benchkit.load_base(base, cfg.quantization)
    peft = PeftModel.from_pretrained(model, adapters[names[1]], adapter_name=names[1])
    peft.eval()
    benchkit.sync()
    out["reference_switch_s"] = time.perf_counter() - t0
    log(f"reference: base reload + adapter {out['reference_switch_s']:.2f} s")
    ids = _prompt(cfg, tokenizer)
    ttft = _median([benchkit.plain_generate(peft, ids, 1).seconds for _ in range(cfg.repeats)])
    run = benchkit.plain_generate(peft, ids, cfg.reference_new_tokens)
    out["reference_ttft_s"] = ttft
    out["reference_decode_tokens_per_s"] = (cfg.reference_new_tokens - 1) / max(
        run.seconds - ttft, 1e-9
    )
    streamed_s = benchkit.stream_plain_generate(peft, tokenizer, ids, cfg.reference_new_tokens)
    out["reference_stream_tokens_per_s"] = (cfg.reference_new_tokens - 1) / max(
        streamed_s - ttft, 1e-9
    )
    out["reference_stream_overhead"] = streamed_s / run.seconds - 1
    log(f"reference: {out['reference_decode_tokens_per_s']:.1f} tok/s")
    del peft, model
    benchkit.free_memory()
    return {"out": out, "live_tokens": run.tokens[: cfg.equality_tokens]}


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
    script = ROOT / "benchmarks" / "page_rerun.py"
    page = ROOT / "pages" / "1_Inference.py"
    if not page.exists():
        return None, "pages/1_Inference.py does not exist yet"
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


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Every figure of the table, as one JSON-ready dict."""
    result: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "config": asdict(cfg),
        "versions": benchkit.versions(),
        "device": benchkit.device_name(),
    }
    result["bandwidth_gb_s"] = benchkit.copy_bandwidth_gb_s()
    with tempfile.TemporaryDirectory(prefix="ff-bench-") as tmp:
        t0 = time.perf_counter()
        folder = Path(cfg.models_dir) / cfg.model if cfg.models_dir else Path(tmp)
        base, adapters = build_models(cfg, folder)
        log(f"base + {len(adapters)} adapters ready in {time.perf_counter() - t0:.1f} s")
        ours = measure_ours(cfg, base, adapters, log)
        ref = measure_reference(cfg, base, adapters, log)
    result.update(ours["out"])
    result.update(ref["out"])
    names = list(adapters)
    result["greedy_first_difference"]["merged_adapter_vs_live_lora"] = _first_difference(
        ours["fast_tokens"][names[1]], ref["live_tokens"]
    )
    bw = result["bandwidth_gb_s"]
    result["floor_tokens_per_s"] = bw * 1e9 / result["weight_bytes_per_token"] if bw else None
    result["percent_of_floor"] = (
        100 * result["decode_tokens_per_s"] / result["floor_tokens_per_s"] if bw else None
    )
    result["switch_speedup"] = result["reference_switch_s"] / max(result["switch_s"], 1e-9)
    result["memory_per_adapter_gib"] = (
        result["peak_memory_gib"]["4"] - result["peak_memory_gib"]["2"]
    ) / 2
    sampled, reason = time_sample_prompts(cfg.sample_rows)
    sampled = sampled or {}
    # As the page calls it: inside the rerun's one DuckDB session.
    result["sample_prompts_ms"] = sampled.get("in_session")
    result["sample_prompts_query_ms"] = sampled.get("query")
    result["sample_prompts_open_ms"] = sampled.get("with_open")
    result["sample_prompts_rows"] = cfg.sample_rows
    if reason:
        log(f"sample_prompts not measured: {reason}")
    page_ms, reason = time_page_rerun(cfg.page_messages)
    result["page_rerun_ms"] = page_ms
    result["page_rerun_messages"] = cfg.page_messages
    if reason:
        result["page_rerun_reason"] = reason
        log(f"page rerun not measured: {reason}")
    return result


def _fmt(value, unit: str = "", scale: float = 1.0, digits: int = 1) -> str | None:
    if value is None:
        return None
    return f"{value * scale:.{digits}f}{unit}"


def table_rows(r: dict) -> list[tuple]:
    """(figure, ours, reference, goal) rows for people."""
    peaks = r["peak_memory_gib"]
    return [
        ("base load", _fmt(r["load_s"], " s", digits=2), None, None),
        (
            "adapter switch",
            _fmt(r["switch_s"], " ms", 1000),
            _fmt(r["reference_switch_s"], " s", digits=2),
            "<= 300 ms, >= 20x faster",
        ),
        (
            "  speed-up / recaptures",
            f"{r['switch_speedup']:.0f}x / {r['switch_recaptures']}",
            None,
            None,
        ),
        (
            "time to first token",
            _fmt(r["ttft_s"], " ms", 1000),
            _fmt(r["reference_ttft_s"], " ms", 1000),
            "<= 50 ms (H100)",
        ),
        (
            "decode tokens/s",
            _fmt(r["decode_tokens_per_s"], ""),
            _fmt(r["reference_decode_tokens_per_s"], ""),
            ">= 120 bf16, >= 40 NF4 (H100)",
        ),
        (
            "streaming overhead",
            _fmt(r["stream_overhead"], " %", 100),
            _fmt(r["reference_stream_overhead"], " %", 100),
            "<= 5 % (H100), <= 10 % (CPU)",
        ),
        (
            "peak memory 1/2/4 adapters",
            f"{peaks['1']:.2f} / {peaks['2']:.2f} / {peaks['4']:.2f} GiB",
            None,
            "<= base + 0.25 GiB each",
        ),
        ("copy bandwidth", _fmt(r["bandwidth_gb_s"], " GB/s", digits=0), None, None),
        ("floor (bandwidth / weight bytes)", _fmt(r["floor_tokens_per_s"], " tok/s"), None, None),
        ("ours as % of floor", _fmt(r["percent_of_floor"], " %", digits=0), None, ">= 60 %"),
        (
            f"sample_prompts ({r['sample_prompts_rows']:,} rows), in a rerun's session",
            _fmt(r["sample_prompts_ms"], " ms", digits=2),
            None,
            "<= 10 ms",
        ),
        (
            "sample_prompts, a lone call (DuckDB open + close)",
            _fmt(r["sample_prompts_open_ms"], " ms", digits=2),
            None,
            None,
        ),
        (
            f"Inference page rerun ({r['page_rerun_messages']} msgs)",
            _fmt(r["page_rerun_ms"], " ms"),
            None,
            "<= 300 ms",
        ),
    ]
