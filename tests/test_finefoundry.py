"""FineFoundry databases as FineFoundry writes them (its own DDL, see fixtures_finefoundry)."""

import datetime as dt
import json
import sqlite3
import time

import pytest

from ff_lib.data import Workspace
from ff_lib.errors import FineFoundryImportError
from tests.fixtures_finefoundry import add_run, add_session, create_db, update_run

UTC = dt.UTC


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(tmp_path / "ws")


@pytest.fixture
def new_york(monkeypatch):
    """FineFoundry's started/completed times are local wall-clock times: pin the zone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def pairs(ws, dataset):
    return [(p.prompt, p.response) for p in ws.dataset_pairs(dataset.id)]


def full_database(path, tmp_path, schema="current"):
    """Two sessions and runs in each status FineFoundry's training code writes."""
    con = create_db(path, schema)
    science = add_session(
        con,
        "reddit",
        "r/AskScience",
        [("Why is the sky blue? 🌤", "Rayleigh scattering"), ("Qu'est-ce?", "Une pomme — 苹果")],
        name="Science Q&A ✨" if schema != "old" else None,
    )
    distro = add_session(con, "4chan", "boards=g", [("Best distro?", "Debian")])
    if schema == "old":
        con.close()
        return science, distro, {}
    out = tmp_path / "training_outputs" / "sci_20240503_090000" / "outputs" / "runpod_run"
    (out / "adapter").mkdir(parents=True)
    runs = {}
    runs["sci"] = add_run(
        con, "sci-lora", "unsloth/Llama-3.2-1B", "Database", str(science), str(out.parent.parent)
    )
    update_run(con, runs["sci"], status="running", started_at="2024-05-03T09:00:00.123456")
    update_run(
        con,
        runs["sci"],
        status="completed",
        output_dir=str(out),
        adapter_path=str(out / "adapter"),
        completed_at="2024-05-03T10:30:00.500000",
        logs_json=json.dumps(["step 1/10 loss 2.1", "Training finished"]),
    )
    hp = json.dumps({"epochs": "1", "lr": "2e-4", "lora_r": "16"})  # build_hp_from_controls
    runs["hf"] = add_run(
        con, "hf-run", "unsloth/Llama-3.2-1B", "Hugging Face", "tatsu-lab/alpaca", "/x", hp
    )
    update_run(
        con,
        runs["hf"],
        status="failed",
        started_at="2024-05-04T08:00:00",
        completed_at="2024-05-04T08:05:00",
        metadata_json=json.dumps({"exit_code": 137, "error": "OOM or killed"}),
    )
    runs["queued"] = add_run(con, "queued", None, "Database", str(distro), "/y")
    runs["live"] = add_run(con, "live", "unsloth/Llama-3.2-1B", "Database", str(distro), "/z")
    update_run(con, runs["live"], status="running", started_at="2024-05-05T12:00:00")
    con.close()
    return science, distro, runs


def test_a_current_database_imports_runs_in_every_status(ws, tmp_path, new_york):
    db = tmp_path / "finefoundry.db"
    full_database(db, tmp_path)
    result = ws.import_finefoundry(db)

    datasets = {d.name: d for d in result.datasets}
    assert set(datasets) == {"Science Q&A ✨", "4chan boards=g"}
    science = datasets["Science Q&A ✨"]
    assert pairs(ws, science) == [
        ("Why is the sky blue? 🌤", "Rayleigh scattering"),
        ("Qu'est-ce?", "Une pomme — 苹果"),
    ]
    assert pairs(ws, datasets["4chan boards=g"]) == [("Best distro?", "Debian")]

    runs = {r.name: r for r in result.runs}
    assert {n: r.status for n, r in runs.items()} == {
        "sci-lora": "completed",
        "hf-run": "failed",
        "queued": "pending",
        "live": "running",
    }
    sci = runs["sci-lora"]
    assert sci.adapter_path.name == "adapter" and sci.adapter_path.is_dir()
    assert sci.base_model == "unsloth/Llama-3.2-1B" and sci.dataset_id == science.id
    # 09:00 on FineFoundry's clock in New York (EDT, UTC-4) is 13:00 UTC.
    assert sci.started_at == dt.datetime(2024, 5, 3, 13, 0, 0, 123456, tzinfo=UTC)
    assert sci.completed_at == dt.datetime(2024, 5, 3, 14, 30, 0, 500000, tzinfo=UTC)
    assert abs(sci.created_at - dt.datetime.now(UTC)) < dt.timedelta(minutes=5)
    assert sci.params["finefoundry"]["logs"] == ["step 1/10 loss 2.1", "Training finished"]
    assert sci.params["finefoundry"]["status"] == "completed"

    hf = runs["hf-run"]
    assert hf.dataset_id is None and hf.params["hf_dataset_id"] == "tatsu-lab/alpaca"
    assert (hf.params["lr"], hf.params["lora_r"]) == ("2e-4", "16")
    assert hf.params["finefoundry"]["metadata"] == {"exit_code": 137, "error": "OOM or killed"}
    assert any("hf-run" in n and "tatsu-lab/alpaca" in n for n in result.notes)
    queued = runs["queued"]
    assert queued.base_model is None and queued.adapter_path is None
    assert queued.started_at is None and queued.completed_at is None
    assert queued.dataset_id == datasets["4chan boards=g"].id
    assert any("local clock" in n and "EST/EDT" in n for n in result.notes)


