"""`runs add/rename/set-base/remove/scan` as a terminal user runs them: unique names, facts
that can be corrected, and a scan that says which base is missing and how to fix it."""

import json
import subprocess
import sys

import pytest

from ff_lib.data import Workspace
from ff_lib.runs import READY_MESSAGE, check_run
from tests.test_adapters import base_config, write_adapter
from tests.test_cli_data import ENV, ROOT, ok_json, refused
from tests.test_run_names import workspace_before_unique_names


@pytest.fixture
def cli(tmp_path):
    workspace = tmp_path / "ws"

    def run(*args) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "ff_lib", "--workspace", str(workspace), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)

    return run


def real_base(folder):
    """A base folder as validation sees it: config.json and a weights file."""
    base = base_config(folder)
    (base / "model.safetensors").write_bytes(b"weights")
    return base


def test_runs_add_refuses_a_taken_name_and_suggests_one(cli, tmp_path):
    adapter = write_adapter(tmp_path / "a", "tiny")
    first = ok_json(
        cli("runs", "add", "--name", "lora", "--base-model", "b", "--adapter", adapter, "--json")
    )
    result = cli("runs", "add", "--name", "lora", "--base-model", "b", "--adapter", adapter)
    refused(result, f"a run named 'lora' already exists (run {first['id']})")
    assert "e.g. 'lora (2)'" in result.stderr
    assert len(ok_json(cli("runs", "list", "--json"))) == 1


def test_rename_set_base_and_remove(cli, tmp_path):
    base = real_base(tmp_path / "base")
    adapter = write_adapter(tmp_path / "a", "/old/base")
    run = ok_json(
        cli(
            "runs",
            "add",
            "--name",
            "r",
            "--base-model",
            "/old/base",
            "--adapter",
            adapter,
            "--json",
        )
    )
    other = ok_json(
        cli("runs", "add", "--name", "other", "--base-model", "b", "--adapter", adapter, "--json")
    )
    assert ok_json(cli("runs", "rename", run["id"], "renamed", "--json"))["name"] == "renamed"
    refused(cli("runs", "rename", run["id"], "other"), "a run named 'other' already exists")

    fixed = cli("runs", "set-base", run["id"], base)
    assert fixed.returncode == 0, fixed.stderr
    assert f"now answers on base {base}" in fixed.stdout
    assert READY_MESSAGE in fixed.stdout

    result = cli("runs", "remove", other["id"])
    refused(result, "add --yes to confirm")
    assert len(ok_json(cli("runs", "list", "--json"))) == 2
    removed = cli("runs", "remove", other["id"], "--yes")
    assert removed.returncode == 0 and f"removed run {other['id']} (other)" in removed.stdout
    assert [r["name"] for r in ok_json(cli("runs", "list", "--json"))] == ["renamed"]
    refused(cli("runs", "remove", 99, "--yes"), "no training run with id 99")


def test_scan_registers_runs_whose_base_is_missing_and_names_the_fix(cli, tmp_path):
    # A trainer's output folder, made on a machine where the base lived somewhere else.
    out = tmp_path / "trl-run"
    for step in (100, 200):
        write_adapter(out / f"checkpoint-{step}", "/home/someone/models/tiny-base")
    workspace = tmp_path / "ws"
    result = cli("runs", "scan", out)
    assert result.returncode == 0, result.stderr
    assert "registered 2 adapter(s)" in result.stdout
    assert "base model /home/someone/models/tiny-base is not available here: run(s) 1, 2" in (
        result.stdout
    )
    assert f"python -m ff_lib --workspace {workspace} runs set-base 1 BASE" in result.stdout
    assert f"runs scan {out} --base-model BASE" in result.stdout
    listed = ok_json(cli("runs", "list", "--json"))
    assert [r["ready"] for r in listed] == [False, False]
    assert "runs set-base" in listed[0]["reason"]
    assert "cannot answer" in cli("runs", "list").stdout

    # The user points a run at the base's new home: ready, and no "trained for" warning,
    # although the adapter still names the old path (same config: the same base).
    base = real_base(tmp_path / "moved" / "tiny-base-copy")
    assert cli("runs", "set-base", 2, base).returncode == 0
    run = Workspace.open(workspace).get_run(2)
    check = check_run(run)
    assert check.ok and check.warnings == ()
    assert [r["ready"] for r in ok_json(cli("runs", "list", "--json"))] == [True, False]


def test_scan_with_a_base_model_and_unique_names(cli, tmp_path):
    base = real_base(tmp_path / "base")
    write_adapter(tmp_path / "one" / "trl-run", "/gone/base")
    write_adapter(tmp_path / "two" / "trl-run", "/gone/base")
    first = ok_json(cli("runs", "scan", tmp_path / "one" / "trl-run", "--json"))
    assert first["missing_bases"][0]["base_model"] == "/gone/base"
    second = ok_json(
        cli("runs", "scan", tmp_path / "two" / "trl-run", "--base-model", base, "--json")
    )
    assert [r["name"] for r in second["added"]] == ["trl-run (2)"]
    assert second["renamed"] == [
        f"{tmp_path / 'two' / 'trl-run'}: the name 'trl-run' is taken in this workspace, "
        "registered as 'trl-run (2)'"
    ]
    assert second["added"][0]["base_model"] == str(base)
    assert second["missing_bases"] == []
    text = cli("runs", "list", "--json")
    assert json.loads(text.stdout)[0]["ready"] is True


def test_runs_list_says_which_runs_the_migration_renamed(cli, tmp_path):
    adapter = write_adapter(tmp_path / "a", "tiny")
    workspace_before_unique_names(tmp_path / "ws", ["twin", "twin"], adapter)
    listed = cli("runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert "note: run 2 was renamed from 'twin'" in listed.stdout
    assert [r["name"] for r in ok_json(cli("runs", "list", "--json"))] == ["twin (2)", "twin"]
