"""`runs ...`, `datasets ...` and `import-finefoundry`: the workspace's data from a terminal."""

import argparse
import sys

from ff_lib.cli.output import print_json, print_table
from ff_lib.errors import InvalidInput
from ff_lib.workspace_path import resolve_workspace

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")  # = ff_lib.data's


def _workspace(args: argparse.Namespace):
    # Imported here so that building the parser (for any command) stays light.
    from ff_lib.data import Workspace

    return Workspace.open(resolve_workspace(args.workspace))


def _when(value) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M")


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _run_json(run) -> dict:
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "base_model": run.base_model,
        "adapter_path": run.adapter_path,
        "dataset_id": run.dataset_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "params": run.params,
        "metrics": run.metrics,
    }


def _dataset_json(dataset) -> dict:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "rows": dataset.rows,
        "skipped": dataset.skipped,
        "source": dataset.source,
        "created_at": dataset.created_at,
    }


def _print_runs(runs) -> None:
    print_table(
        ("ID", "NAME", "STATUS", "BASE MODEL", "DATASET", "COMPLETED", "ADAPTER"),
        [
            (
                r.id,
                r.name,
                r.status,
                r.base_model,
                r.dataset_id,
                _when(r.completed_at),
                r.adapter_path,
            )
            for r in runs
        ],
    )


def _print_datasets(datasets) -> None:
    print_table(
        ("ID", "NAME", "ROWS", "SKIPPED", "CREATED", "SOURCE"),
        [(d.id, d.name, d.rows, d.skipped, _when(d.created_at), d.source) for d in datasets],
    )


def runs_list(args: argparse.Namespace) -> int:
    from ff_lib.runs import CANNOT_ANSWER, check_run

    runs = _workspace(args).list_runs(limit=args.limit)
    checks = {r.id: check_run(r) for r in runs}
    if args.json:
        print_json(
            [
                {**_run_json(r), "ready": checks[r.id].ok, "reason": checks[r.id].message}
                for r in runs
            ]
        )
        return 0
    _print_runs(runs)
    for run in runs:
        if run.params.get("renamed_from"):
            print(
                f"note: run {run.id} was renamed from {run.params['renamed_from']!r} "
                "(run names are unique in a workspace; `runs rename` picks another)"
            )
        if not checks[run.id].ok and run.status == "completed":
            print(
                f"{CANNOT_ANSWER} run {run.id} ({run.name}) cannot answer: {checks[run.id].message}"
            )
    return 0


def runs_add(args: argparse.Namespace) -> int:
    run = _workspace(args).add_run(
        name=args.name,
        base_model=args.base_model,
        adapter_path=args.adapter,
        status=args.status,
        dataset_id=args.dataset,
    )
    if args.json:
        print_json(_run_json(run))
    else:
        print(f"registered run {run.id} ({run.name}, {run.status})")
    return 0


def runs_set_status(args: argparse.Namespace) -> int:
    run = _workspace(args).set_run_status(args.id, args.status)
    if args.json:
        print_json(_run_json(run))
    else:
        print(f"run {run.id} ({run.name}) is now {run.status}")
    return 0


def _fix_command(args: argparse.Namespace, rest: str) -> str:
    """A command to copy: the same workspace option the user gave, then `rest`."""
    workspace = f"--workspace {args.workspace} " if args.workspace else ""
    return f"python -m ff_lib {workspace}{rest}"


def _missing_bases(args: argparse.Namespace, runs) -> list[dict]:
    """For each base the runs name that is not here: the runs and the commands that fix it."""
    from ff_lib.runs import missing_bases

    return [
        {
            "base_model": base,
            "run_ids": ids,
            "fix": [_fix_command(args, f"runs set-base {i} BASE") for i in ids],
            "rescan": _fix_command(args, f"runs scan {args.dir} --base-model BASE"),
        }
        for base, ids in missing_bases(runs).items()
    ]


