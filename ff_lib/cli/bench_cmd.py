"""`bench`: our inference path against the reference app's, one table (and --json FILE)."""

import json
from pathlib import Path

from ff_lib.cli.output import print_table, to_jsonable


def register(sub, common) -> None:
    # bench writes its JSON to a file (it also prints progress), so it skips `common`'s --json.
    parser = sub.add_parser(
        "bench",
        help="time our inference path against the reference app's",
        description="Our path and the reference approach side by side on whatever device is "
        "here: load, adapter switch, time to first token, decode rate, streaming overhead, "
        "memory, and the workspace's sample_prompts / Inference page rerun.",
    )
    parser.add_argument(
        "--model",
        choices=("demo", "llama-8b-shape"),
        default="demo",
        help="demo: tiny model (CI-sized); llama-8b-shape: random weights, "
        "Llama-3.1-8B's shape (needs a GPU)",
    )
    parser.add_argument("--quantization", choices=("none", "nf4"), default="none")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures here")
    parser.add_argument("--prompt-tokens", type=int)
    parser.add_argument("--new-tokens", type=int)
    parser.add_argument("--reference-new-tokens", type=int)
    parser.add_argument("--sample-rows", type=int, help="rows of the sample_prompts dataset")
    parser.add_argument("--page-messages", type=int, help="messages held by the page rerun")
    parser.add_argument("--repeats", type=int)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the captured decode step"
    )
    parser.add_argument(
        "--no-graph",
        action="store_true",
        help="run the fast path's static-cache loop without CUDA graphs",
    )
    parser.add_argument(
        "--models-dir", metavar="DIR", help="keep the built base and adapters here and reuse them"
    )
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ff_lib.bench import BenchConfig, run_bench, table_rows

    overrides = {
        key: value
        for key, value in (
            ("prompt_tokens", args.prompt_tokens),
            ("new_tokens", args.new_tokens),
            ("reference_new_tokens", args.reference_new_tokens),
            ("sample_rows", args.sample_rows),
            ("page_messages", args.page_messages),
            ("repeats", args.repeats),
        )
        if value is not None
    }
    if args.prompt_tokens is not None or args.new_tokens is not None:
        overrides.setdefault("equality_tokens", min(args.new_tokens or 32, 64))
    cfg = BenchConfig.for_model(
        args.model,
        quantization=args.quantization,
        compile_step=args.compile,
        use_graph=False if args.no_graph else None,
        models_dir=args.models_dir,
        **overrides,
    )
    result = run_bench(cfg, log=lambda line: print(line, flush=True))
    print()
    print(
        f"{result['device']} · {result['describe']} · fast path: {result['fast_path']}, "
        f"adapters {result['adapter_mode']}"
    )
    print_table(("figure", "ours", "reference", "goal"), table_rows(result))
    if args.json:
        args.json.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    return 0
