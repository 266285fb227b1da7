"""First text after a fresh load, through the door as the page's first reply gets it: the base
loaded by `stream_reply`, the warm-up, the first piece of text. Run it twice in a row (fresh
processes): the first meets a cold compile cache, the second the one the first left on disk.

    python benchmarks/first_text_probe.py --model llama-8b-shape --models-dir /tmp/ff-models \
        --quantization bf16 [--json FILE]
"""

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="llama-8b-shape")
    p.add_argument("--models-dir", default="/tmp/ff-models")
    p.add_argument("--quantization", default="bf16")
    p.add_argument("--json")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch
    from transformers import AutoTokenizer

    from ff_lib.bench_door import Door, first_reply_after_load, prompt_messages
    from ff_lib.inference.benchmodels import build_models
    from ff_lib.inference.host import new_host

    base, adapters = build_models(args.model, Path(args.models_dir) / args.model, 16)
    messages = prompt_messages(AutoTokenizer.from_pretrained(base), 512, 7)
    door = Door(new_host(), base, args.quantization, adapters, log=lambda *_: None)
    result = first_reply_after_load(door, messages)
    keep = (
        "load_s",
        "warm_up_s",
        "first_adapter_into_slot_s",
        "first_prefill_s",
        "first_token_after_load_s",
        "first_text_after_load_s",
    )
    figures = {k: round(result[k], 3) for k in keep}
    if torch.cuda.is_available():
        from torch._dynamo.utils import counters

        figures["dynamo_graphs_compiled"] = dict(counters["stats"])
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
