"""A real `serve` server (uvicorn in a background thread) over a copy of the demo workspace."""

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ff_lib.data import Workspace
from ff_lib.serve import create_app

START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_demo(demo_workspace: Path, target: Path) -> Path:
    """A private copy of the demo workspace (its runs point at the demo's adapter folders)."""
    shutil.copytree(demo_workspace, target)
    return target


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    ws: Workspace
    door: object
    api_key: str | None

    def client(self, api_key: str | None = None, **kwargs):
        """The official openai client on this server (no retries: a 503 must show)."""
        from openai import OpenAI

        key = api_key if api_key is not None else (self.api_key or "not-needed")
        return OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)


@contextmanager
def serving(
    workspace: Path, door, api_key: str | None = None, busy_timeout_s: float | None = None
) -> Iterator[Server]:
    """`serve` on a free loopback port until the block ends."""
    ws = Workspace.open(workspace)
    if busy_timeout_s is not None:
        ws = Workspace.open(workspace, busy_timeout_s=busy_timeout_s)
    port = free_port()
    config = uvicorn.Config(
        create_app(ws, door, api_key), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="serve-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", ws, door, api_key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
