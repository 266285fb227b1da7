"""The workspace schema and every store function, as a caller sees them."""

import datetime as dt
import json

import duckdb
import pytest

from ff_lib.data import RUN_STATUSES, Workspace
from ff_lib.data.migrations import (
    MIGRATIONS,
    applied_migrations,
    m005_scorecard_rows,
    m008_conversation_source,
    migrate,
    schema_version,
)
from ff_lib.errors import InvalidInput, NotFound, WorkspaceError


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(tmp_path / "ws")


@pytest.fixture
def adapter(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"base_model_name_or_path": "tiny"}')
    return folder


def test_migrations_on_a_blank_database_record_each_name():
    con = duckdb.connect(":memory:")
    assert migrate(con) == [
        "m001_initial",
        "m002_scorecards",
        "m003_rename_duplicate_run_names",
        "m004_unique_run_names",
        "m005_scorecard_rows",
        "m006_votes",
        "m007_sweeps",
        "m008_conversation_source",
    ]
    assert schema_version(con) == len(MIGRATIONS)
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert {"training_runs", "datasets", "dataset_rows", "conversations", "messages"} <= tables
    assert {"scorecards", "schema_migrations"} <= tables
    assert migrate(con) == []


def test_m005_keeps_old_scorecards_complete_and_adds_their_answers_table():
    """A scorecard written before m005 reads back 'complete' with its rows JSON unchanged."""
    con = duckdb.connect(":memory:")
    applied_migrations(con)
    for migration in MIGRATIONS[:4]:
        migration(con)
    con.execute(
        "INSERT INTO scorecards (run_id, dataset_id, created_at, summary, rows) "
        'VALUES (1, 1, now()::TIMESTAMP, \'{"n": 1}\', \'[{"prompt": "p"}]\')'
    )
    m005_scorecard_rows(con)
    assert con.execute("SELECT status, rows FROM scorecards").fetchall() == [
        ("complete", '[{"prompt": "p"}]')
    ]
    columns = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'scorecard_rows'"
        ).fetchall()
    }
    assert columns == {"scorecard_id", "ordinal", "model", "prompt", "expected", "answer", "scores"}


def test_m008_marks_existing_conversations_as_the_apps_and_runs_twice_harmlessly():
    con = duckdb.connect(":memory:")
    applied_migrations(con)
    for migration in MIGRATIONS[:7]:
        migration(con)
    con.execute(
        "INSERT INTO conversations (id, title, run_id, created_at, updated_at) "
        "VALUES ('old', 't', NULL, now()::TIMESTAMP, now()::TIMESTAMP)"
    )
    m008_conversation_source(con)
    m008_conversation_source(con)
    assert con.execute("SELECT id, source FROM conversations").fetchall() == [("old", "app")]


def test_an_api_conversation_is_written_with_its_messages_and_open_reply_at_once(ws):
    reply = ws.start_conversation(
        "q",
        None,
        "api",
        messages=(("system", "s", {}), ("user", "q", {"run": {"id": 1}})),
        reply_meta={"api": {"model": "m"}},
    )
    conversation = ws.get_conversation(reply.conversation_id)
    assert conversation.source == "api" and conversation.message_count == 3
    assert [(m.role, m.content, m.status, m.meta) for m in ws.messages(conversation.id)] == [
        ("system", "s", "complete", {}),
        ("user", "q", "complete", {"run": {"id": 1}}),
        ("assistant", "", "streaming", {"api": {"model": "m"}}),
    ]
    assert ws.create_conversation("app's").source == "app"
    with pytest.raises(InvalidInput):
        ws.create_conversation("x", source="elsewhere")
    with pytest.raises(InvalidInput):
        ws.start_conversation("x", None, "api", (("robot", "hi", {}),), {})
    with pytest.raises(NotFound):
        ws.start_conversation("x", 999, "api", (("user", "hi", {}),), {})


def test_scorecard_rows_stored_in_batches_and_never_doubled(ws, adapter):
    run = ws.add_run("r", "tiny", adapter)
    ds = ws.add_dataset("d", [("p", "r")], source="test")
    card = ws.start_scorecard(run.id, ds.id, {"n": 1, "models": {"base": {}}})
    assert card.status == "running" and card.rows == []
    answer = {"ordinal": 0, "model": "base", "prompt": "p", "expected": "r", "answer": "a",
              "scores": {"exact_match": 0.0}}  # fmt: skip
    assert ws.add_scorecard_rows(card.id, [answer, {**answer, "model": "run"}]) == 2
    ws.add_scorecard_rows(card.id, [{**answer, "answer": "again"}])  # a resumed duplicate
    assert [(a["model"], a["answer"]) for a in ws.scorecard_rows(card.id)] == [
        ("base", "a"),
        ("run", "a"),
    ]
    done = ws.finish_scorecard(card.id, "interrupted", rows=[{"prompt": "p"}])
    assert done.status == "interrupted" and done.rows == [{"prompt": "p"}]
    assert ws.get_scorecard(card.id) == done == ws.list_scorecards(run.id)[0]
    with pytest.raises(NotFound):
        ws.get_scorecard(999)


