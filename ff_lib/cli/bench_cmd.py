"""`bench`: the app's door timed against the reference app's way, one table (and --json FILE)."""

import json
from pathlib import Path

from ff_lib.cli.output import print_table, to_jsonable

SIZES = (
    ("prompt_tokens", "tokens of the short prompt, chat template included (8B shape: 512)"),
    ("long_prompt_tokens", "tokens of the long prompt (default: 4096 on the 8B shape, else "
     "the longest the context allows)"),
    ("new_tokens", "tokens of each timed single reply"),
    ("batch_new_tokens", "tokens of each row of the concurrent batches"),
    ("scorecard_prompts", "scorecard rows, each answered by the base and 2 adapters"),
    ("scorecard_new_tokens", "tokens of each scorecard reply"),
    ("switches", "slot loads with eviction before the base is compared bit for bit"),
    ("reference_new_tokens", "tokens of the reference's timed reply"),
    ("repeats", "timed replies per figure (medians)"),
    ("sample_rows", "rows of the sample_prompts dataset"),
    ("page_messages", "messages held by the page rerun (0: skip it)"),
)  # fmt: skip


def register(sub, common) -> None:
    # bench writes its JSON to a file (it also prints progress), so it skips `common`'s --json.
    parser = sub.add_parser(
        "bench",
        help="time the app's inference door against the reference app's",
        description="Times the host and scheduler the pages use (a fresh host configured as "
        "the app's) on random-weight models, beside the reference approach (unmerged PeftModel, "
        "plain generate, a base reload per switch): load, first text, decode rate at a short "
        "and a long prompt, switches, memory per adapter, rows decoded together, a second "
        "request's first token, scorecard throughput, base drift after many switches.",
    )
    parser.add_argument(
        "--model",
        choices=("demo", "llama-8b-shape"),
        default="demo",
        help="demo: tiny model (CI-sized); llama-8b-shape: random weights, "
        "Llama-3.1-8B's shape (needs a GPU)",
    )
    parser.add_argument(
        "--quantization",
        choices=("auto", "none", "bf16", "nf4", "nf4-bf16"),
        default="auto",
        help="as the app's option (auto: what the pages ask for)",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures here")
    for name, what in SIZES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=what)
    parser.add_argument(
        "--models-dir", metavar="DIR", help="keep the built base and adapters here and reuse them"
    )
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ff_lib.bench import BenchConfig, run_bench

    overrides = {name: getattr(args, name) for name, _ in SIZES if getattr(args, name) is not None}
    if args.new_tokens is not None:
        overrides.setdefault("equality_tokens", min(args.new_tokens, 64))
    cfg = BenchConfig.for_model(
        args.model, quantization=args.quantization, models_dir=args.models_dir, **overrides
    )
    result = run_bench(cfg, log=lambda line: print(line, flush=True))
    print()
    print(
        f"{result['device']} · {result['describe']} ({result['quantization_reason']}) · "
        f"{result['fast_path']}, adapters: {result['adapter_mode']}; up to {result['max_rows']} "
        f"rows, context {result['context']}"
    )
    print_table(("figure", "ours", "reference", "goal (H200, 8B shape)"), table_rows(result))
    if args.json:
        args.json.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    return 0


def _fmt(value, unit: str = "", scale: float = 1.0, digits: int = 1) -> str | None:
    if value is None:
        return None
    return f"{value * scale:.{digits}f}{unit}"


def _ms(value) -> str | None:
    return _fmt(value, " ms", 1000)


def table_rows(r: dict) -> list[tuple]:
    """(figure, ours, reference, goal) rows for people."""
    return _load_rows(r) + _decode_rows(r) + _adapter_rows(r) + _batch_rows(r) + _other_rows(r)


def _load_rows(r: dict) -> list[tuple]:
    return [
        ("base load (weights)", _fmt(r["load_s"], " s", digits=2), None, None),
        ("  then warm-up until the first request joins", _fmt(r["warm_up_s"], " s", digits=2),
         None, None),
        ("first text after the load", _ms(r["first_text_after_load_s"]), None, "<= 1000 ms"),
        ("  of which: adapter into a slot / prefill + first token",
         f"{_ms(r['first_adapter_into_slot_s'])} / {_ms(r['first_prefill_s'])}", None, None),
    ]  # fmt: skip


