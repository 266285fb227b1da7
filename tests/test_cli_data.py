"""`python -m ff_lib` data commands as a terminal user runs them: exit codes, stderr, JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def cli(tmp_path):
    workspace = tmp_path / "ws"

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "ff_lib", "--workspace", str(workspace), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)

    return run


def ok_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and text in result.stderr


def test_runs_add_list_and_set_status(cli, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    run = ok_json(
        cli(
            "runs",
            "add",
            "--name",
            "pirate",
            "--base-model",
            "tiny",
            "--adapter",
            adapter,
            "--json",
        )
    )
    assert {"id", "name", "status", "base_model", "adapter_path", "dataset_id"} <= set(run)
    assert (run["name"], run["status"], run["adapter_path"]) == (
        "pirate",
        "completed",
        str(adapter),
    )
    assert run["completed_at"] is not None

    pending = ok_json(
        cli(
            "runs",
            "add",
            "--name",
            "wip",
            "--base-model",
            "tiny",
            "--adapter",
            tmp_path / "later",
            "--status",
            "pending",
            "--json",
        )
    )
    listed = ok_json(cli("runs", "list", "--json"))
    assert [r["name"] for r in listed] == ["wip", "pirate"]
    keys = {
        "id",
        "name",
        "status",
        "base_model",
        "adapter_path",
        "dataset_id",
        "created_at",
        "completed_at",
    }
    assert all(keys <= set(r) for r in listed)

    moved = ok_json(cli("runs", "set-status", pending["id"], "running", "--json"))
    assert moved["status"] == "running" and moved["started_at"] is not None

    table = cli("runs", "list")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    assert rows[0].split()[:3] == [str(pending["id"]), "wip", "running"]


def test_runs_refusals_and_usage_errors(cli, tmp_path):
    refused(
        cli(
            "runs", "add", "--name", "x", "--base-model", "tiny", "--adapter", tmp_path / "missing"
        ),
        "does not exist",
    )
    refused(
        cli(
            "runs",
            "add",
            "--name",
            "x",
            "--base-model",
            "b",
            "--adapter",
            tmp_path,
            "--dataset",
            "9",
        ),
        "no dataset with id 9",
    )
    refused(cli("runs", "set-status", "5", "failed"), "no training run with id 5")
    bad = cli("runs", "set-status", "5", "done")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert cli("runs", "add", "--name", "x").returncode == 2
    assert cli("runs").returncode == 2
    assert ok_json(cli("runs", "list", "--json")) == []


def test_runs_scan(cli, tmp_path):
    adapter = tmp_path / "outputs" / "run1" / "checkpoint-100"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "tiny"}')
    result = ok_json(cli("runs", "scan", tmp_path / "outputs", "--json"))
    assert [r["name"] for r in result["added"]] == ["run1/checkpoint-100"]
    again = cli("runs", "scan", tmp_path / "outputs")
    assert again.returncode == 0
    assert "registered 0 adapter(s)" in again.stdout and "already registered" in again.stdout


def test_datasets_import_list_sample(cli, tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text(
        "".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n" for i in range(10))
    )
    imported = ok_json(cli("datasets", "import", f, "--name", "qa", "--json"))
    assert {"id", "name", "rows"} <= set(imported)
    assert (imported["name"], imported["rows"]) == ("qa", 10)

    listed = ok_json(cli("datasets", "list", "--json"))
    assert [(d["id"], d["name"], d["rows"]) for d in listed] == [(imported["id"], "qa", 10)]

    sample = ok_json(cli("datasets", "sample", imported["id"], "-k", "3", "--json"))
    assert len(sample) == 3 and len({s["prompt"] for s in sample}) == 3
    assert all(
        set(s) == {"prompt", "response"} and s["response"] == "a" + s["prompt"][1:] for s in sample
    )

    human = cli("datasets", "import", f, "--name", "again")
    assert human.returncode == 0 and "10 rows" in human.stdout
    assert cli("datasets", "sample", imported["id"]).stdout.splitlines()[0].split() == [
        "PROMPT",
        "RESPONSE",
    ]


def test_datasets_refusals(cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,1\n")
    refused(
        cli("datasets", "import", bad, "--name", "bad"), f"cannot import {bad}: found no prompt"
    )
    refused(cli("datasets", "import", tmp_path / "nope.jsonl", "--name", "n"), "does not exist")
    refused(cli("datasets", "sample", "3"), "no dataset with id 3")
    assert cli("datasets", "sample", "3", "-k", "0").returncode == 2
    assert cli("datasets", "import", bad).returncode == 2
    assert ok_json(cli("datasets", "list", "--json")) == []


def test_datasets_import_says_what_it_skipped_and_chose(cli, tmp_path):
    chat = tmp_path / "chat.jsonl"
    rows = [
        [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    ]
    chat.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    imported = ok_json(cli("datasets", "import", chat, "--name", "chat", "--json"))
    assert (imported["rows"], imported["skipped"]) == (1, 1)
    assert imported["skipped_reasons"] == {"the assistant turn has no text (a tool call)": 1}
    human = cli("datasets", "import", chat, "--name", "again")
    assert "skipped 1 row(s): the assistant turn has no text (a tool call)" in human.stdout

    excel = tmp_path / "excel.csv"
    excel.write_bytes("instruction,input,output\nCafé?,au lait,Oui\n".encode("cp1252"))
    refused(cli("datasets", "import", excel, "--name", "x"), "not UTF-8 — line 2")
    decoded = ok_json(
        cli("datasets", "import", excel, "--name", "x", "--encoding", "cp1252", "--json")
    )
    assert any("cp1252" in n for n in decoded["notes"])
    assert any("'instruction' + 'input'" in n for n in decoded["notes"])
    sample = ok_json(cli("datasets", "sample", decoded["id"], "-k", "1", "--json"))
    assert sample == [{"prompt": "Café?\n\nau lait", "response": "Oui"}]


def test_import_finefoundry(cli, tmp_path):
    from tests.fixtures_finefoundry import add_run, add_session, create_db

    db = tmp_path / "finefoundry.db"
    con = create_db(db, "current")
    session = add_session(con, "reddit", "r/AskScience", [("Why blue?", "Scattering")])
    add_run(con, "ff-run", "tiny", "Database", str(session), "/runs/ff")
    add_run(con, "hf-run", "tiny", "Hugging Face", "tatsu-lab/alpaca", "/runs/hf")
    con.close()
    result = ok_json(cli("import-finefoundry", db, "--json"))
    assert [r["name"] for r in result["runs"]] == ["ff-run", "hf-run"]
    assert [d["name"] for d in result["datasets"]] == ["reddit r/AskScience"]
    assert result["runs"][0]["dataset_id"] == result["datasets"][0]["id"]
    assert any("tatsu-lab/alpaca" in n for n in result["notes"])
    again = cli("import-finefoundry", db)
    assert again.returncode == 0, again.stderr
    assert "imported 0 run(s) and 0 dataset(s)" in again.stdout
    assert "skipped run 'ff-run': already imported" in again.stdout
    refused(cli("import-finefoundry", tmp_path / "none.db"), "does not exist")
