"""`effect`, `score` and `replay`: did the fine-tune change anything, and for the better."""

import argparse
import sys

from ff_lib.cli.output import print_json, print_table, to_jsonable
from ff_lib.errors import InvalidInput
from ff_lib.inference.bases import QUANTIZATIONS
from ff_lib.runs import run_by_ref
from ff_lib.workspace_path import resolve_workspace


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "effect",
        parents=[common],
        help="how much an adapter changes the base's answers (adapter on vs off)",
        description=(
            "Greedy-decode a few prompts with the adapter, feed each reply through the base with "
            "the adapter on and off, and report the share of tokens whose argmax differs and the "
            "mean KL(adapter || base) per token."
        ),
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--run", metavar="RUN", help="a completed run, by id or name (result stored)"
    )
    which.add_argument("--adapter", metavar="PATH", help="an adapter folder")
    p.add_argument("--base-model", metavar="B", help="default: the run's base, else the adapter's")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="auto")
    p.add_argument("--refresh", action="store_true", help="measure again even when stored")
    p.set_defaults(handler=effect_cmd)

    p = sub.add_parser(
        "score",
        parents=[common],
        help="score base vs run (vs other runs) on a dataset's rows, or resume a scorecard",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", metavar="RUN")
    what.add_argument(
        "--resume", type=int, metavar="SCORECARD_ID", help="answer only what it lacks"
    )
    p.add_argument("--dataset", type=int, metavar="ID")
    p.add_argument("-n", type=int, default=20, metavar="N", help="rows, in file order (20)")
    p.add_argument(
        "--compare-run",
        metavar="RUN",
        action="append",
        default=[],
        help="another run on the same base, by id or name (repeat for more)",
    )
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="default: the preset's 128")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="auto")
    p.set_defaults(handler=score_cmd)

    p = sub.add_parser(
        "replay",
        parents=[common],
        help="answer a saved conversation's user turns again with another run",
    )
    p.add_argument("conversation_id", metavar="CONVERSATION_ID")
    p.add_argument("--run", metavar="RUN", required=True)
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="auto")
    p.set_defaults(handler=replay_cmd)


def _workspace(args: argparse.Namespace):
    from ff_lib.data import Workspace

    return Workspace.open(resolve_workspace(args.workspace))


class _Bar:
    """A one-line progress bar on stderr (stdout stays clean for --json). Left unfinished (an
    error on the way), it ends its line on leaving the `with`: the error starts a line of its
    own instead of following the bar."""

    def __init__(self) -> None:
        self.open = False

    def __call__(self, done: int, total: int, what: str) -> None:
        width = 24
        filled = width * done // max(total, 1)
        self.open = done < total
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what:<32}",
              end="" if self.open else "\n", file=sys.stderr, flush=True)  # fmt: skip

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)


# --- effect -----------------------------------------------------------------------------------
def effect_cmd(args: argparse.Namespace) -> int:
    from ff_lib import evaluation
    from ff_lib.inference import get_host

    host = get_host()
    if args.run is not None:
        effect = evaluation.run_effect(
            host,
            _workspace(args),
            args.run,
            base_model=args.base_model,
            quantization=args.quantization,
            refresh=args.refresh,
        )
    else:
        effect = evaluation.adapter_effect(
            host, args.adapter, base_model=args.base_model, quantization=args.quantization
        )
    if args.json:
        print_json({**effect.as_dict(), "summary": effect.summary()})
        return 0
    print(effect.summary())
    if effect.warning:
        print(f"warning: {effect.warning}", file=sys.stderr)
    print_table(
        ("PROMPT", "TOKENS", "CHANGED", "MEAN KL"),
        [(_short(p.prompt), p.positions, p.changed, f"{p.mean_kl:.4f}") for p in effect.per_prompt],
    )
    return 0


# --- score ------------------------------------------------------------------------------------
def score_cmd(args: argparse.Namespace) -> int:
    with _Bar() as bar:
        card = _scorecard(args, None if args.json else bar)
    if args.json:
        print_json(
            {
                "id": card.id,
                "run_id": card.run_id,
                "dataset_id": card.dataset_id,
                "created_at": card.created_at,
                "status": card.status,
                "summary": card.summary,
                "rows": card.rows,
            }
        )
        return 0
    _print_scorecard(card)
    print(f"scorecard {card.id} stored ({card.summary['n']} rows, {card.summary['seconds']} s)")
    return 0


def _scorecard(args: argparse.Namespace, progress):
    """The scorecard `score` asked for: resumed, or a new one."""
    from ff_lib import evaluation
    from ff_lib.inference import get_host

    if args.resume is not None:
        if args.dataset is not None or args.compare_run or args.max_new_tokens is not None:
            raise InvalidInput(
                "--resume answers with the scorecard's own dataset, runs and settings: "
                "leave out --dataset, --compare-run and --max-new-tokens."
            )
        return evaluation.resume_scorecard(
            get_host(), _workspace(args), args.resume, quantization=args.quantization,
            progress=progress,
        )  # fmt: skip
    if args.dataset is None:
        raise InvalidInput("score --run needs --dataset ID (see `datasets list`).")
    ws = _workspace(args)
    return evaluation.score_run(
        get_host(),
        ws,
        args.run,
        args.dataset,
        n=args.n,
        compare_run_ids=[run_by_ref(ws, ref).id for ref in args.compare_run],
        quantization=args.quantization,
        max_new_tokens=args.max_new_tokens,
        progress=progress,
    )


def _print_scorecard(card) -> None:
    """The per-row answers with their token F1, then each model's means."""
    from ff_lib import evaluation

    models = card.summary["models"]
    headers = ["PROMPT", "EXPECTED"] + [f"{m['label'].upper()} (F1)" for m in models.values()]
    print_table(
        headers,
        [
            [_short(r["prompt"], 40), _short(r["expected"], 30)]
            + [f"{_short(r['answers'][k], 30)} ({r['scores'][k]['token_f1']:.2f})" for k in models]
            for r in card.rows
        ],
    )
    print()
    print_table(
        ("MODEL", "EXACT MATCH", "TOKEN F1", "ROUGE-L"),
        [
            (
                row["Model"],
                f"{row['Exact match']:.2f}",
                f"{row['Token F1']:.2f}",
                f"{row['ROUGE-L']:.2f}",
            )  # fmt: skip
            for row in evaluation.scorecard_means(card)
        ],
    )


# --- replay -----------------------------------------------------------------------------------
def replay_cmd(args: argparse.Namespace) -> int:
    from ff_lib import evaluation
    from ff_lib.inference import get_host

    with _Bar() as bar:
        replay = evaluation.replay_conversation(
            get_host(),
            _workspace(args),
            args.conversation_id,
            args.run,
            quantization=args.quantization,
            progress=None if args.json else bar,
        )
    same = sum(t.original == t.replayed for t in replay.turns)
    if args.json:
        print_json({**to_jsonable(replay), "unchanged": same})
        return 0
    for i, turn in enumerate(replay.turns, 1):
        print(f"--- turn {i}: {turn.prompt}")
        print(f"[{replay.original_label}] {turn.original if turn.original is not None else '-'}")
        print(f"[{replay.run_name}] {turn.replayed}")
    print(
        f"{same}/{len(replay.turns)} answers unchanged · {replay.base_loads} base loads · "
        f"{replay.seconds} s",
        file=sys.stderr,
    )
    return 0


def _short(text: str | None, width: int = 50) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
