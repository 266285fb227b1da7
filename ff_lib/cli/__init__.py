"""`python -m ff_lib [--workspace DIR] COMMAND ...`: the pages' functions for scripts and terminals.

Exit codes: 0 success, 1 an input was refused (one line on stderr), 2 bad usage (argparse).
Each command module exposes `register(subparsers, common)`; `common` is a parent parser that
adds `--json`. A handler takes the parsed args and returns an exit code.
"""

import argparse
import sys

from ff_lib.errors import FFError

# Command modules, in the order their commands appear in --help. Each is imported lazily by
# name so that `runs list` never pays for importing torch.
COMMAND_MODULES = (
    "ff_lib.cli.data_cmds",
    "ff_lib.cli.demo_cmd",
    "ff_lib.cli.model_cmds",
    "ff_lib.cli.bench_cmd",
    "ff_lib.cli.eval_cmds",
    "ff_lib.cli.compare_cmds",
    "ff_lib.cli.explain_cmd",
    "ff_lib.cli.votes_cmds",
    "ff_lib.cli.sweep_cmd",
    "ff_lib.cli.serve_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib
    import importlib.util

    parser = argparse.ArgumentParser(
        prog="python -m ff_lib",
        description="FF Playground: try LoRA fine-tunes locally.",
    )
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="workspace folder (default: $FF_WORKSPACE or ./workspace)",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from ff_lib.cli.prompt_input import check_arguments

        check_arguments(parser, args)
        _resolve_run(args)
        return int(args.handler(args) or 0)
    except FFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _resolve_run(args) -> None:
    """`--run` names a run by its id or its unique name; the handlers get the id."""
    if not isinstance(getattr(args, "run", None), str):
        return
    from ff_lib.data import Workspace
    from ff_lib.runs import run_by_ref
    from ff_lib.workspace_path import resolve_workspace

    args.run = run_by_ref(Workspace.open(resolve_workspace(args.workspace)), args.run).id
