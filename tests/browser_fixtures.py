"""Fixtures for the browser journey: Debian's Chromium driven by Playwright against `streamlit run`.

Import the fixtures you need into a test module; pytest-playwright provides `page` and friends.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("FF_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

# Debian's Chromium on a machine with a closed network: no background traffic, no sandbox (root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip (with the reason) where no Chromium can be driven."""
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"browser tests need Chromium at {CHROMIUM}: `make test` installs it with apt "
            "when run as root; elsewhere install the `chromium` package or set FF_CHROMIUM"
        )


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    require_chromium()
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": CHROMIUM_ARGS,
        "headless": True,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {
        **browser_context_args,
        "viewport": {"width": 1400, "height": 1000},
        "accept_downloads": True,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppServer:
    """A running `streamlit run Home.py` and where its log goes."""

    url: str
    workspace: Path
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_app(
    workspace: Path, log_path: Path, port: int | None = None, extra_env: dict | None = None
) -> AppServer:
    """Start the app on a free localhost port and wait until it answers its health check."""
    port = port or free_port()
    env = {
        **os.environ,
        "FF_WORKSPACE": str(workspace),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "Home.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            # No --browser.gatherUsageStats here: .streamlit/config.toml must turn it off, as it
            # does for `make run` (test_browser_first_start records every request).
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return AppServer(url, workspace, log_path, process)
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"streamlit did not become healthy:\n{log_path.read_text()}")


def stop_app(server: AppServer, hard: bool = False) -> None:
    if server.process.poll() is None:
        if hard:
            server.process.kill()
        else:
            server.process.terminate()
        server.process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser_workspace(demo_workspace: Path, tmp_path_factory) -> Path:
    """A private copy of the built demo, so browser tests never disturb other tests' data."""
    target = tmp_path_factory.mktemp("browser") / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


@pytest.fixture(scope="module")
def app_server(browser_workspace: Path, tmp_path_factory) -> Iterator[AppServer]:
    require_chromium()
    log_path = tmp_path_factory.mktemp("logs") / "streamlit.log"
    server = start_app(browser_workspace, log_path)
    yield server
    stop_app(server)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
