"""Is the fast path right? Its greedy tokens against transformers' generate() on a random
Llama-3.1-8B-shape model in float32, where rounding no longer decides the near-ties that random
weights produce in bf16 (see BENCHMARKS.md).

    python benchmarks/equality_fp32.py --json eq.json          # GPU, ~40 GB
    python benchmarks/equality_fp32.py --tiny                   # CPU smoke run of the same code

Compared over the first N greedy tokens of a 512-token random prompt, with a rank-16 LoRA on
all 7 projections: fast (merged adapter) vs generate() on the same merged weights; fast vs
generate() with the adapter live (unmerged, the reference app's way); fast vs generate() on the
base (adapter switched off).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from ff_lib.inference import benchkit  # noqa: E402
from ff_lib.inference.fastpath import FastDecoder, Sampling  # noqa: E402

TINY_SHAPE = {
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token; None when equal."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def fast_tokens(decoder: FastDecoder, ids: list[int], n: int) -> list[int]:
    return list(decoder.generate(ids, Sampling(), n))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (CPU smoke run)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here
    torch.backends.cudnn.allow_tf32 = False
    shape = TINY_SHAPE if args.tiny else benchkit.LLAMA_8B_SHAPE
    config = LlamaConfig(**shape, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    out: dict = {"device": benchkit.device_name(), "dtype": "float32", "shape": shape}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with benchkit.device():
        model = LlamaForCausalLM._from_config(config, dtype=torch.float32)
    model.eval()
    out["build_s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="ff-eq-") as tmp:
        config.save_pretrained(tmp)  # the adapter builder reads the shapes from config.json
        adapter = benchkit.build_random_adapter(Path(tmp) / "adapter", Path(tmp), rank=16)
        peft = benchkit.attach_adapters(model, {"a": adapter})
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, shape["vocab_size"], (args.prompt_tokens,), generator=gen).tolist()
    n = args.tokens
    max_len = -(-(len(ids) + n + 8) // 128) * 128
    decoder = FastDecoder(peft, max_len=max_len)
    out["use_graph"] = decoder.use_graph

    decoder.activate("a")
    out["warm_up_s"] = decoder.warm_up()
    fast_adapter = fast_tokens(decoder, ids, n)
    merged_plain = benchkit.plain_generate(peft, ids, n).tokens
    decoder.activate(None)  # unmerged: generate() now runs the LoRA live, as the reference does
    peft.set_adapter("a")
    live_plain = benchkit.plain_generate(peft, ids, n).tokens
    fast_base = fast_tokens(decoder, ids, n)
    with peft.disable_adapter():
        base_plain = benchkit.plain_generate(peft, ids, n).tokens

    out["tokens_compared"] = n
    out["first_difference"] = {
        "fast_adapter_vs_generate_merged": first_difference(fast_adapter, merged_plain),
        "fast_adapter_vs_generate_live_lora": first_difference(fast_adapter, live_plain),
        "fast_base_vs_generate_base": first_difference(fast_base, base_plain),
    }
    out["adapter_changes_tokens"] = first_difference(fast_adapter, fast_base) is not None
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    equal = all(v is None for v in out["first_difference"].values())
    print("greedy tokens equal:" if equal else "greedy tokens differ:", out["first_difference"])
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
