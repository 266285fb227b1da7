"""`validate`, `generate` and `chat`: adapters and replies from a terminal (torch loads lazily)."""

import argparse
import dataclasses
import sys
from pathlib import Path

from ff_lib.cli.output import print_json
from ff_lib.errors import InvalidInput
from ff_lib.workspace_path import resolve_workspace

PRESET_NAMES = ("Deterministic", "Balanced", "Creative")  # = ff_lib.inference.PRESETS
QUANTIZATION_CHOICES = ("auto", "none", "bf16", "nf4")  # = ff_lib.inference.QUANTIZATIONS


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "validate",
        parents=[common],
        help="check a LoRA adapter folder (or a run folder holding one)",
        description="Exit 0 when the adapter is valid, 1 with the reason on stderr when not.",
    )
    p.add_argument("path", help="adapter folder, or a run folder with adapter/ or checkpoint-N/")
    p.add_argument("--base-model", metavar="B", help="base model to check the shapes against")
    p.set_defaults(handler=validate_cmd)

    p = sub.add_parser(
        "generate",
        parents=[common],
        help="answer one prompt with a run's adapter (streamed)",
    )
    _model_args(p)
    p.add_argument("--prompt", required=True, help="the question to answer")
    _settings_args(p)
    p.set_defaults(handler=generate_cmd)

    p = sub.add_parser(
        "chat",
        parents=[common],
        help="multi-turn chat in the terminal (/clear resets, /exit or EOF quits)",
    )
    _model_args(p)
    _settings_args(p)
    p.set_defaults(handler=chat_cmd)


def _settings_args(p: argparse.ArgumentParser) -> None:
    """A preset and the settings that may override it (generate and chat alike)."""
    p.add_argument("--preset", choices=PRESET_NAMES, default="Balanced")
    p.add_argument("--temperature", type=float, metavar="T", help="0 = greedy (0..2)")
    p.add_argument("--max-new-tokens", type=int, metavar="N")
    p.add_argument("--repetition-penalty", type=float, metavar="R")
    p.add_argument("--top-p", type=float, metavar="P")
    p.add_argument("--top-k", type=int, metavar="K")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--system-prompt", metavar="TEXT")


def _model_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", type=int, metavar="ID", help="a completed run of the workspace")
    which.add_argument("--adapter", metavar="PATH", help="an adapter folder")
    p.add_argument("--base-model", metavar="B", help="default: the run's base, else the adapter's")
    p.add_argument("--no-adapter", action="store_true", help="answer with the base model alone")
    p.add_argument("--quantization", choices=QUANTIZATION_CHOICES, default="auto")


# --- validate ---------------------------------------------------------------------------------
def validate_cmd(args: argparse.Namespace) -> int:
    from ff_lib.inference import validate_adapter

    check = validate_adapter(args.path, base_model=args.base_model)
    if args.json:
        print_json(
            {
                "ok": check.ok,
                "reason": check.reason,
                "adapter_dir": check.adapter_dir,
                "base_model": check.base_model,
                "warnings": list(check.warnings),
                "files": list(check.files),
                "rank": check.rank,
                "target_modules": list(check.target_modules),
                "resolved_from": check.resolved_from,
                "requested_path": check.requested_path,
            }
        )
    else:
        if check.ok:
            print(f"ok: {check.reason}")
            print(f"adapter: {check.adapter_dir}")
        for warning in check.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if not check.ok:
        print(f"error: {check.reason}", file=sys.stderr)
        return 1
    return 0


# --- generate / chat --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Target:
    """What answers: the base model and the adapter folder (None = the base alone)."""

    base_model: str
    adapter_dir: Path | None
    warnings: tuple[str, ...] = ()


def resolve_target(args: argparse.Namespace) -> Target:
    """From --run / --adapter / --base-model / --no-adapter; refuses what cannot answer."""
    from ff_lib.inference import validate_adapter

    adapter_path, base = None, args.base_model
    if args.run is not None:
        from ff_lib.chat.selection import check_run
        from ff_lib.data import Workspace

        run = Workspace.open(resolve_workspace(args.workspace)).get_run(args.run)
        check = check_run(run, base, validate_adapter).raise_if_refused()
        adapter_dir = None if args.no_adapter else Path(check.adapter_dir)
        return Target(str(check.base_model), adapter_dir, check.warnings)
    if args.adapter:
        adapter_path = args.adapter
    elif not args.no_adapter or not base:
        raise InvalidInput("Give --run ID or --adapter PATH (or --no-adapter with --base-model).")

    warnings: tuple[str, ...] = ()
    adapter_dir = None
    if adapter_path is not None:
        check = validate_adapter(adapter_path, base_model=base).raise_if_invalid()
        base = base or check.base_model
        warnings = check.warnings
        adapter_dir = Path(check.adapter_dir)
    if not base:
        raise InvalidInput("No base model: the adapter does not name one; pass --base-model.")
    return Target(base, None if args.no_adapter else adapter_dir, warnings)


