"""The engine's own CUDA path once: 4-bit NF4 load of a random 8B-shape base from a local folder,
replies with an adapter, a switch to another, on the plain path and then through the fast path.

    python benchmarks/engine_nf4.py --models-dir /tmp/ff-models --json engine.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from ff_lib.bench import BenchConfig, build_models
    from ff_lib.errors import FFError
    from ff_lib.inference import GenerationSettings, ModelHost
    from ff_lib.inference.loading import _default_decoder

    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", default="/tmp/ff-models")
    parser.add_argument("--quantization", default="nf4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cfg = BenchConfig.for_model("llama-8b-shape", models_dir=args.models_dir)
    base, adapters = build_models(cfg, Path(args.models_dir) / cfg.model, n_adapters=2)
    host = ModelHost()
    t0 = time.perf_counter()
    loaded = host.load_base(str(base), args.quantization)
    result = {"load_s": time.perf_counter() - t0, "describe": loaded.describe(), "replies": []}
    print(f"load {result['load_s']:.1f} s: {result['describe']}", flush=True)
    words = " ".join(f"w{100 + i}" for i in range(400))
    messages = [{"role": "user", "content": words}]
    settings = GenerationSettings(temperature=0.0, max_new_tokens=128, repetition_penalty=1.0)

    def reply(label: str, adapter: str) -> None:
        t = time.perf_counter()
        try:
            r = host.generate(str(base), messages, settings, adapters[adapter])
        except FFError as exc:  # recorded: the engine issue needs to know
            row = {"label": label, "adapter": adapter, "error": str(exc)}
            result["replies"].append(row)
            print(json.dumps(row), flush=True)
            return
        row = {
            "label": label,
            "adapter": adapter,
            "decoder": r.decoder,
            "wall_s": time.perf_counter() - t,
            "switch_s": host.last_adapter_switch_s,
            "prompt_tokens": r.stats.prompt_tokens,
            "new_tokens": r.stats.new_tokens,
            "ttft_s": r.stats.ttft_s,
            "tokens_per_s": r.stats.tokens_per_s,
            "finish_reason": r.finish_reason,
            "describe": r.describe,
        }
        result["replies"].append(row)
        print(json.dumps(row), flush=True)

    reply("plain, first adapter (loads it)", "a0")
    reply("plain, second adapter (loads it)", "a1")
    reply("plain, switch back (both loaded)", "a0")
    reply("plain, again", "a0")
    # What get_host() sets: the fast path on CUDA, warmed in the background.
    host.decoder = _default_decoder

    def warm() -> None:
        t = time.perf_counter()
        host._loaded.fast.wait_warm(300)
        result.setdefault("background_warm_up_s", []).append(time.perf_counter() - t)
        print(f"warm after {time.perf_counter() - t:.1f} s more", flush=True)

    reply("default decoder, first reply (plain while warming)", "a0")
    warm()
    reply("default decoder, warmed", "a0")
    reply("default decoder, again", "a0")
    reply("switch to a1 (plain while its graph is captured)", "a1")
    warm()
    reply("a1 warmed", "a1")
    reply("switch back to a0 (graph kept)", "a0")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
