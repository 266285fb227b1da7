"""Latency of one greedy demo reply through `serve` (openai client, HTTP, recording) vs the door.

    .venv/bin/python benchmarks/serve_latency.py [DEMO_WORKSPACE] [-n 20]

Both sides use one ModelHost (loaded and warmed first) and the same settings; the API side is a
real uvicorn server in this process on a copy of the demo workspace, so each request also writes
its conversation. Prints the median and the spread of each, in milliseconds.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ff_lib.data import Workspace  # noqa: E402
from ff_lib.inference.host import new_host  # noqa: E402
from ff_lib.inference.settings import GenerationSettings  # noqa: E402
from tests.fixtures_serve import serving  # noqa: E402

PROMPT = "What is the capital of Spain?"
RUN = "capitals-lora"


def timed(fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def show(name: str, ms: list[float]) -> None:
    q = statistics.quantiles(ms, n=10)
    print(f"{name:<28} median {statistics.median(ms):7.1f} ms   p10 {q[0]:7.1f}   p90 {q[-1]:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace", nargs="?", default="/work/demo-ws")
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    copy = Path(tempfile.mkdtemp()) / "workspace"
    shutil.copytree(args.workspace, copy)
    run = next(r for r in Workspace.open(copy).list_runs() if r.name == RUN)
    door = new_host()
    # What the API asks of the door for {"temperature": 0} (OpenAI's defaults otherwise).
    settings = GenerationSettings(temperature=0, repetition_penalty=1.0, top_p=1.0)
    messages = [{"role": "user", "content": PROMPT}]

    def direct():
        return door.generate(run.base_model, messages, settings, run.adapter_path)

    reply = direct()  # loads the base and the adapter
    print(f"reply: {reply.text!r} ({reply.stats.new_tokens} tokens, {reply.describe})")
    with serving(copy, door) as server:
        client = server.client()

        def api():
            return client.chat.completions.create(model=RUN, messages=messages, temperature=0)

        def first_chunk() -> float:
            """ms to the first piece of text; the stream is then read to its end."""
            started = time.perf_counter()
            first = None
            for chunk in client.chat.completions.create(
                model=RUN, messages=messages, temperature=0, stream=True
            ):
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = (time.perf_counter() - started) * 1000
            return first

        def door_first_piece():
            stream = door.stream_reply(run.base_model, messages, settings, run.adapter_path)
            next(iter(stream))
            stream.close()

        assert api().choices[0].message.content == reply.text
        door_ms, api_ms = timed(direct, args.n), timed(api, args.n)
        door_first = timed(door_first_piece, args.n)
        api_first = [first_chunk() for _ in range(args.n)]
        ws = server.ws
        read_ms = timed(ws.list_runs, args.n)
        write_ms = timed(lambda: ws.create_conversation("bench", source="api"), args.n)
    show("door (host.generate)", door_ms)
    show("API (openai client, HTTP)", api_ms)
    print(f"API overhead: {statistics.median(api_ms) - statistics.median(door_ms):+.1f} ms median")
    show("door: first piece", door_first)
    show("API: first streamed chunk", api_first)
    show("workspace read (list_runs)", read_ms)
    show("workspace write (1 row)", write_ms)
    shutil.rmtree(copy.parent)


if __name__ == "__main__":
    main()