def settings_from(args: argparse.Namespace):
    """The preset, with any explicit option applied over it."""
    from ff_lib.inference import PRESETS

    changes = {
        "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
        "repetition_penalty": args.repetition_penalty,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "system_prompt": args.system_prompt,
    }
    return dataclasses.replace(
        PRESETS[args.preset], **{k: v for k, v in changes.items() if v is not None}
    )


def reply_json(reply, warnings=(), waited: bool = False) -> dict:
    """A reply for --json: DESIGN.md's keys, then every fact the text mode prints on stderr
    (how the prompt was fitted: `notice`, `dropped_turns`, `truncated_tokens`; which `decoder`
    answered, on what; the warnings; whether it waited for the model)."""
    doc = {
        "text": reply.text,
        "adapter": reply.adapter,
        "base_model": reply.base_model,
        "settings": reply.settings,
        "stats": dataclasses.asdict(reply.stats),
        "seed": reply.seed,
        "quantization": reply.describe,  # kept as before: "float32 on CPU"
    }
    facts = reply.as_meta()
    facts.pop("prompt_text", None)  # the whole templated prompt: not a fact text mode shows
    for key, value in facts.items():
        doc.setdefault(key, value)
    doc["warnings"] = list(warnings)
    doc["waited_for_model"] = waited
    return doc


def generate_cmd(args: argparse.Namespace) -> int:
    from ff_lib.inference import get_host

    target = resolve_target(args)
    settings = settings_from(args)
    for warning in target.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    waited: list[bool] = []

    def on_wait() -> None:
        waited.append(True)
        print("waiting for the model...", file=sys.stderr)

    stream = get_host().stream_reply(
        target.base_model,
        [{"role": "user", "content": args.prompt}],
        settings,
        target.adapter_dir,
        quantization=args.quantization,
        on_wait=on_wait,
    )
    if args.json:
        stream.text()
        print_json(reply_json(stream.reply, target.warnings, bool(waited)))
        return 0
    _stream_to_stdout(stream)
    return 0


def _stream_to_stdout(stream) -> None:
    try:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    finally:
        stream.close()
    sys.stdout.write("\n")
    reply = stream.reply
    if reply is not None:
        s = reply.stats
        ttft = "-" if s.ttft_s is None else f"{s.ttft_s:.2f} s"
        line = (
            f"[{s.new_tokens} tokens, {s.tokens_per_s:.1f} tokens/s, first token {ttft}, "
            f"{reply.describe}{', seed ' + str(reply.seed) if reply.seed is not None else ''}]"
        )
        print(line, file=sys.stderr)
        if reply.notice:
            print(f"note: {reply.notice}", file=sys.stderr)


def chat_cmd(args: argparse.Namespace) -> int:
    from ff_lib.errors import EmptyPrompt
    from ff_lib.inference import get_host

    target = resolve_target(args)
    settings = settings_from(args)
    host = get_host()
    for warning in target.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    who = "base model" if target.adapter_dir is None else str(target.adapter_dir)
    print(f"chat with {who} on {target.base_model} (/clear resets, /exit quits)", file=sys.stderr)
    interactive = sys.stdin.isatty()
    history: list[dict] = []
    transcript: list[dict] = []
    while True:
        if interactive:
            print("you> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/clear":
            history = []
            print("(history cleared)", file=sys.stderr)
            continue
        if not text:
            continue
        messages = history + [{"role": "user", "content": text}]
        try:
            stream = host.stream_reply(
                target.base_model,
                messages,
                settings,
                target.adapter_dir,
                quantization=args.quantization,
            )
        except EmptyPrompt as exc:
            print(f"error: {exc}", file=sys.stderr)
            transcript.append({"prompt": text, "error": str(exc)})
            continue
        if args.json:
            stream.text()
        else:
            _stream_to_stdout(stream)
        reply = stream.reply
        history = messages + [{"role": "assistant", "content": reply.text}]
        transcript.append({"prompt": text, **reply_json(reply, target.warnings)})
    if args.json:
        print_json(transcript)
    return 0