def test_reopening_a_workspace_is_a_no_op(tmp_path):
    ws = Workspace.open(tmp_path / "w")
    ws.add_dataset("d", [("p", "r")], source="test")
    again = Workspace.open(tmp_path / "w")
    assert again.schema_version() == len(MIGRATIONS)
    assert [d.name for d in again.list_datasets()] == ["d"]
    assert again.db_path == tmp_path / "w" / "ff.duckdb"


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    ws = Workspace.open(tmp_path / "w")
    con = duckdb.connect(str(ws.db_path))
    con.execute("INSERT INTO schema_migrations VALUES ('m999_future', now()::TIMESTAMP)")
    con.close()
    with pytest.raises(WorkspaceError, match="newer FF Playground.*m999_future"):
        Workspace.open(tmp_path / "w")


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "ff.duckdb").write_text("not a database")
    with pytest.raises(WorkspaceError, match="cannot open the workspace database"):
        Workspace.open(tmp_path / "w")


def test_add_and_list_runs_newest_first(ws, adapter):
    first = ws.add_run("first", "tiny", adapter, params={"lr": 0.01}, metrics={"loss": 2.0})
    second = ws.add_run("second", "tiny", adapter.parent / "later", status="pending")
    assert [r.name for r in ws.list_runs()] == ["second", "first"]
    assert [r.name for r in ws.list_runs(limit=1)] == ["second"]
    assert first.status == "completed" and first.completed_at is not None
    assert first.completed_at.tzinfo == dt.UTC
    assert first.adapter_path == adapter.resolve()
    assert first.params == {"lr": 0.01} and first.metrics == {"loss": 2.0}
    assert second.completed_at is None and second.started_at is None
    assert ws.get_run(first.id) == first


