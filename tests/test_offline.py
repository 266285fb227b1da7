"""Nothing leaves the machine unless the user asks, and library chatter stays out of stderr."""

import os
import subprocess
import sys
import time

from ff_lib.offline import ALLOW_DOWNLOADS_VAR, default_to_offline
from tests.conftest import ROOT

HF_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", ALLOW_DOWNLOADS_VAR)


def env_without_offline(tmp_path, **extra: str) -> dict[str, str]:
    """The test's environment as a user's shell has it: no offline switch, an empty HF cache."""
    env = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), **extra}


def run_cli(env: dict[str, str], *argv, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ff_lib", *[str(a) for a in argv]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_offline_is_the_default_and_downloads_are_opt_in():
    env: dict[str, str] = {}
    assert default_to_offline(env) is True
    assert env == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    env = {ALLOW_DOWNLOADS_VAR: "1"}
    assert default_to_offline(env) is False
    assert env == {ALLOW_DOWNLOADS_VAR: "1"}


def test_importing_ff_lib_puts_the_hub_offline_before_it_is_imported(tmp_path):
    code = "import ff_lib, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    env = env_without_offline(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert out.stdout.decode().strip() == "True"

    env[ALLOW_DOWNLOADS_VAR] = "1"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert out.stdout.decode().strip() == "False"


def test_a_mistyped_base_id_fails_fast_without_hf_offline_in_the_env(tmp_path, demo_workspace):
    # On old main this retried huggingface.co five times (~50 s) before a connection error.
    adapter = demo_workspace / "runs" / "capitals-lora" / "adapter"
    started = time.perf_counter()
    proc = run_cli(
        env_without_offline(tmp_path),
        "--workspace", tmp_path / "ws", "generate", "--adapter", adapter,
        "--base-model", "some/missing-id", "--prompt", "hello",
        timeout=90,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert proc.returncode == 1, proc.stderr
    assert "not available offline" in proc.stderr
    assert "some/missing-id" in proc.stderr
    assert "Retrying" not in proc.stderr
    # Python, torch and the CLI start in ~3-5 s on 2 busy cores; the hub's retries took ~50 s.
    assert elapsed < 15, f"took {elapsed:.1f} s"
