"""Nothing leaves the machine unless the user asks; nothing looks hung; no library chatter."""

import json
import os
import shutil
import subprocess
import sys

from ff_lib import demo as demo_mod
from ff_lib.inference import GenerationSettings
from ff_lib.offline import ALLOW_DOWNLOADS_VAR, default_to_offline
from ff_lib.progress import StepProgress
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
    # The command's own time, from `main()` to its exit, once the libraries are imported: on
    # 2 busy cores importing torch and transformers alone can take ~10 s.
    timed_main = (
        "import sys, time, torch, transformers, peft; from ff_lib.cli import main; "
        "import ff_lib.inference; started = time.perf_counter(); code = main(sys.argv[1:]); "
        "print(f'main took {time.perf_counter() - started:.2f} s', file=sys.stderr); "
        "sys.exit(code)"
    )
    argv = [
        "--workspace", tmp_path / "ws", "generate", "--adapter", adapter,
        "--base-model", "some/missing-id", "--prompt", "hello",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", timed_main, *[str(a) for a in argv]],
        cwd=ROOT,
        env=env_without_offline(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "not available offline" in proc.stderr
    assert "some/missing-id" in proc.stderr
    assert "Retrying" not in proc.stderr
    took = float(proc.stderr.split("main took ")[1].split()[0])
    assert took < 5, proc.stderr  # ~0.1 s here; the hub's retries took ~50 s


def test_step_progress_says_how_long_is_left_without_flooding():
    now = [100.0]
    lines: list[str] = []
    progress = StepProgress("training x", lines.append, every_s=3.0, clock=lambda: now[0])
    now[0] += 10.0  # loading the model, before the first step
    for step in range(1, 11):
        now[0] += 1.0  # one second a step
        progress(step, 10, loss=2.0 / step)
    assert lines == [
        "training x: step 1/10 · loss 2.000 · 11 s",
        "training x: step 4/10 · loss 0.500 · 14 s, about 6 s left",
        "training x: step 7/10 · loss 0.286 · 17 s, about 3 s left",
        "training x: step 10/10 · loss 0.200 · done in 20 s",
    ]


def test_the_demo_build_reports_every_long_step(tmp_path, monkeypatch):
    # Under-trained on purpose: this checks what the build says, not what it learns.
    monkeypatch.setattr(demo_mod, "LORA_PARAMS", {**demo_mod.LORA_PARAMS, "steps": 3})
    monkeypatch.setattr(
        demo_mod, "EVAL_SETTINGS", GenerationSettings(temperature=0.0, max_new_tokens=2)
    )
    lines: list[str] = []
    demo_mod.build_demo(tmp_path / "ws", progress=lines.append)
    assert lines[0].startswith("building the demo workspace at ")
    for run in ("capitals-lora on capitals", "pirate-lora on pirate"):
        steps = [line for line in lines if line.startswith(f"training {run}: step ")]
        assert steps[0].startswith(f"training {run}: step 1/3 · loss ")
        assert "done in" in steps[-1] and "step 3/3" in steps[-1]
    assert any(line.startswith("checking capitals-lora's answers: step 50/50") for line in lines)


def test_a_cli_reply_has_no_library_chatter_on_stderr(tmp_path, demo_workspace):
    # An adapter saved by a newer PEFT (a key this PEFT does not know), as TRL outputs often are.
    adapter = tmp_path / "newer-peft-adapter"
    shutil.copytree(demo_workspace / "runs" / "capitals-lora" / "adapter", adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "future_option": 1}))
    proc = run_cli(
        {**os.environ, "HF_HUB_OFFLINE": "1"},
        "--workspace", tmp_path / "ws", "generate", "--adapter", adapter,
        "--prompt", "What is the capital of France?", "--preset", "Deterministic",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "The capital of France is Paris."
    lines = proc.stderr.splitlines()
    assert not [line for line in lines if "kernels" in line], lines  # bitsandbytes' extra
    assert not [line for line in lines if "Warning:" in line or "warnings.warn" in line], lines
    notes = [line for line in lines if line.startswith("warning: ")]
    assert len(notes) == 1 and "['future_option']" in notes[0] and "newer" in notes[0], lines
    assert lines[-1].startswith("[") and "tokens/s" in lines[-1]  # the reply's figures