def test_a_reimport_adds_nothing(ws, tmp_path):
    db = tmp_path / "finefoundry.db"
    full_database(db, tmp_path)
    first = ws.import_finefoundry(db)
    again = ws.import_finefoundry(db)
    assert again.runs == [] and again.datasets == []
    assert len(again.skipped) == len(first.runs) + len(first.datasets)
    assert all("already imported" in s for s in again.skipped)
    assert len(ws.list_runs()) == 4 and len(ws.list_datasets()) == 2


def test_a_reimport_says_when_finefoundry_has_moved_a_run_on(ws, tmp_path):
    db = tmp_path / "finefoundry.db"
    con = create_db(db, "current")
    run = add_run(con, "slow", "base", "Hugging Face", "org/data", "/s")
    update_run(con, run, status="running", started_at="2024-05-05T12:00:00")
    first = ws.import_finefoundry(db)
    update_run(con, run, status="completed", adapter_path="/s/outputs/adapter")
    con.close()
    again = ws.import_finefoundry(db)
    assert again.runs == []
    (note,) = again.skipped
    imported = first.runs[0].id
    assert "FineFoundry now says completed, the workspace says running" in note
    assert f"runs set-status {imported} completed" in note


def test_benchmarks_empty_pairs_and_twin_sessions(ws, tmp_path):
    db = tmp_path / "finefoundry.db"
    con = create_db(db, "current")
    a = add_session(con, "reddit", "r/x", [("  ", "blank prompt"), ("Q", "A")])
    add_session(con, "reddit", "r/x", [("Q2", "A2")])
    run = add_run(con, "scored", "base", "Database", str(a), "/s")
    con.execute(
        "INSERT INTO evaluation_runs (training_run_id, base_model, adapter_path, benchmark, "
        "num_samples, batch_size, metrics_json, is_base_eval) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
        (run, "base", "/s/adapter", "hellaswag", 100, 8, json.dumps({"acc": 0.41})),
    )
    con.commit()
    con.close()
    result = ws.import_finefoundry(db)
    names = sorted(d.name for d in result.datasets)
    assert names == ["reddit r/x (session 1)", "reddit r/x (session 2)"]
    first = next(d for d in result.datasets if d.name.endswith("(session 1)"))
    assert (first.rows, first.skipped) == (1, 1)
    (evaluation,) = result.runs[0].metrics["finefoundry_evaluations"]
    assert evaluation["benchmark"] == "hellaswag" and evaluation["metrics"] == {"acc": 0.41}


def test_an_unknown_status_is_named_and_not_guessed(ws, tmp_path):
    db = tmp_path / "finefoundry.db"
    con = create_db(db, "current")
    run = add_run(con, "odd", "base", "Database", "", "/s")
    update_run(con, run, status="paused")
    con.close()
    result = ws.import_finefoundry(db)
    assert result.runs == []
    assert any("'odd'" in s and "'paused'" in s for s in result.skipped)


def test_the_older_schema_without_training_runs(ws, tmp_path):
    db = tmp_path / "finefoundry.db"
    full_database(db, tmp_path, schema="old")
    result = ws.import_finefoundry(db)
    assert result.runs == []
    assert sorted(d.name for d in result.datasets) == ["4chan boards=g", "reddit r/AskScience"]
    assert sum(d.rows for d in result.datasets) == 3


def test_an_upgraded_database_uses_the_added_name_column(ws, tmp_path):
    db = tmp_path / "finefoundry.db"
    full_database(db, tmp_path, schema="upgraded")
    result = ws.import_finefoundry(db)
    assert "Science Q&A ✨" in {d.name for d in result.datasets}
    assert len(result.runs) == 4


def test_imported_names_never_collide_with_existing_runs(ws, tmp_path):
    adapter = tmp_path / "mine"
    adapter.mkdir()
    mine = ws.add_run("sci-lora", "base", adapter)
    db = tmp_path / "finefoundry.db"
    con = create_db(db, "current")
    add_run(con, "sci-lora", "base", "Database", "", "/a")
    add_run(con, "sci-lora", "base", "Database", "", "/b")
    con.close()
    result = ws.import_finefoundry(db)
    assert [r.name for r in result.runs] == ["sci-lora (2)", "sci-lora (3)"]
    assert any("'sci-lora (2)'" in n and f"run {mine.id}" in n for n in result.notes)
    assert sorted(r.name for r in ws.list_runs()) == ["sci-lora", "sci-lora (2)", "sci-lora (3)"]


def test_a_database_without_finefoundry_tables_is_refused(ws, tmp_path):
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER)")
    con.close()
    with pytest.raises(FineFoundryImportError, match="not a FineFoundry database.*tables: users"):
        ws.import_finefoundry(db)
    (tmp_path / "junk.db").write_text("not sqlite at all, just text" * 10)
    with pytest.raises(FineFoundryImportError, match="junk.db"):
        ws.import_finefoundry(tmp_path / "junk.db")
    with pytest.raises(FineFoundryImportError, match="does not exist"):
        ws.import_finefoundry(tmp_path / "nope.db")
    assert ws.list_runs() == [] and ws.list_datasets() == []


def test_a_table_missing_a_column_fineFoundry_writes_is_refused_by_name(ws, tmp_path):
    db = tmp_path / "odd.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE scraped_pairs (id INTEGER, session_id INTEGER, input TEXT)")
    con.close()
    with pytest.raises(FineFoundryImportError, match="scraped_pairs has no input_text"):
        ws.import_finefoundry(db)