def test_a_completed_run_needs_its_adapter_on_disk(ws, tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        ws.add_run("x", "tiny", tmp_path / "missing")
    assert ws.list_runs() == []


def test_run_input_is_checked(ws, adapter):
    with pytest.raises(InvalidInput, match="unknown run status 'done'"):
        ws.add_run("x", "tiny", adapter, status="done")
    with pytest.raises(InvalidInput, match="run name must not be empty"):
        ws.add_run("  ", "tiny", adapter)
    with pytest.raises(NotFound, match="no dataset with id 42"):
        ws.add_run("x", "tiny", adapter, dataset_id=42)
    with pytest.raises(NotFound, match="no training run with id 7"):
        ws.get_run(7)
    assert ws.list_runs() == []


def test_status_changes_stamp_the_times(ws, tmp_path):
    adapter = tmp_path / "out"
    run = ws.add_run("t", "tiny", adapter, status="pending")
    running = ws.set_run_status(run.id, "running")
    assert running.started_at is not None and running.completed_at is None
    with pytest.raises(InvalidInput, match="completed run needs its adapter"):
        ws.set_run_status(run.id, "completed")
    adapter.mkdir()
    done = ws.set_run_status(run.id, "completed")
    assert done.status == "completed" and done.completed_at >= running.started_at
    assert done.started_at == running.started_at
    with pytest.raises(InvalidInput, match="use one of"):
        ws.set_run_status(run.id, "bogus")
    assert set(RUN_STATUSES) == {"pending", "running", "completed", "failed", "cancelled"}


def test_metrics_are_merged(ws, adapter):
    run = ws.add_run("m", "tiny", adapter, metrics={"loss": 1.5})
    updated = ws.update_run_metrics(run.id, {"exact_match": 0.9})
    assert updated.metrics == {"loss": 1.5, "exact_match": 0.9}
    with pytest.raises(NotFound):
        ws.update_run_metrics(99, {})


def test_add_dataset_skips_empty_prompts_and_keeps_order(ws):
    ds = ws.add_dataset("qa", [("a", "1"), ("", "x"), ("  ", "y"), ("b", "2")], source="test")
    assert (ds.rows, ds.skipped) == (2, 2)
    assert [(p.prompt, p.response) for p in ws.dataset_pairs(ds.id)] == [("a", "1"), ("b", "2")]
    assert len(ws.dataset_pairs(ds.id, limit=1)) == 1
    assert ws.get_dataset(ds.id) == ds
    assert ws.list_datasets() == [ds]


def test_sample_prompts_is_distinct_random_and_bounded(ws):
    ds = ws.add_dataset("n", [(f"p{i}", f"r{i}") for i in range(200)], source="test")
    seen = set()
    for _ in range(5):
        sample = ws.sample_prompts(ds.id, k=5)
        prompts = [p.prompt for p in sample]
        assert len(prompts) == 5 == len(set(prompts))
        assert all(p.response == "r" + p.prompt[1:] for p in sample)
        seen.add(tuple(sorted(prompts)))
    assert len(seen) > 1  # five draws of 5 of 200 rows are not all the same
    small = ws.add_dataset("s", [("only", "one")], source="test")
    assert [p.prompt for p in ws.sample_prompts(small.id, k=5)] == ["only"]
    assert {p.prompt for p in ws.sample_prompts(ds.id, k=500)} == {f"p{i}" for i in range(200)}


def test_sample_prompts_stays_within_its_dataset(ws):
    a = ws.add_dataset("a", [(f"a{i}", "") for i in range(50)], source="test")
    ws.add_dataset("b", [(f"b{i}", "") for i in range(50)], source="test")
    for _ in range(5):
        assert all(p.prompt.startswith("a") for p in ws.sample_prompts(a.id, k=10))


def test_sample_prompts_refuses_bad_input(ws):
    ds = ws.add_dataset("a", [("p", "r")], source="test")
    with pytest.raises(NotFound, match="no dataset with id 404"):
        ws.sample_prompts(404)
    with pytest.raises(InvalidInput, match="at least 1"):
        ws.sample_prompts(ds.id, k=0)


def test_conversations_and_messages(ws, adapter):
    run = ws.add_run("r", "tiny", adapter)
    older = ws.create_conversation("older")
    conv = ws.create_conversation(run_id=run.id)
    assert len(conv.id) == 36 and conv.title is None and conv.run_id == run.id
    user = ws.add_message(conv.id, "user", "Hello?")
    reply = ws.add_message(conv.id, "assistant", "", status="streaming")
    meta = {"settings": {"temperature": 0.7}, "stats": {"new_tokens": 3}}
    done = ws.update_message(reply.id, "Hi there", "complete", meta)
    assert (done.content, done.status, done.meta) == ("Hi there", "complete", meta)
    kept = ws.update_message(reply.id, "Hi there!", "complete")
    assert kept.meta == meta
    assert [m.id for m in ws.messages(conv.id)] == [user.id, reply.id]
    ws.add_message(older.id, "user", "bump")
    listed = ws.list_conversations()
    assert [c.id for c in listed] == [older.id, conv.id]
    assert [c.message_count for c in listed] == [1, 2]
    renamed = ws.rename_conversation(conv.id, "Greetings")
    assert renamed.title == "Greetings"
    assert ws.list_conversations(limit=1)[0].id == conv.id
    ws.delete_conversation(conv.id)
    with pytest.raises(NotFound, match=conv.id):
        ws.messages(conv.id)
    assert [c.id for c in ws.list_conversations()] == [older.id]


def test_message_input_is_checked(ws):
    conv = ws.create_conversation("c")
    with pytest.raises(InvalidInput, match="unknown role 'bot'"):
        ws.add_message(conv.id, "bot", "x")
    with pytest.raises(InvalidInput, match="unknown message status 'done'"):
        ws.add_message(conv.id, "user", "x", status="done")
    with pytest.raises(NotFound, match="no conversation with id nope"):
        ws.add_message("nope", "user", "x")
    with pytest.raises(NotFound, match="no message with id 77"):
        ws.update_message(77, "x", "complete")
    with pytest.raises(NotFound, match="no training run"):
        ws.create_conversation(run_id=5)
    assert ws.messages(conv.id) == []


def test_scorecards(ws, adapter):
    run = ws.add_run("r", "tiny", adapter)
    other = ws.add_run("o", "tiny", adapter)
    ds = ws.add_dataset("d", [("p", "r")], source="test")
    card = ws.add_scorecard(run.id, ds.id, {"exact_match": 0.5}, [{"prompt": "p", "ok": True}])
    ws.add_scorecard(other.id, ds.id, {"exact_match": 1.0}, [])
    assert card.summary == {"exact_match": 0.5} and card.rows == [{"prompt": "p", "ok": True}]
    assert ws.list_scorecards(run.id) == [card]
    assert len(ws.list_scorecards()) == 2
    with pytest.raises(NotFound):
        ws.add_scorecard(run.id, 999, {}, [])


def test_json_columns_round_trip_unicode(ws):
    conv = ws.create_conversation("ünï")
    msg = ws.add_message(conv.id, "user", "héllo 🌍", meta={"note": "日本"})
    assert ws.messages(conv.id) == [msg]
    assert json.dumps(msg.meta, ensure_ascii=False) == '{"note": "日本"}'


def test_session_shares_one_connection_and_releases_the_file(tmp_path, monkeypatch):
    from ff_lib.data import db

    ws = Workspace.open(tmp_path / "ws")
    opened = []
    real_open = db.open_connection

    def counting_open(*args, **kwargs):
        opened.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(db, "open_connection", counting_open)
    with ws.session():
        run_count = len(ws.list_runs())
        ds = ws.add_dataset("s", [("q", "a")], source="test")
        assert ws.get_dataset(ds.id).rows == 1
    assert run_count == 0
    assert len(opened) == 1
    # Outside the session each call opens (and closes) its own connection again.
    ws.list_datasets()
    assert len(opened) == 2
