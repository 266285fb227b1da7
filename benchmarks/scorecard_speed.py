"""Scorecard speed: answers (rows x models) per second, batched vs one at a time.

Both sides call `ff_lib.scorecards.score_run`, the function the Score panel and `score` call
(scoring, buffered storing and all). The batched side uses the app's host as is (every stream
started before any is read); the sequential side wraps the same host so that each answer is
generated alone, start to finish, before the next one starts (the loop scorecards used to be).

    .venv/bin/python benchmarks/scorecard_speed.py [--workspace /work/demo-ws] [-n 20]
    python benchmarks/scorecard_speed.py --model llama-8b-shape -n 200 --sequential-n 20 \
        --max-new-tokens 64 --repeats 1   # the H200: 200 rows x 4 models

The demo workspace is copied first (a scorecard writes to it). The base is loaded (and warmed)
before either side is timed; the sides run in turn, `--repeats` times;
the medians are compared.
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ff_lib import scorecards
from ff_lib.data import Workspace
from ff_lib.inference import get_host


class OneAtATime:
    """The host, but each answer decoded alone when it is read (no shared batches)."""

    def __init__(self, host):
        self.host = host

    def stream_reply(self, *args, **kwargs):
        host = self.host

        class Alone:
            def start(self):
                return self

            def text(self):
                return host.generate(*args, **kwargs).text

            def close(self):
                return None

        return Alone()


def demo_setup(workspace: str):
    """A copy of the demo workspace; (ws, main run, compared run ids): base + 3 runs."""
    folder = Path(tempfile.mkdtemp()) / "ws"
    shutil.copytree(workspace, folder)
    ws = Workspace.open(folder)
    runs = {r.name: r for r in ws.list_runs()}
    main_run, pirate = runs["capitals-lora"], runs["pirate-lora"]
    copy = ws.add_run("pirate-lora-copy", pirate.base_model, pirate.adapter_path)
    return ws, main_run, [pirate.id, copy.id]


def bench_model_setup(model: str, models_dir: str, rows: int):
    """A fresh workspace on the bench's random base (`model`) and three of its rank-16
    adapters, with a dataset of `rows` prompts: (ws, main run, compared run ids)."""
    from ff_lib.inference.benchmodels import build_models

    base, adapters = build_models(model, Path(models_dir) / model, 8 if model == "demo" else 16)
    ws = Workspace.open(Path(tempfile.mkdtemp()) / "ws")
    words = [
        "the",
        "model",
        "answers",
        "each",
        "question",
        "about",
        "rivers",
        "cities",
        "and",
        "numbers",
        "in",
        "one",
        "line",
    ]
    pairs = [(" ".join(words[(i + j) % len(words)] for j in range(24)) + f" ({i})", "one line")
             for i in range(rows)]  # fmt: skip
    dataset = ws.add_dataset("bench prompts", pairs, source="scorecard_speed")
    runs = [ws.add_run(name, str(base), adapters[name], dataset_id=dataset.id)
            for name in ("a0", "a1", "a2")]  # fmt: skip
    return ws, runs[0], [runs[1].id, runs[2].id]


def timed(side, ws, main_run, compare, n, max_new_tokens) -> dict:
    started = time.perf_counter()
    card = scorecards.score_run(side, ws, main_run.id, main_run.dataset_id, n=n,
                                compare_run_ids=compare, max_new_tokens=max_new_tokens)  # fmt: skip
    seconds = time.perf_counter() - started
    answers = card.summary["n"] * len(card.summary["models"])
    return {"answers": answers, "seconds": round(seconds, 2),
            "answers_per_s": round(answers / seconds, 2), "means": card.summary["means"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", default="/work/demo-ws")
    parser.add_argument("-n", type=int, default=20, help="rows of the batched scorecard")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a bench model (llama-8b-shape) instead of the demo")
    parser.add_argument("--models-dir", default="/tmp/ff-models")
    parser.add_argument("--sequential-n", type=int, help="rows of the one-by-one side "
                        "(default: -n; its rate per answer does not depend on n)")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.model:
        ws, main_run, compare = bench_model_setup(args.model, args.models_dir, args.n)
    else:
        ws, main_run, compare = demo_setup(args.workspace)
    host = get_host()
    # load, warm and capture the batch sizes the batched side uses, untimed
    timed(host, ws, main_run, compare, min(args.n, 16), args.max_new_tokens)
    sizes = {"sequential": args.sequential_n or args.n, "batched": args.n}
    figures: dict = {"sequential": [], "batched": [], "rows": sizes}
    for _ in range(args.repeats):  # the sides in turn, so a busy moment hits both
        for name, side in (("sequential", OneAtATime(host)), ("batched", host)):
            figures[name].append(
                timed(side, ws, main_run, compare, sizes[name], args.max_new_tokens)
            )
    rates = {k: sorted(r["answers_per_s"] for r in figures[k]) for k in ("sequential", "batched")}
    figures["median_answers_per_s"] = {k: v[len(v) // 2] for k, v in rates.items()}
    figures["speedup_of_medians"] = round(
        figures["median_answers_per_s"]["batched"] / figures["median_answers_per_s"]["sequential"],
        2,
    )
    if sizes["sequential"] == sizes["batched"]:
        figures["same_answers"] = all(
            r["means"] == figures["batched"][0]["means"]
            for r in figures["sequential"] + figures["batched"]
        )
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
