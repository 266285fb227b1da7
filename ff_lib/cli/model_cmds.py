"""`validate`, `generate` and `chat`: adapters and replies from a terminal (torch loads lazily)."""

import argparse
import dataclasses
import sys

from ff_lib.cli import prompt_input
from ff_lib.cli.output import print_json
from ff_lib.errors import InvalidInput
from ff_lib.inference.bases import QUANTIZATIONS
from ff_lib.workspace_path import resolve_workspace

PRESET_NAMES = ("Deterministic", "Balanced", "Creative")  # = ff_lib.inference.PRESETS


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
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the question to answer")
    prompt.add_argument("--prompt-file", metavar="FILE", help="read the prompt (UTF-8); - = stdin")
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
    which.add_argument(
        "--run", metavar="RUN", help="a completed run of the workspace, by id or name"
    )
    which.add_argument("--adapter", metavar="PATH", help="an adapter folder")
    p.add_argument("--base-model", metavar="B", help="default: the run's base, else the adapter's")
    p.add_argument("--no-adapter", action="store_true", help="answer with the base model alone")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="auto")


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
                "base_problem": check.base_problem,
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
def resolve_target(args: argparse.Namespace):
    """What answers (ff_lib.runs.RunCheck), from --run / --adapter / --base-model / --no-adapter.

    Refuses what cannot answer, with the reason and the fix.
    """
    from ff_lib import runs

    if args.run is not None:
        from ff_lib.data import Workspace

        run = Workspace.open(resolve_workspace(args.workspace)).get_run(args.run)
        check = runs.check_run(run, args.base_model, _engine_validate()).raise_if_refused()
        if args.no_adapter:
            return dataclasses.replace(check, adapter_dir=None)
        return check
    if args.adapter:
        check = runs.check_adapter_folder(args.adapter, args.base_model).raise_if_refused()
        return dataclasses.replace(check, adapter_dir=None) if args.no_adapter else check
    if not args.no_adapter or not args.base_model:
        raise InvalidInput("Give --run ID or --adapter PATH (or --no-adapter with --base-model).")
    return runs.check_base_only(args.base_model).raise_if_refused()


def _engine_validate():
    """validate_adapter, or as a vLLM server sees it when FF_ENGINE_URL names one (files not on
    this machine are the server's to validate; remote.check_for_remote)."""
    import functools

    from ff_lib.inference import get_host, validate_adapter
    from ff_lib.inference.remote import RemoteHost, check_for_remote

    host = get_host()
    if isinstance(host, RemoteHost):
        return functools.partial(check_for_remote, where=host.where.describe)
    return validate_adapter


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

    prompt = prompt_input.prompt_from(args)
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
        [{"role": "user", "content": prompt}],
        settings,
        target.adapter_path,
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
    number = 0
    while True:
        if interactive:
            print("you> ", end="", flush=True, file=sys.stderr)
        number += 1
        try:
            line = prompt_input.read_line(number)
        except InvalidInput as exc:
            print(f"error: {exc} (line skipped)", file=sys.stderr)
            continue
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
                target.adapter_path,
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
