"""One reply timed the way the Inference page asks for it, with no bench code: `get_host()` and
`stream_reply(base, messages, settings, adapter_dir, on_wait=...)`, the text read piece by piece.
A cross-check of the bench's batch-1 figure (same prompt size, new tokens and settings).

    python benchmarks/app_path_check.py --base DIR --adapter DIR [--prompt-tokens 512]
        [--new-tokens 256] [--replies 3] [--quantization bf16] [--json FILE]

The page passes no quantization (the app's "auto"); --quantization other than auto is passed
as the page's sidebar option would pass it. The first reply includes the base load.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank today."


def user_text(base: str, tokens: int) -> str:
    """Repeated plain words, as many as leave the templated prompt near `tokens` tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    words, text = SENTENCE.split(), ""
    i = 0
    while True:
        longer = f"{text} {words[i % len(words)]}".strip()
        messages = [{"role": "user", "content": longer}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        if len(ids) > tokens:
            return text
        text, i = longer, i + 1


def one_reply(host, args, messages, settings) -> dict:
    kwargs = {} if args.quantization == "auto" else {"quantization": args.quantization}
    started = time.perf_counter()
    stream = host.stream_reply(
        args.base,
        messages,
        settings,
        Path(args.adapter),
        on_wait=lambda: print("waiting for another base's replies", flush=True),
        **kwargs,
    )
    first_piece, pieces = None, 0
    if args.read == "whole":  # as scorecards and compare read: the whole reply at once
        stream.text()
        first_piece = stream.request.first_token_at - started
    for _piece in stream:  # as st.write_stream reads it
        if first_piece is None:
            first_piece = time.perf_counter() - started
        pieces += 1
    ended = time.perf_counter() - started
    reply = stream.reply
    stats = reply.stats
    return {
        "describe": reply.describe,
        "finish_reason": reply.finish_reason,
        "prompt_tokens": stats.prompt_tokens,
        "new_tokens": stats.new_tokens,
        "pieces": pieces,
        "wall_s": ended,
        "first_piece_s": first_piece,
        "ttft_s": stats.ttft_s,
        # after the first piece, as the reader sees it
        "reader_decode_tokens_per_s": (stats.new_tokens - 1) / max(ended - first_piece, 1e-9),
        # from the reply's own figures, as the bench computes it
        "decode_tokens_per_s": (stats.new_tokens - 1) / max(stats.total_s - stats.ttft_s, 1e-9),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--replies", type=int, default=3)
    parser.add_argument("--quantization", default="auto")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy, as the bench")
    parser.add_argument(
        "--read", choices=("pieces", "whole"), default="pieces",
        help="pieces: piece by piece as the page reads; whole: stream.text(), as the bench reads",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from ff_lib.inference import GenerationSettings, get_host

    settings = GenerationSettings(
        temperature=args.temperature, max_new_tokens=args.new_tokens, repetition_penalty=1.15
    )
    messages = [{"role": "user", "content": user_text(args.base, args.prompt_tokens)}]
    host = get_host()
    replies = []
    for i in range(args.replies):
        replies.append(one_reply(host, args, messages, settings))
        r = replies[-1]
        print(
            f"reply {i + 1} ({r['describe']}): {r['prompt_tokens']} prompt + {r['new_tokens']} "
            f"new tokens ({r['finish_reason']}), first text {r['first_piece_s'] * 1000:.0f} ms, "
            f"{r['decode_tokens_per_s']:.1f} tok/s (reader: {r['reader_decode_tokens_per_s']:.1f})",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"replies": replies}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
