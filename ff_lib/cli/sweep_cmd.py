"""`sweep`: a run's checkpoints, final adapter and the base answer n dataset rows, scored."""

import argparse

from ff_lib.cli.output import print_json, print_table
from ff_lib.inference.bases import QUANTIZATIONS
from ff_lib.workspace_path import resolve_workspace


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sweep",
        parents=[common],
        help="score every checkpoint of a run on a dataset (one batched pass)",
        description=(
            "Every checkpoint-N folder of the run, its final adapter and the base answer the "
            "first N rows of the dataset (Deterministic preset, seed 0); the best checkpoint is "
            "the one with the highest exact match, then token F1."
        ),
    )
    p.add_argument("--run", required=True, metavar="RUN", help="the run's id or name")
    p.add_argument("--dataset", required=True, type=int, metavar="ID", help="the dataset's id")
    p.add_argument("-n", type=int, default=50, metavar="N", help="rows to answer (default 50)")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="default: the preset's")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="auto")
    p.set_defaults(handler=sweep_cmd)


def sweep_cmd(args: argparse.Namespace) -> int:
    from ff_lib.data import Workspace
    from ff_lib.inference import get_host
    from ff_lib.sweep import sweep_run

    ws = Workspace.open(resolve_workspace(args.workspace))
    doc = sweep_run(get_host(), ws, args.run, args.dataset, n=args.n,
                    quantization=args.quantization, max_new_tokens=args.max_new_tokens)  # fmt: skip
    if args.json:
        print_json(doc)
        return 0
    best = doc["best"]["name"]
    rows = [
        (("* " if p["name"] == best else "  ") + p["name"], p["step"],
         p["scores"]["exact_match"], p["scores"]["token_f1"], p["scores"]["rouge_l"],
         p["train_loss"], p["eval_loss"])
        for p in doc["points"]
    ]  # fmt: skip
    base = doc["base"]["scores"]
    rows.append(("  base", "", base["exact_match"], base["token_f1"], base["rouge_l"], "", ""))
    print_table(("checkpoint", "step", "exact", "token_f1", "rouge_l", "train_loss",
                 "eval_loss"), rows)  # fmt: skip
    print(
        f"best: {best} (step {doc['best']['step']}) of run {doc['run']['name']} on {doc['n']} "
        f"rows of {doc['dataset']['name']}"
    )
    return 0
