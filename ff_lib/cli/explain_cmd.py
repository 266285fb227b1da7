"""`explain`: a stored reply token by token, under its adapter and under the base alone."""

import argparse

from ff_lib.cli.output import print_json, print_table
from ff_lib.errors import InvalidInput
from ff_lib.workspace_path import resolve_workspace

TOKEN_WIDTH = 18  # a token's text is shown cut to this many characters in the table


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="why this answer? a reply's tokens under the adapter vs the base",
        description=(
            "Teacher-force a stored reply (its prompt as the model saw it, then its text) under "
            "the reply's adapter and under the base alone in one batched forward; per token: "
            "log p under each, each side's top 5, and where the base's first choice differs. "
            "Messages are counted from 1 in the order shown (system messages left out): the "
            "first user message is 1, its reply 2."
        ),
    )
    p.add_argument("conversation_id", metavar="CONVERSATION_ID")
    p.add_argument("message_number", type=int, metavar="MESSAGE_NUMBER")
    p.set_defaults(handler=explain_cmd)


def numbered_message(ws, conversation_id: str, number: int):
    """The conversation's message `number` (from 1, system messages not counted)."""
    shown = [m for m in ws.messages(conversation_id) if m.role != "system"]
    if not 1 <= number <= len(shown):
        raise InvalidInput(
            f"Conversation {conversation_id} has {len(shown)} messages: choose a message number "
            f"from 1 to {len(shown)} (1 is the first user message, 2 its reply)."
        )
    return shown[number - 1]


def explain_cmd(args: argparse.Namespace) -> int:
    from ff_lib.data import Workspace
    from ff_lib.inference import get_host
    from ff_lib.inference.explain import explain_stored, unexplainable_reason

    ws = Workspace.open(resolve_workspace(args.workspace))
    m = numbered_message(ws, args.conversation_id, args.message_number)
    if reason := unexplainable_reason(m.role, m.content, m.status, m.meta or {}):
        reason = reason[0].lower() + reason[1:]
        raise InvalidInput(f"Message {args.message_number} cannot be explained: {reason}")
    explanation = explain_stored(get_host(), m.role, m.content, m.status, m.meta or {})
    if args.json:
        print_json(explanation.as_dict())
        return 0
    print_table(
        ("#", "TOKEN", "LOGP ADAPTER", "LOGP BASE", "DELTA", "BASE WOULD PICK"),
        [
            (
                i,
                _shown(t.text),
                f"{t.logprob_adapter:.3f}",
                f"{t.logprob_base:.3f}",
                f"{t.delta:+.3f}",
                _shown(t.top_base[0][0]) if t.changed else "(same)",
            )
            for i, t in enumerate(explanation.tokens, 1)
        ],
    )
    print(explanation.summary())
    if explanation.note:
        print(f"note: {explanation.note}")
    if not explanation.round_trip:
        print("note: the reply's text does not re-encode to itself exactly; tokens are approximate")
    return 0


def _shown(text: str) -> str:
    """A token's text on one table line: repr-like quotes, newlines and tabs made visible."""
    flat = text.replace("\n", "\\n").replace("\t", "\\t")
    if len(flat) > TOKEN_WIDTH:
        flat = flat[: TOKEN_WIDTH - 1] + "…"
    return f"'{flat}'"
