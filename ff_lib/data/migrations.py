"""The schema: an append-only list of named forward migrations, recorded in the database."""

import datetime as dt
from collections.abc import Callable

import duckdb

from ff_lib.errors import WorkspaceError

Migration = Callable[[duckdb.DuckDBPyConnection], None]


def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SEQUENCE datasets_id_seq START 1")
    con.execute(
        """
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY DEFAULT nextval('datasets_id_seq'),
            name VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            row_count INTEGER NOT NULL,
            skipped_rows INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL
        )
        """
    )
    # No index on the rows: a million-row import stays fast, and rows are appended per
    # dataset so the zone maps on dataset_id already skip other datasets' row groups.
    con.execute(
        """
        CREATE TABLE dataset_rows (
            dataset_id INTEGER NOT NULL,
            ordinal INTEGER NOT NULL,
            prompt VARCHAR NOT NULL,
            response VARCHAR NOT NULL
        )
        """
    )
    con.execute("CREATE SEQUENCE training_runs_id_seq START 1")
    con.execute(
        """
        CREATE TABLE training_runs (
            id INTEGER PRIMARY KEY DEFAULT nextval('training_runs_id_seq'),
            name VARCHAR NOT NULL,
            status VARCHAR NOT NULL
                CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
            base_model VARCHAR,
            dataset_id INTEGER,
            adapter_path VARCHAR,
            params JSON NOT NULL DEFAULT '{}',
            metrics JSON NOT NULL DEFAULT '{}',
            created_at TIMESTAMP NOT NULL,
            started_at TIMESTAMP,
            completed_at TIMESTAMP
        )
        """
    )
    con.execute(
        """
        CREATE TABLE conversations (
            id VARCHAR PRIMARY KEY,
            title VARCHAR,
            run_id INTEGER,
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )
        """
    )
    con.execute("CREATE SEQUENCE messages_id_seq START 1")
    con.execute(
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY DEFAULT nextval('messages_id_seq'),
            conversation_id VARCHAR NOT NULL,
            role VARCHAR NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content VARCHAR NOT NULL,
            status VARCHAR NOT NULL
                CHECK (status IN ('complete', 'streaming', 'interrupted', 'error')),
            meta JSON NOT NULL DEFAULT '{}',
            created_at TIMESTAMP NOT NULL
        )
        """
    )


def m002_scorecards(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SEQUENCE scorecards_id_seq START 1")
    con.execute(
        """
        CREATE TABLE scorecards (
            id INTEGER PRIMARY KEY DEFAULT nextval('scorecards_id_seq'),
            run_id INTEGER NOT NULL,
            dataset_id INTEGER NOT NULL,
            created_at TIMESTAMP NOT NULL,
            summary JSON NOT NULL,
            rows JSON NOT NULL
        )
        """
    )


def m003_rename_duplicate_run_names(con: duckdb.DuckDBPyConnection) -> None:
    """Make run names unique (m004 then enforces it): a select box or a command that names a
    run must mean one run.

    Older workspaces may hold the same name twice. The oldest run keeps it; each later one is
    renamed 'name (2)', 'name (3)', ... (a name no run has), and keeps its old name in
    params.renamed_from so `runs list --json` says what happened.
    """
    rows = con.execute("SELECT id, name FROM training_runs ORDER BY created_at, id").fetchall()
    taken = {name for _, name in rows}
    kept: set[str] = set()
    for run_id, name in rows:
        if name not in kept:
            kept.add(name)
            continue
        n = 2
        while f"{name} ({n})" in taken:
            n += 1
        new = f"{name} ({n})"
        taken.add(new)
        kept.add(new)
        con.execute(
            "UPDATE training_runs SET name = ?, "
            "params = json_merge_patch(params, json_object('renamed_from', ?)) WHERE id = ?",
            [new, name, run_id],
        )


def m004_unique_run_names(con: duckdb.DuckDBPyConnection) -> None:
    # Its own migration: DuckDB cannot build an index in the transaction that renamed rows.
    con.execute("CREATE UNIQUE INDEX training_runs_name_unique ON training_runs (name)")


def m005_scorecard_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Scorecards stored as they are made: a status, and one row per (dataset row, model) answer.

    Scorecards written before this migration are complete (their rows stay in the JSON column).
    """
    con.execute("ALTER TABLE scorecards ADD COLUMN IF NOT EXISTS status VARCHAR DEFAULT 'complete'")
    con.execute("UPDATE scorecards SET status = 'complete' WHERE status IS NULL")
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS scorecard_rows (
            scorecard_id INTEGER NOT NULL,
            ordinal INTEGER NOT NULL,
            model VARCHAR NOT NULL,
            prompt VARCHAR NOT NULL,
            expected VARCHAR NOT NULL,
            answer VARCHAR NOT NULL,
            scores JSON NOT NULL,
            PRIMARY KEY (scorecard_id, ordinal, model)
        )
        """
    )


def m006_votes(con: duckdb.DuckDBPyConnection) -> None:
    """Blind A/B votes: the prompt, both answers as shown (A, B), who answered each side, the
    verdict, and each answer's provenance (Reply.as_meta()); exported as DPO preference pairs."""
    con.execute("CREATE SEQUENCE IF NOT EXISTS votes_id_seq START 1")
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS votes (
            id INTEGER PRIMARY KEY DEFAULT nextval('votes_id_seq'),
            prompt VARCHAR NOT NULL,
            answer_a VARCHAR NOT NULL,
            answer_b VARCHAR NOT NULL,
            model_a JSON NOT NULL,
            model_b JSON NOT NULL,
            swapped BOOLEAN NOT NULL,
            verdict VARCHAR NOT NULL CHECK (verdict IN ('a', 'b', 'tie', 'both_bad')),
            meta_a JSON NOT NULL DEFAULT '{}',
            meta_b JSON NOT NULL DEFAULT '{}',
            created_at TIMESTAMP NOT NULL
        )
        """
    )


def m007_sweeps(con: duckdb.DuckDBPyConnection) -> None:
    """Checkpoint sweeps: the run, the dataset, the rows answered and the sweep's document
    (points with their step, scores and logged losses; the base; the best checkpoint)."""
    con.execute("CREATE SEQUENCE IF NOT EXISTS sweeps_id_seq START 1")
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS sweeps (
            id INTEGER PRIMARY KEY DEFAULT nextval('sweeps_id_seq'),
            run_id INTEGER NOT NULL,
            dataset_id INTEGER NOT NULL,
            n INTEGER NOT NULL,
            document JSON NOT NULL,
            created_at TIMESTAMP NOT NULL
        )
        """
    )


