"""`demo [--force]`: build the demo workspace (tiny base, two LoRA adapters, runs in every state)."""

import argparse
import sys

from ff_lib.cli.output import print_json
from ff_lib.workspace_path import resolve_workspace


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "demo",
        parents=[common],
        help="build the demo workspace (no download)",
        description="Build a tiny base model, train two LoRA adapters on the bundled datasets "
        "and register runs in every state. Does nothing when the demo is already built.",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild the models and refresh the demo runs"
    )
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ff_lib.demo import build_demo

    def to_stderr(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def to_stdout(line: str) -> None:
        print(line, flush=True)

    # With --json stdout is one JSON document, so the progress lines go to stderr.
    progress = to_stderr if args.json else to_stdout
    result = build_demo(resolve_workspace(args.workspace), force=args.force, progress=progress)
    if args.json:
        print_json(
            {
                "workspace": result.workspace,
                "base_model": result.base_model,
                "built": result.built,
                "runs": result.runs,
                "datasets": result.datasets,
                "exact_match": {
                    name: {"correct": em.correct, "total": em.total, "rate": em.rate}
                    for name, em in result.exact_match.items()
                },
                "seconds": round(result.seconds, 2),
            }
        )
    return 0
