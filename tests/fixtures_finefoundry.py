"""FineFoundry databases built from FineFoundry's own DDL and its own INSERT/UPDATE statements.

Source: SourceBox-LLC/FineFoundry, `src/db/core.py` `init_db()`, at two commits:
- 25c6e28fd5a3d2f47a0c87a11256c5af5f04a03b: the older schema, no `training_runs` table and no
  `scrape_sessions.name`;
- 60da3e321c6b5c3058e6e927a4dce6a176d21cc9: the current schema. `init_db()` also runs
  `ALTER TABLE scrape_sessions ADD COLUMN name TEXT` on a database made by the older one, so an
  upgraded database has `name` as the last column.
The DML mirrors `src/db/scraped_data.py` (create_scrape_session, add_scraped_pairs) and
`src/db/training_runs.py` (create_training_run, update_training_run) at 6a8b43da1171e5b6…,
with the values its training code writes (`src/helpers/training.py`, same commit):
status 'pending' -> 'running' -> 'completed' | 'failed'; started_at/completed_at from
`datetime.now().isoformat()` (local time, no zone); adapter_path `<output_dir>/adapter`;
dataset_source 'Database' (dataset_id = a scrape session id) or 'Hugging Face' (a repo id).
"""

import sqlite3
from pathlib import Path

# --- 25c6e28: the older schema (verbatim DDL) -------------------------------------------------
DDL_OLD = """
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS training_configs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE NOT NULL,
    config_json TEXT NOT NULL,
    train_target TEXT,
    created_at TEXT DEFAULT (datetime('now')),
    updated_at TEXT DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS app_state (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS scrape_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    source_details TEXT,
    dataset_format TEXT DEFAULT 'standard',
    pair_count INTEGER DEFAULT 0,
    created_at TEXT DEFAULT (datetime('now')),
    metadata_json TEXT
);
CREATE TABLE IF NOT EXISTS scraped_pairs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    input_text TEXT NOT NULL,
    output_text TEXT NOT NULL,
    source_url TEXT,
    metadata_json TEXT,
    created_at TEXT DEFAULT (datetime('now')),
    FOREIGN KEY (session_id) REFERENCES scrape_sessions(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_scraped_pairs_session
ON scraped_pairs(session_id);
CREATE INDEX IF NOT EXISTS idx_training_configs_target
ON training_configs(train_target);
"""

# --- 60da3e3: what the current init_db() adds (verbatim DDL) -----------------------------------
DDL_CURRENT_ADDITIONS = """
CREATE TABLE IF NOT EXISTS training_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT DEFAULT 'pending',
    base_model TEXT,
    dataset_source TEXT,
    dataset_id TEXT,
    storage_path TEXT NOT NULL,
    output_dir TEXT,
    adapter_path TEXT,
    checkpoint_path TEXT,
    hp_json TEXT,
    logs_json TEXT,
    started_at TEXT,
    completed_at TEXT,
    created_at TEXT DEFAULT (datetime('now')),
    updated_at TEXT DEFAULT (datetime('now')),
    metadata_json TEXT
);
CREATE TABLE IF NOT EXISTS evaluation_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    training_run_id INTEGER,
    base_model TEXT NOT NULL,
    adapter_path TEXT,
    benchmark TEXT NOT NULL,
    num_samples INTEGER,
    batch_size INTEGER,
    metrics_json TEXT NOT NULL,
    is_base_eval INTEGER DEFAULT 0,
    created_at TEXT DEFAULT (datetime('now')),
    FOREIGN KEY (training_run_id) REFERENCES training_runs(id) ON DELETE SET NULL
);
CREATE TABLE IF NOT EXISTS app_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT DEFAULT (datetime('now')),
    level TEXT NOT NULL,
    logger TEXT,
    message TEXT NOT NULL,
    module TEXT,
    func_name TEXT,
    line_no INTEGER,
    exc_info TEXT
);
CREATE INDEX IF NOT EXISTS idx_training_runs_status
ON training_runs(status);
"""

# The current scrape_sessions, as a fresh database gets it (name second).
DDL_CURRENT_SESSIONS = """
CREATE TABLE IF NOT EXISTS scrape_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    source TEXT NOT NULL,
    source_details TEXT,
    dataset_format TEXT DEFAULT 'standard',
    pair_count INTEGER DEFAULT 0,
    created_at TEXT DEFAULT (datetime('now')),
    metadata_json TEXT
);
"""
MIGRATION_ADD_NAME = "ALTER TABLE scrape_sessions ADD COLUMN name TEXT"


def create_db(path: Path, schema: str) -> sqlite3.Connection:
    """schema: 'old' (25c6e28), 'current' (60da3e3, fresh) or 'upgraded' (old, then init_db
    of 60da3e3 run on it)."""
    con = sqlite3.connect(path)
    if schema == "current":
        con.executescript(DDL_CURRENT_SESSIONS)
    con.executescript(DDL_OLD)  # IF NOT EXISTS: keeps the current scrape_sessions
    if schema in ("current", "upgraded"):
        if schema == "upgraded":
            con.execute(MIGRATION_ADD_NAME)
        con.executescript(DDL_CURRENT_ADDITIONS)
    con.commit()
    return con


def add_session(con, source, source_details=None, pairs=(), name=None, created_at=None) -> int:
    """create_scrape_session + add_scraped_pairs (pairs: (input, output) tuples)."""
    cur = con.execute(
        "INSERT INTO scrape_sessions (source, source_details, dataset_format, metadata_json) "
        "VALUES (?, ?, ?, ?)",
        (source, source_details, "standard", None),
    )
    session_id = cur.lastrowid
    if name is not None:  # the current app's rename of a session
        con.execute("UPDATE scrape_sessions SET name = ? WHERE id = ?", (name, session_id))
    if created_at is not None:
        con.execute(
            "UPDATE scrape_sessions SET created_at = ? WHERE id = ?", (created_at, session_id)
        )
    for input_text, output_text in pairs:
        con.execute(
            "INSERT INTO scraped_pairs (session_id, input_text, output_text, source_url, "
            "metadata_json) VALUES (?, ?, ?, ?, ?)",
            (session_id, input_text, output_text, None, None),
        )
    con.execute(
        "UPDATE scrape_sessions SET pair_count = (SELECT COUNT(*) FROM scraped_pairs "
        "WHERE session_id = ?) WHERE id = ?",
        (session_id, session_id),
    )
    con.commit()
    return session_id


def add_run(con, name, base_model, dataset_source, dataset_id, storage_path, hp_json=None) -> int:
    """create_training_run: status 'pending', created_at = datetime('now') (UTC)."""
    cur = con.execute(
        "INSERT INTO training_runs (name, status, base_model, dataset_source, dataset_id, "
        "storage_path, hp_json, metadata_json) VALUES (?, 'pending', ?, ?, ?, ?, ?, ?)",
        (name, base_model, dataset_source, dataset_id, storage_path, hp_json, None),
    )
    con.commit()
    return cur.lastrowid


def update_run(con, run_id, **values) -> None:
    """update_training_run: the given columns, and updated_at = datetime('now')."""
    sets = ", ".join(f"{column} = ?" for column in values)
    con.execute(
        f"UPDATE training_runs SET {sets}, updated_at = datetime('now') WHERE id = ?",
        (*values.values(), run_id),
    )
    con.commit()
