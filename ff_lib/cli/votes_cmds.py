"""`votes list` (blind A/B verdicts and the tally) and `votes export --format dpo FILE`."""

import argparse
from pathlib import Path

from ff_lib.cli.output import print_json, print_table
from ff_lib.workspace_path import resolve_workspace


def register(sub, common: argparse.ArgumentParser) -> None:
    votes = sub.add_parser("votes", help="blind A/B votes: list, export as DPO pairs")
    votes_sub = votes.add_subparsers(dest="votes_command", required=True)
    p = votes_sub.add_parser("list", parents=[common], help="every vote, oldest first")
    p.set_defaults(handler=votes_list_cmd)
    p = votes_sub.add_parser(
        "export",
        help="write the votes with a winner as preference pairs",
        description=(
            "dpo: JSONL with prompt, chosen, rejected (TRL's standard preference format); "
            "ties and 'both bad' are left out and counted."
        ),
    )
    p.add_argument("--format", required=True, choices=("dpo",))
    p.add_argument("file", metavar="FILE", help="the JSONL file to write")
    p.set_defaults(handler=votes_export_cmd)


def _votes(args: argparse.Namespace):
    from ff_lib.data import Workspace

    return Workspace.open(resolve_workspace(args.workspace)).list_votes()


def vote_rows(votes) -> list[dict]:
    """The `votes list --json` document: one object per vote, oldest first."""
    return [
        {
            "id": v.id,
            "prompt": v.prompt,
            "verdict": v.verdict,
            "a": {"model": v.model_a, "answer": v.answer_a, "meta": v.meta_a},
            "b": {"model": v.model_b, "answer": v.answer_b, "meta": v.meta_b},
            "swapped": v.swapped,
            "created_at": v.created_at,
        }
        for v in votes
    ]


def votes_list_cmd(args: argparse.Namespace) -> int:
    from ff_lib.votes import TALLY_RULE, VERDICT_LABELS, tally, tally_table

    votes = _votes(args)
    if args.json:
        print_json(vote_rows(votes))
        return 0
    print_table(
        ("id", "verdict", "A", "B", "prompt", "at"),
        [
            (
                v.id,
                VERDICT_LABELS[v.verdict],
                v.model_a["label"],
                v.model_b["label"],
                " ".join(v.prompt.split())[:50],
                f"{v.created_at:%Y-%m-%d %H:%M}",
            )  # fmt: skip
            for v in votes
        ],
    )
    if votes:
        rows = tally_table(tally(votes))
        print()
        print_table(tuple(rows[0]), [tuple(r.values()) for r in rows])
        print(TALLY_RULE)
    return 0


def votes_export_cmd(args: argparse.Namespace) -> int:
    from ff_lib.errors import InvalidInput
    from ff_lib.votes import dpo_export

    export = dpo_export(_votes(args))
    if not export.pairs:
        raise InvalidInput(
            f"No vote with a winner to export ({export.ties} tie(s), {export.both_bad} "
            "“both bad”): vote “A better” or “B better” on the Blind test page first."
        )
    target = Path(args.file)
    try:
        target.write_bytes(export.jsonl())
    except OSError as exc:
        raise InvalidInput(f"Cannot write {target}: {exc.strerror or exc}.") from exc
    print(export.summary(str(target)))
    return 0