def _decode_rows(r: dict) -> list[tuple]:
    floor = r["floor_tokens_per_s"]
    return [
        (f"time to first token ({r['prompt_tokens']} prompt tokens)", _ms(r["ttft_s"]),
         _ms(r["reference_ttft_s"]), "<= 40 ms"),
        (f"decode tokens/s, batch 1, {r['prompt_tokens']} prompt tokens",
         _fmt(r["decode_tokens_per_s"]), _fmt(r["reference_decode_tokens_per_s"]),
         ">= 200 bf16, >= 150 NF4"),
        (f"  at {r['prompt_tokens_long']} prompt tokens", _fmt(r["decode_tokens_per_s_long"]),
         None, ">= 170 bf16"),
        ("  sampled (default preset)", _fmt(r["decode_tokens_per_s_sampled"]), None, None),
        ("  reference whole reply, plain / streamed (TextIteratorStreamer)", None,
         f"{r['reference_plain_tokens_per_s']:.1f} / {r['reference_stream_tokens_per_s']:.1f}",
         None),
        ("copy bandwidth", _fmt(r["bandwidth_gb_s"], " GB/s", digits=0), None, None),
        ("floor (bandwidth / weight bytes per token)", _fmt(floor, " tok/s"), None, None),
        ("% of floor, short / long prompt",
         None if floor is None else f"{r['percent_of_floor']:.0f} / "
         f"{r['percent_of_floor_long']:.0f} %", None, ">= 72 %"),
    ]  # fmt: skip


def _adapter_rows(r: dict) -> list[tuple]:
    drift = r["drift_after_switches"]
    peaks = r["peak_memory_gib"]
    return [
        ("switch to an adapter in a slot", _ms(r["switch_s"]), None, "<= 5 ms"),
        ("  time to first token after a switch / same adapter",
         f"{r['switch_ttft_s'] * 1000:.1f} / {r['same_adapter_ttft_s'] * 1000:.1f} ms", None,
         None),
        ("  graph recaptures on switches", str(r["switch_recaptures"]), None, "0"),
        ("adapter not in a slot: load it / reload base + adapter",
         _ms(r["adapter_load_s"]), _fmt(r["reference_switch_s"], " s", digits=2), None),
        ("resident memory per adapter (slots / allocator)",
         f"{r['resident_gib_per_adapter']:.4f} / "
         f"{_fmt(r['memory_per_adapter_gib'], '', digits=4) or '-'} GiB", None, "<= 0.08 GiB"),
        ("peak memory, 1 / 2 / 4 adapters",
         f"{peaks['1']:.2f} / {peaks['2']:.2f} / {peaks['4']:.2f} GiB", None, None),
        (f"base changed after {drift['switches']} switches",
         f"{drift['changed_fraction']:.3g} (logits identical: {drift['base_logits_identical']})",
         None, "0"),
    ]  # fmt: skip


def _batch_rows(r: dict) -> list[tuple]:
    rates = r["batch_tokens_per_s"]
    one = rates["1"]
    rows = [
        (f"{n} rows together, 4 adapters + base: tokens/s", f"{rate:.1f} ({rate / one:.1f}x)",
         None, {"8": ">= 6x", "16": ">= 10x"}.get(n))
        for n, rate in rates.items()
    ]  # fmt: skip
    return rows + [
        ("the same 8 requests one after another", _fmt(r["sequential_tokens_per_s"]), None,
         "CPU: 8 rows >= 3x this"),
        ("second request's first token while one streams", _ms(r["second_request_ttft_s"]),
         None, "<= 100 ms"),
        ("scorecard rows x models/s: together / one by one",
         f"{r['scorecard_rows_per_s']:.2f} / {r['scorecard_sequential_rows_per_s']:.2f}", None,
         None),
    ]  # fmt: skip


def _other_rows(r: dict) -> list[tuple]:
    diff = r["greedy_first_difference"]
    return [
        (f"greedy tokens equal to peft generate ({r['greedy_tokens_compared']})",
         f"adapter: {_same(diff['adapter_vs_peft_generate'])}, "
         f"base: {_same(diff['base_vs_generate'])}", None, None),
        (f"sample_prompts ({r['sample_prompts_rows']:,} rows), in a rerun's session",
         _fmt(r["sample_prompts_ms"], " ms", digits=2), None, "<= 10 ms"),
        (f"Inference page rerun ({r['page_rerun_messages']} msgs)", _fmt(r["page_rerun_ms"],
         " ms"), None, "<= 300 ms"),
    ]  # fmt: skip


def _same(first_difference) -> str:
    return "yes" if first_difference is None else f"differs at {first_difference}"
