"""The same greedy demo request through vLLM (RemoteHost) and through the in-process engine
(ModelHost), timed the way the pages read it: `stream_reply`, text read piece by piece.

    python benchmarks/remote_latency.py [--workspace /work/demo-ws] [--url http://HOST:PORT/v1]
        [--vllm-python .venv-vllm/bin/python] [--replies 10]

Without --url a vLLM server is started on the demo (tests/fixtures_vllm.py's recipe) and its
start-up time to a healthy /health is printed too; it is stopped at the end.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "What is the capital of France?"


def timed_replies(host, base, adapter, settings, n: int) -> list[dict]:
    """n replies (after one warm-up): time to first piece, total, new tokens, as read."""
    messages = [{"role": "user", "content": PROMPT}]
    out = []
    for i in range(n + 1):
        started = time.perf_counter()
        stream = host.stream_reply(base, messages, settings, adapter)
        first = None
        for piece in stream:
            if first is None and piece:
                first = time.perf_counter() - started
        total = time.perf_counter() - started
        if i:
            out.append({"first_s": first, "total_s": total, "text": stream.reply.text,
                        "new_tokens": stream.reply.stats.new_tokens})  # fmt: skip
    return out


def summary(name: str, rows: list[dict]) -> dict:
    first = statistics.median(r["first_s"] for r in rows)
    total = statistics.median(r["total_s"] for r in rows)
    tokens = rows[0]["new_tokens"]
    print(f"{name:>11}: first piece {first * 1000:6.1f} ms · whole reply {total * 1000:6.1f} ms "
          f"· {tokens} tokens · {tokens / total:6.1f} tokens/s (median of {len(rows)})")  # fmt: skip
    return {"first_ms": round(first * 1000, 1), "total_ms": round(total * 1000, 1),
            "new_tokens": tokens, "text": rows[0]["text"]}  # fmt: skip


def start_server(workspace: Path, python: Path):
    from tests.fixtures_vllm import free_port, start_vllm

    base = json.loads((workspace / "demo.json").read_text())["base_model"]
    adapters = {
        "capitals": str(workspace / "runs" / "capitals-lora" / "adapter"),
        "pirate": str(workspace / "runs" / "pirate-lora" / "adapter"),
    }
    port = free_port()
    log = Path(f"/tmp/remote-latency-vllm-{port}.log")
    started = time.perf_counter()
    process = start_vllm(python, base, adapters, log, port)
    import httpx2

    while True:
        if process.poll() is not None:
            raise SystemExit(f"vLLM exited while starting; see {log}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                break
        except httpx2.TransportError:
            pass
        time.sleep(0.25)
    print(f"vLLM start-up: /health answered after {time.perf_counter() - started:.1f} s")
    return process, f"http://127.0.0.1:{port}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/work/demo-ws"))
    parser.add_argument("--url")
    parser.add_argument("--vllm-python", type=Path, default=ROOT / ".venv-vllm" / "bin" / "python")
    parser.add_argument("--replies", type=int, default=10)
    args = parser.parse_args()

    from ff_lib.inference import GenerationSettings
    from ff_lib.inference.host import ModelHost
    from ff_lib.inference.remote import RemoteHost
    from tests.fixtures_vllm import stop_vllm

    process = None
    url = args.url
    if not url:
        process, url = start_server(args.workspace, args.vllm_python)
    try:
        base = json.loads((args.workspace / "demo.json").read_text())["base_model"]
        adapter = args.workspace / "runs" / "capitals-lora" / "adapter"
        settings = GenerationSettings(temperature=0.0, max_new_tokens=64, repetition_penalty=1.2)
        print(f"greedy, max 64 new tokens, prompt {PROMPT!r}, adapter capitals-lora")
        remote = summary("vLLM", timed_replies(RemoteHost(url), base, adapter, settings,
                                               args.replies))  # fmt: skip
        local = summary("in-process", timed_replies(ModelHost(), base, adapter, settings,
                                                    args.replies))  # fmt: skip
        print(f"same text: {remote['text'] == local['text']}")
    finally:
        if process is not None:
            stop_vllm(process)


if __name__ == "__main__":
    main()
