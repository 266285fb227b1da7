"""Scorecard speed: answers (rows x models) per second, batched vs one at a time.

Both sides call `ff_lib.scorecards.score_run`, the function the Score panel and `score` call
(scoring, buffered storing and all). The batched side uses the app's host as is (every stream
started before any is read); the sequential side wraps the same host so that each answer is
generated alone, start to finish, before the next one starts (the loop scorecards used to be).

    .venv/bin/python benchmarks/scorecard_speed.py [--workspace /work/demo-ws] [-n 20]

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", default="/work/demo-ws")
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp()) / "ws"
    shutil.copytree(args.workspace, folder)
    ws = Workspace.open(folder)
    runs = {r.name: r for r in ws.list_runs()}
    main_run, pirate = runs["capitals-lora"], runs["pirate-lora"]
    copy = ws.add_run("pirate-lora-copy", pirate.base_model, pirate.adapter_path)
    compare = [pirate.id, copy.id]  # base + 3 runs = 4 models
    host = get_host()
    scorecards.score_run(
        host, ws, main_run.id, main_run.dataset_id, n=1, compare_run_ids=compare
    )  # fmt: skip  (load and warm the base)
    figures: dict = {"sequential": [], "batched": []}
    for _ in range(args.repeats):  # the sides in turn, so a busy moment hits both
        for name, side in (("sequential", OneAtATime(host)), ("batched", host)):
            started = time.perf_counter()
            card = scorecards.score_run(side, ws, main_run.id, main_run.dataset_id, n=args.n,
                                        compare_run_ids=compare)  # fmt: skip
            seconds = time.perf_counter() - started
            answers = card.summary["n"] * len(card.summary["models"])
            figures[name].append({"answers": answers, "seconds": round(seconds, 2),
                                  "answers_per_s": round(answers / seconds, 2),
                                  "means": card.summary["means"]})  # fmt: skip
    rates = {k: sorted(r["answers_per_s"] for r in figures[k]) for k in ("sequential", "batched")}
    figures["median_answers_per_s"] = {k: v[len(v) // 2] for k, v in rates.items()}
    figures["speedup_of_medians"] = round(
        rates["batched"][len(rates["batched"]) // 2]
        / rates["sequential"][len(rates["sequential"]) // 2],
        2,
    )
    figures["same_answers"] = all(
        r["means"] == figures["batched"][0]["means"]
        for r in figures["sequential"] + figures["batched"]
    )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
