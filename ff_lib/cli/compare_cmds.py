"""`compare` (up to four models answer one prompt in one batched pass) and `conversations list`."""

import argparse
import sys

from ff_lib.cli.output import print_json, print_table
from ff_lib.inference.bases import QUANTIZATIONS
from ff_lib.workspace_path import resolve_workspace

PRESET_NAMES = ("Deterministic", "Balanced", "Creative")  # = ff_lib.inference.PRESETS
CONVERSATIONS_SHOWN = 1000  # `conversations list` without --limit


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "compare",
        parents=[common],
        help="up to four models answer one prompt side by side (one batched pass)",
        description=(
            "Each model is 'base', a run's id or unique name, or a checkpoint of a run "
            "(RUN@checkpoint-N or RUN@N: it answers as a run named after it, registered the "
            "first time); all must share one base. Answers come in the order given."
        ),
    )
    p.add_argument("--prompt", required=True, help="the question every model answers")
    p.add_argument("--models", required=True, metavar="M1,M2,...",
                   help="base, run ids or names, RUN@checkpoint-N")  # fmt: skip
    p.add_argument("--preset", choices=PRESET_NAMES, default="Balanced")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="default: the preset's")
    p.add_argument("--base-model", metavar="B", help="default: the first run's base")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="auto")
    p.set_defaults(handler=compare_cmd)

    conversations = sub.add_parser("conversations", help="stored conversations: list")
    conv_sub = conversations.add_subparsers(dest="conversations_command", required=True)
    p = conv_sub.add_parser("list", parents=[common], help="conversations, newest first")
    p.add_argument("--limit", type=int, default=CONVERSATIONS_SHOWN, metavar="N")
    p.set_defaults(handler=conversations_list_cmd)


def _workspace(args: argparse.Namespace):
    from ff_lib.data import Workspace

    return Workspace.open(resolve_workspace(args.workspace))


def compare_cmd(args: argparse.Namespace) -> int:
    import dataclasses

    from ff_lib import compare
    from ff_lib.errors import InvalidInput
    from ff_lib.inference import PRESETS, get_host

    if not args.prompt.strip():
        raise InvalidInput("The prompt is empty: give --prompt with some text.")
    specs = [s.strip() for s in args.models.split(",") if s.strip()]
    notes: list[str] = []
    sides = compare.resolve_models(_workspace(args), specs, args.base_model, notes)
    for note in notes:  # on stderr: --json keeps stdout one JSON document
        print(f"note: {note}", file=sys.stderr)
    settings = PRESETS[args.preset]
    if args.max_new_tokens is not None:
        settings = dataclasses.replace(settings, max_new_tokens=args.max_new_tokens)
    for side in sides:
        for warning in side.warnings:
            print(f"warning: {side.label}: {warning}", file=sys.stderr)
    messages = [{"role": "user", "content": args.prompt}]
    replies = compare.answer_together(get_host(), sides, messages, settings, args.quantization)
    doc = compare.compare_json(specs, sides, replies)
    if args.json:
        print_json(doc)
        return 0
    _print_answers(doc["answers"])
    return 0


def _print_answers(answers: list[dict]) -> None:
    """Each answer under its label, labels padded to one width so the texts line up."""
    from ff_lib.chat import blank_text_note

    labels = [f"[{a['label']}]" for a in answers]
    width = max(len(label) for label in labels)
    indent = " " * (width + 1)
    for label, answer in zip(labels, answers, strict=True):
        text = answer["text"] or ""
        note = "(no text)" if not text else blank_text_note(text)
        lines = [f"({note})"] if note and text else (text or note).split("\n")
        print(f"{label.ljust(width)} {lines[0]}".rstrip())
        for line in lines[1:]:
            print(f"{indent}{line}".rstrip())
        s = answer["stats"]
        print(f"{indent}-- {s.get('new_tokens')} tokens, {s.get('tokens_per_s', 0):.1f} tokens/s")


def conversation_rows(ws, limit: int) -> list[dict]:
    """The `conversations list --json` document: newest first."""
    return [
        {
            "id": c.id,
            "title": c.title,
            "run_id": c.run_id,
            "messages": c.message_count,
            "source": c.source,  # "app" | "api" (served by `serve`)
            "updated_at": c.updated_at,
            "created_at": c.created_at,
        }
        for c in ws.list_conversations(limit=limit)
    ]


def conversations_list_cmd(args: argparse.Namespace) -> int:
    from ff_lib.errors import InvalidInput

    if args.limit < 1:
        raise InvalidInput(f"--limit must be at least 1 (got {args.limit}).")
    rows = conversation_rows(_workspace(args), args.limit)
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ("id", "title", "run", "messages", "updated"),
        [
            (r["id"], r["title"], r["run_id"], r["messages"], f"{r['updated_at']:%Y-%m-%d %H:%M}")
            for r in rows
        ],
    )
    return 0
