"""`python -m ff_lib demo`: a tiny base, two adapters that really learned, runs in every state."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ff_lib.demo as demo_mod
from ff_lib.data import Workspace
from ff_lib.demo import (
    BROKEN_RUN,
    DEMO_BASE_DIRNAME,
    FAILED_RUN,
    RUNNING_RUN,
    DemoResult,
    build_demo,
    demo_base_path,
)
from ff_lib.inference import GenerationSettings, get_host, validate_adapter
from tests.fixtures_demo import demo_workspace  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=48, repetition_penalty=1.0)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(demo_workspace) -> DemoResult:  # noqa: F811
    """The session's demo as build_demo reports it (already built, so read back, not rebuilt)."""
    result = build_demo(demo_workspace, progress=lambda _: None)
    assert result.workspace == demo_workspace.resolve() and not result.built
    return result


def runs_by_name(workspace: Path) -> dict:
    return {run.name: run for run in Workspace.open(workspace).list_runs()}


def test_base_is_a_local_hugging_face_folder(built):
    base = demo_base_path(built.workspace)
    assert base == built.workspace / "models" / DEMO_BASE_DIRNAME
    assert built.base_model == base and base.is_absolute()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (base / name).is_file(), name
    assert "<|start_header_id|>" in (base / "chat_template.jinja").read_text()


def test_runs_in_every_state_linked_to_their_dataset(built):
    runs = runs_by_name(built.workspace)
    assert {n: r.status for n, r in runs.items()} == {
        "capitals-lora": "completed",
        "pirate-lora": "completed",
        RUNNING_RUN: "running",
        FAILED_RUN: "failed",
        BROKEN_RUN: "completed",
    }
    datasets = {d.id: d for d in Workspace.open(built.workspace).list_datasets()}
    assert sorted((d.name, d.rows) for d in datasets.values()) == [("capitals", 50), ("pirate", 48)]
    linked = {n: datasets[r.dataset_id].name for n, r in runs.items()}
    assert linked == {
        "capitals-lora": "capitals",
        "pirate-lora": "pirate",
        RUNNING_RUN: "pirate",
        FAILED_RUN: "capitals",
        BROKEN_RUN: "capitals",
    }
    for run in runs.values():
        assert run.base_model == str(demo_base_path(built.workspace))
        assert {"rank", "alpha", "lr", "steps"} <= run.params.keys()
    assert not runs[RUNNING_RUN].adapter_path.exists()
    assert "NaN" in runs[FAILED_RUN].metrics["error"]


def test_good_adapters_validate_and_resolve_from_the_run_folder(built):
    runs = runs_by_name(built.workspace)
    for name in ("capitals-lora", "pirate-lora"):
        adapter = runs[name].adapter_path
        assert validate_adapter(adapter, base_model=str(built.base_model)).ok
        check = validate_adapter(adapter.parent)  # the run folder: adapter/ one level down
        assert check.ok and Path(check.adapter_dir) == adapter
        log = json.loads((adapter.parent / "train_log.json").read_text())
        assert log["steps"] == runs[name].params["steps"] and log["seconds"] > 0
        assert json.loads((adapter.parent / "params.json").read_text())["rank"] > 0


def test_broken_adapter_is_refused_with_its_reason(built):
    adapter = runs_by_name(built.workspace)[BROKEN_RUN].adapter_path
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    check = validate_adapter(adapter)
    assert not check.ok
    assert "adapter_model.safetensors" in check.reason


def test_adapters_memorized_their_dataset_and_the_base_did_not(built):
    em = built.exact_match
    assert em["capitals-lora"].total == 50 and em["pirate-lora"].total == 48
    assert em["capitals-lora"].rate >= 0.9
    assert em["pirate-lora"].rate >= 0.9
    assert em["base/capitals"].rate <= 0.05
    assert em["base/pirate"].rate <= 0.05
    runs = runs_by_name(built.workspace)
    for name in ("capitals-lora", "pirate-lora"):
        metrics = runs[name].metrics
        assert metrics["exact_match"] == em[name].rate
        assert metrics["base_exact_match"] <= 0.05
        assert metrics["exact_match_total"] == em[name].total


def test_the_two_adapters_answer_differently(built):
    runs = runs_by_name(built.workspace)
    host = get_host()
    question = [{"role": "user", "content": "What is the capital of Japan?"}]
    base = str(built.base_model)
    capitals = host.generate(base, question, GREEDY, runs["capitals-lora"].adapter_path)
    pirate = host.generate(base, question, GREEDY, runs["pirate-lora"].adapter_path)
    bare = host.generate(base, question, GREEDY, None)
    assert capitals.text.strip() == "The capital of Japan is Tokyo."
    assert pirate.text.strip().startswith("Arr")
    assert bare.text.strip() != capitals.text.strip()
    assert not bare.text.strip().startswith("Arr")


def test_rerun_is_a_fast_no_op(built):
    before = runs_by_name(built.workspace)
    lines: list[str] = []
    started = time.perf_counter()
    again = build_demo(built.workspace, progress=lines.append)
    assert time.perf_counter() - started < 5
    assert not again.built
    assert lines == [f"demo workspace already built at {built.workspace} (use --force to rebuild)"]
    assert {r.name for r in again.runs} == set(before)
    assert runs_by_name(built.workspace) == before
    assert len(Workspace.open(built.workspace).list_datasets()) == 2
    assert again.exact_match == built.exact_match


def test_cli_json_on_a_built_workspace(built):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ff_lib", "--workspace", str(built.workspace), "demo", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"workspace", "base_model", "runs", "datasets", "exact_match", "seconds"} <= doc.keys()
    assert doc["workspace"] == str(built.workspace)
    assert doc["base_model"] == str(built.base_model)
    assert doc["built"] is False
    assert sorted(r["name"] for r in doc["runs"]) == sorted(runs_by_name(built.workspace))
    assert sorted(d["name"] for d in doc["datasets"]) == ["capitals", "pirate"]
    assert doc["exact_match"]["capitals-lora"]["rate"] >= 0.9
    assert "already built" in proc.stderr


def test_force_rebuilds_without_duplicates(tmp_path, monkeypatch):
    # A separate, deliberately under-trained workspace: this checks the bookkeeping, not learning.
    monkeypatch.setattr(demo_mod, "LORA_PARAMS", {**demo_mod.LORA_PARAMS, "steps": 2})
    monkeypatch.setattr(
        demo_mod, "EVAL_SETTINGS", GenerationSettings(temperature=0.0, max_new_tokens=2)
    )
    first = build_demo(tmp_path / "ws", progress=lambda _: None)
    config = first.base_model / "config.json"
    stamp = config.stat().st_mtime_ns
    lines: list[str] = []
    second = build_demo(tmp_path / "ws", force=True, progress=lines.append)
    assert second.built
    assert config.stat().st_mtime_ns != stamp
    assert any(line.startswith("trained capitals-lora") for line in lines)
    assert [(r.id, r.name, r.status) for r in second.runs] == [
        (r.id, r.name, r.status) for r in first.runs
    ]
    ws = Workspace.open(tmp_path / "ws")
    assert len(ws.list_runs()) == 5
    assert sorted(d.id for d in ws.list_datasets()) == sorted(d.id for d in first.datasets)
