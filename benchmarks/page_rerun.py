"""Time one rerun of the Inference page holding a long stored conversation (AppTest).

    python benchmarks/page_rerun.py --messages 500      # prints {"page_rerun_ms": ...} last

Run by `python -m ff_lib bench` in a subprocess so that Streamlit stays out of the bench.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seed_messages(ws, conversation_id: str, count: int) -> None:
    for i in range(count):
        role = "user" if i % 2 == 0 else "assistant"
        text = f"Message {i}: " + "lorem ipsum dolor sit amet " * 8
        meta = {"tokens_per_s": 42.0, "new_tokens": 40} if role == "assistant" else None
        ws.add_message(conversation_id, role, text, meta=meta)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--reruns", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ff-page-") as tmp:
        os.environ["FF_WORKSPACE"] = tmp
        from streamlit.testing.v1 import AppTest

        from ff_lib.data import Workspace

        ws = Workspace.open(tmp)
        conv = ws.create_conversation("bench: long history")
        with ws.session():  # one DuckDB open for the whole seeding
            seed_messages(ws, conv.id, args.messages)
        at = AppTest.from_file(str(ROOT / "pages" / "1_Inference.py"), default_timeout=120)
        at.query_params["c"] = conv.id
        at.run()
        if at.exception:
            print(at.exception[0].message, file=sys.stderr)
            return 1
        held = len(at.session_state["chat_messages"])
        times = []
        for _ in range(args.reruns):
            t0 = time.perf_counter()
            at.run()
            times.append((time.perf_counter() - t0) * 1000)
        if at.exception:
            print(at.exception[0].message, file=sys.stderr)
            return 1
    print(
        json.dumps(
            {"page_rerun_ms": statistics.median(times), "messages_held": held, "all_ms": times}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
