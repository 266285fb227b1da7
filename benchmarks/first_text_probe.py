"""First text after a fresh load, through the door as the page's first reply gets it: the base
loaded by `stream_reply`, the warm-up, the first piece of text. Run it twice in a row (fresh
processes): the first meets a cold compile cache, the second the one the first left on disk.

    python benchmarks/first_text_probe.py --model llama-8b-shape --models-dir /tmp/ff-models \
        --quantization bf16 [--json FILE]
"""

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from ff_lib.bench_door import probe_parser

    p = probe_parser()
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from ff_lib.bench_door import first_reply_after_load, fresh_door

    door, messages = fresh_door(args.model, args.models_dir, args.quantization)
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
