"""`serve`: the workspace's runs over an OpenAI-compatible API (see ff_lib.serve)."""

import argparse
import socket
import sys

from ff_lib.errors import InvalidInput

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the workspace's runs over an OpenAI-compatible API",
        description=(
            "Serve every run that can answer, and its base model, at /v1/chat/completions and "
            "/v1/models (the OpenAI API). Listens on 127.0.0.1 unless --host says otherwise; "
            "any other address needs --api-key. Each reply is recorded in the workspace as an "
            "API conversation."
        ),
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="require `Authorization: Bearer KEY` on every request (needed off loopback)",
    )
    p.set_defaults(handler=serve_cmd)


def serve_cmd(args: argparse.Namespace) -> int:
    import uvicorn

    from ff_lib.data import Workspace
    from ff_lib.inference import get_host
    from ff_lib.serve import check_bind, create_app
    from ff_lib.serve.catalog import list_models
    from ff_lib.workspace_path import resolve_workspace

    check_bind(args.host, args.api_key)
    _check_free(args.host, args.port)
    ws = Workspace.open(resolve_workspace(args.workspace))
    served = list_models(ws)
    names = ", ".join(m.id for m in served) or "none (no run can answer yet)"
    where = f"http://{args.host}:{args.port}/v1"
    key = "an API key is required" if args.api_key else "no API key (loopback only)"
    print(f"Serving {ws.path} at {where} ({key}). Models: {names}", file=sys.stderr)
    app = create_app(ws, get_host(), args.api_key)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _port(text: str) -> int:
    """A TCP port number, 1-65535 (argparse turns the ValueError into a usage error)."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


def _check_free(host: str, port: int) -> None:
    """Refuse at once, in one line, an address this machine cannot listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InvalidInput(
                f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Choose another --port "
                "(or stop what is using it)."
            ) from exc
