"""Run names are unique in a workspace, and a run's facts can be corrected (data layer)."""

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from ff_lib.data import Workspace, store
from ff_lib.data.migrations import MIGRATIONS, applied_migrations
from ff_lib.errors import InvalidInput, NotFound


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(tmp_path / "ws")


def adapter_folder(path: Path, base: str | None = "tiny") -> Path:
    path.mkdir(parents=True)
    config = "{}" if base is None else f'{{"base_model_name_or_path": "{base}"}}'
    (path / "adapter_config.json").write_text(config)
    return path


def workspace_before_unique_names(folder: Path, names: list[str], adapter: Path) -> None:
    """A workspace as FF Playground left it before m003: the same name may appear twice."""
    folder.mkdir()
    con = duckdb.connect(str(folder / "ff.duckdb"))
    applied_migrations(con)
    for migration in MIGRATIONS[:2]:
        migration(con)
        con.execute(
            "INSERT INTO schema_migrations VALUES (?, now()::TIMESTAMP)", [migration.__name__]
        )
    start = dt.datetime(2026, 1, 1)
    for i, name in enumerate(names):
        store.insert_run(
            con,
            name=name,
            status="completed",
            base_model="tiny",
            dataset_id=None,
            adapter_path=str(adapter),
            params={},
            metrics={},
            created_at=start + dt.timedelta(hours=i),
            started_at=None,
            completed_at=None,
        )
    con.close()


def test_the_migration_renames_duplicates_oldest_keeps_its_name(tmp_path):
    adapter = adapter_folder(tmp_path / "a")
    folder = tmp_path / "old"
    workspace_before_unique_names(folder, ["twin", "solo", "twin", "twin (2)", "twin"], adapter)
    ws = Workspace.open(folder)
    runs = sorted(ws.list_runs(), key=lambda r: r.id)
    assert [r.name for r in runs] == ["twin", "solo", "twin (3)", "twin (2)", "twin (4)"]
    assert runs[2].params == {"renamed_from": "twin"}
    assert runs[4].params == {"renamed_from": "twin"}
    assert runs[0].params == {} and runs[3].params == {}


def test_the_database_itself_refuses_a_second_run_of_the_same_name(ws, tmp_path):
    adapter = adapter_folder(tmp_path / "a")
    ws.add_run("one", "tiny", adapter)
    con = duckdb.connect(str(ws.db_path))
    with pytest.raises(duckdb.ConstraintException):
        con.execute(
            "INSERT INTO training_runs (name, status, created_at) VALUES ('one', 'pending', now())"
        )
    con.close()


def test_add_run_refuses_a_taken_name_and_suggests_a_free_one(ws, tmp_path):
    adapter = adapter_folder(tmp_path / "a")
    first = ws.add_run("trl-run", "tiny", adapter)
    ws.add_run("trl-run (2)", "tiny", adapter)
    with pytest.raises(InvalidInput) as refused:
        ws.add_run("trl-run", "tiny", adapter)
    message = str(refused.value)
    assert f"a run named 'trl-run' already exists (run {first.id})" in message
    assert "e.g. 'trl-run (3)'" in message
    assert f"`runs rename {first.id} NEW_NAME`" in message
    assert len(ws.list_runs()) == 2


def test_rename_a_run(ws, tmp_path):
    adapter = adapter_folder(tmp_path / "a")
    a = ws.add_run("a", "tiny", adapter)
    b = ws.add_run("b", "tiny", adapter)
    assert ws.rename_run(a.id, "  better  ").name == "better"
    assert ws.rename_run(a.id, "better").name == "better"  # its own name: no conflict
    with pytest.raises(InvalidInput, match="a run named 'b' already exists"):
        ws.rename_run(a.id, "b")
    with pytest.raises(NotFound):
        ws.rename_run(99, "x")
    assert ws.get_run(b.id).name == "b"


def test_set_base_stores_a_local_folder_by_its_absolute_path(ws, tmp_path, monkeypatch):
    adapter = adapter_folder(tmp_path / "a")
    run = ws.add_run("r", "/old/place/base", adapter)
    (tmp_path / "models" / "base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    moved = ws.set_run_base(run.id, "models/base")
    assert moved.base_model == str(tmp_path / "models" / "base")
    assert ws.set_run_base(run.id, "org/model-id").base_model == "org/model-id"
    with pytest.raises(InvalidInput, match="base model must not be empty"):
        ws.set_run_base(run.id, " ")


def test_remove_a_run_keeps_its_conversations(ws, tmp_path):
    adapter = adapter_folder(tmp_path / "a")
    run = ws.add_run("gone", "tiny", adapter)
    conv = ws.create_conversation("chat", run_id=run.id)
    ws.add_message(conv.id, "user", "hi", meta={"run": {"id": run.id, "name": run.name}})
    ws.add_message(conv.id, "assistant", "hello", meta={"run": {"id": run.id, "name": run.name}})
    removed, unlinked = ws.remove_run(run.id)
    assert removed.name == "gone" and unlinked == 1
    assert ws.list_runs() == []
    assert adapter.is_dir()  # the files are the user's: only the registration goes
    kept = ws.messages(conv.id)
    assert [m.content for m in kept] == ["hi", "hello"]
    assert kept[1].meta["run"] == {"id": run.id, "name": "gone"}
    assert ws.get_conversation(conv.id).run_id is None
    with pytest.raises(NotFound):
        ws.remove_run(run.id)


def test_scan_derives_unique_names_and_says_so(ws, tmp_path):
    adapter_folder(tmp_path / "one" / "trl-run")
    adapter_folder(tmp_path / "two" / "trl-run")
    first = ws.scan_adapters(tmp_path / "one" / "trl-run")
    assert [r.name for r in first.added] == ["trl-run"] and first.renamed == []
    second = ws.scan_adapters(tmp_path / "two" / "trl-run")
    assert [r.name for r in second.added] == ["trl-run (2)"]
    assert second.renamed == [
        f"{tmp_path / 'two' / 'trl-run'}: the name 'trl-run' is taken in this workspace, "
        "registered as 'trl-run (2)'"
    ]


def test_scan_with_a_base_model_overrides_the_declared_one(ws, tmp_path):
    adapter_folder(tmp_path / "out" / "checkpoint-1", base="/old/base")
    adapter_folder(tmp_path / "out" / "checkpoint-2", base=None)  # names no base at all
    base = tmp_path / "base"
    base.mkdir()
    result = ws.scan_adapters(tmp_path / "out", base_model=str(base))
    assert [(r.name, r.base_model) for r in result.added] == [
        ("checkpoint-1", str(base)),
        ("checkpoint-2", str(base)),
    ]
    assert result.skipped == []


def test_a_finefoundry_run_whose_name_is_taken_is_renamed_and_reported(ws, tmp_path):
    import sqlite3

    ws.add_run("ff-run", "tiny", adapter_folder(tmp_path / "a"))
    db = tmp_path / "finefoundry.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE training_runs (id INTEGER, name TEXT, status TEXT, base_model TEXT)")
    con.execute("INSERT INTO training_runs VALUES (1, 'ff-run', 'completed', 'tiny')")
    con.commit()
    con.close()
    result = ws.import_finefoundry(db)
    assert [r.name for r in result.runs] == ["ff-run (2)"]
    assert len(result.renamed) == 1
    assert "'ff-run (2)'" in result.renamed[0] and "taken by run 1" in result.renamed[0]