def m008_conversation_source(con: duckdb.DuckDBPyConnection) -> None:
    """Where a conversation came from: 'app' (the pages, the CLI) or 'api' (`serve`, one
    conversation per request). Conversations written before this migration are the app's."""
    con.execute("ALTER TABLE conversations ADD COLUMN IF NOT EXISTS source VARCHAR DEFAULT 'app'")
    con.execute("UPDATE conversations SET source = 'app' WHERE source IS NULL")


# Append only: a released migration is never edited, renamed or reordered.
MIGRATIONS: tuple[Migration, ...] = (
    m001_initial,
    m002_scorecards,
    m003_rename_duplicate_run_names,
    m004_unique_run_names,
    m005_scorecard_rows,
    m006_votes,
    m007_sweeps,
    m008_conversation_source,
)


def applied_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the migrations recorded in this database, in the order they ran."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )
    rows = con.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
    return [name for (name,) in rows]


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Run the migrations this database lacks, each in its own transaction; their names."""
    done = set(applied_migrations(con))
    known = {m.__name__ for m in MIGRATIONS}
    unknown = sorted(done - known)
    if unknown:
        raise WorkspaceError(
            f"the workspace database was written by a newer FF Playground "
            f"(unknown migrations: {', '.join(unknown)}) — upgrade FF Playground to open it"
        )
    ran = []
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        con.begin()
        try:
            migration(con)
            con.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                [migration.__name__, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
            )
        except BaseException:
            con.rollback()
            raise
        con.commit()
        ran.append(migration.__name__)
    return ran


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """How many migrations this database has applied."""
    return len(applied_migrations(con))