def runs_scan(args: argparse.Namespace) -> int:
    result = _workspace(args).scan_adapters(args.dir, base_model=args.base_model)
    missing = _missing_bases(args, result.added)
    if args.json:
        print_json(
            {
                "added": [_run_json(r) for r in result.added],
                "skipped": result.skipped,
                "renamed": result.renamed,
                "missing_bases": missing,
            }
        )
        return 0
    print(f"registered {len(result.added)} adapter(s)")
    if result.added:
        _print_runs(result.added)
    for note in result.renamed:
        print(f"renamed {note}")
    for reason in result.skipped:
        print(f"skipped {reason}")
    for entry in missing:
        ids = ", ".join(map(str, entry["run_ids"]))
        print(
            f"base model {entry['base_model']} is not available here: run(s) {ids} cannot "
            "answer until it is. Give them the base they should use (a local model folder "
            "or a cached model id):"
        )
        for command in entry["fix"]:
            print(f"  {command}")
        print(f"  (or forget them and scan again: {entry['rescan']})")
    return 0


def runs_rename(args: argparse.Namespace) -> int:
    run = _workspace(args).rename_run(args.id, args.name)
    if args.json:
        print_json(_run_json(run))
    else:
        print(f"run {run.id} is now named {run.name}")
    return 0


def runs_set_base(args: argparse.Namespace) -> int:
    from ff_lib.runs import check_run

    run = _workspace(args).set_run_base(args.id, args.base_model)
    check = check_run(run)
    if args.json:
        print_json({**_run_json(run), "ready": check.ok, "reason": check.message})
        return 0
    print(f"run {run.id} ({run.name}) now answers on base {run.base_model}")
    if check.ok:
        print(check.message)
    else:
        print(f"warning: it cannot answer yet: {check.message}", file=sys.stderr)
    return 0


def runs_remove(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    if not args.yes:
        run = ws.get_run(args.id)
        raise InvalidInput(
            f"this removes run {run.id} ({run.name}) from the workspace: add --yes to confirm "
            "(its adapter files and stored conversations stay)"
        )
    run, unlinked = ws.remove_run(args.id)
    if args.json:
        print_json({**_run_json(run), "conversations_unlinked": unlinked})
        return 0
    print(
        f"removed run {run.id} ({run.name}); its adapter files stay in {run.adapter_path}, and "
        f"{unlinked} stored conversation(s) keep their messages"
    )
    return 0


def datasets_list(args: argparse.Namespace) -> int:
    datasets = _workspace(args).list_datasets()
    if args.json:
        print_json([_dataset_json(d) for d in datasets])
    else:
        _print_datasets(datasets)
    return 0


def datasets_import(args: argparse.Namespace) -> int:
    dataset = _workspace(args).import_dataset(
        args.file,
        args.name,
        prompt_column=args.prompt_column,
        response_column=args.response_column,
        encoding=args.encoding,
    )
    if args.json:
        print_json(
            {
                **_dataset_json(dataset),
                "skipped_reasons": dataset.skipped_reasons,
                "notes": list(dataset.notes),
            }
        )
        return 0
    print(f"imported dataset {dataset.id} ({dataset.name}): {dataset.rows} rows")
    for reason, count in dataset.skipped_reasons.items():
        print(f"skipped {count} row(s): {reason}")
    for note in dataset.notes:
        print(f"note: {note}")
    return 0


def datasets_sample(args: argparse.Namespace) -> int:
    pairs = _workspace(args).sample_prompts(args.id, k=args.k)
    if args.json:
        print_json([{"prompt": p.prompt, "response": p.response} for p in pairs])
    else:
        print_table(("PROMPT", "RESPONSE"), [(_short(p.prompt), _short(p.response)) for p in pairs])
    return 0


def import_finefoundry(args: argparse.Namespace) -> int:
    result = _workspace(args).import_finefoundry(args.db_file)
    if args.json:
        print_json(
            {
                "runs": [_run_json(r) for r in result.runs],
                "datasets": [_dataset_json(d) for d in result.datasets],
                "skipped": result.skipped,
                "notes": result.notes,
                "renamed": result.renamed,
            }
        )
        return 0
    print(f"imported {len(result.runs)} run(s) and {len(result.datasets)} dataset(s)")
    if result.runs:
        _print_runs(result.runs)
    if result.datasets:
        _print_datasets(result.datasets)
    for note in result.renamed:
        print(f"renamed {note}")
    for reason in result.skipped:
        print(f"skipped {reason}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def register(sub, common: argparse.ArgumentParser) -> None:
    """Add `runs`, `datasets` and `import-finefoundry` to the top-level subparsers."""
    _register_runs(sub, common)
    _register_datasets(sub, common)
    p = sub.add_parser(
        "import-finefoundry",
        parents=[common],
        help="import runs and scraped datasets from a FineFoundry database",
    )
    p.add_argument("db_file", metavar="DB_FILE", help="FineFoundry's finefoundry.db")
    p.set_defaults(handler=import_finefoundry)


def _register_runs(sub, common: argparse.ArgumentParser) -> None:
    runs = sub.add_parser(
        "runs", help="training runs: list, add, set-status, scan, rename, set-base, remove"
    )
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    p = runs_sub.add_parser("list", parents=[common], help="list runs, newest first")
    p.add_argument("--limit", type=_positive_int, default=None, help="at most this many")
    p.set_defaults(handler=runs_list)

    p = runs_sub.add_parser("add", parents=[common], help="register a run")
    p.add_argument("--name", required=True)
    p.add_argument("--base-model", required=True, help="base model id or local folder")
    p.add_argument("--adapter", required=True, metavar="PATH", help="the adapter folder")
    p.add_argument("--status", choices=RUN_STATUSES, default="completed")
    p.add_argument("--dataset", type=int, metavar="ID", help="dataset id it was trained on")
    p.set_defaults(handler=runs_add)

    p = runs_sub.add_parser("set-status", parents=[common], help="move a run to a new status")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("status", choices=RUN_STATUSES, metavar="STATUS", help=" | ".join(RUN_STATUSES))
    p.set_defaults(handler=runs_set_status)

    p = runs_sub.add_parser(
        "scan", parents=[common], help="register every adapter folder under DIR"
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "--base-model",
        metavar="BASE",
        help="the base every adapter found was trained on (when the one they name has moved)",
    )
    p.set_defaults(handler=runs_scan)

    p = runs_sub.add_parser("rename", parents=[common], help="give a run a new (unique) name")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=runs_rename)

    p = runs_sub.add_parser(
        "set-base", parents=[common], help="correct the base model a run answers on"
    )
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("base_model", metavar="BASE", help="a local model folder or a cached model id")
    p.set_defaults(handler=runs_set_base)

    p = runs_sub.add_parser(
        "remove", parents=[common], help="forget a run (its files and conversations stay)"
    )
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--yes", action="store_true", help="confirm the removal")
    p.set_defaults(handler=runs_remove)


def _register_datasets(sub, common: argparse.ArgumentParser) -> None:
    datasets = sub.add_parser("datasets", help="datasets: list, import, sample")
    ds_sub = datasets.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)

    p = ds_sub.add_parser("list", parents=[common], help="list datasets")
    p.set_defaults(handler=datasets_list)

    p = ds_sub.add_parser(
        "import",
        parents=[common],
        help="import a .jsonl, .json, .csv, .tsv or .parquet file (.gz too)",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", required=True)
    p.add_argument("--prompt-column", metavar="C", help="column to use as the prompt")
    p.add_argument("--response-column", metavar="C", help="column to use as the response")
    p.add_argument(
        "--encoding",
        metavar="E",
        help="the file's encoding when it is not UTF-8 (e.g. cp1252 for Excel's plain CSV)",
    )
    p.set_defaults(handler=datasets_import)

    p = ds_sub.add_parser("sample", parents=[common], help="k random prompts of a dataset")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("-k", type=_positive_int, default=5, help="how many (default 5)")
    p.set_defaults(handler=datasets_sample)
