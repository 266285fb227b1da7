"""Short-lived connections to the workspace file, retried while another process holds its lock."""

import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ff_lib.errors import WorkspaceBusy, WorkspaceError

DEFAULT_BUSY_TIMEOUT_S = 5.0
_FIRST_DELAY_S = 0.02
_MAX_DELAY_S = 0.4

# One lock per database file within this process: DuckDB shares one instance between the
# connections of a process, and serializing them avoids write-write conflicts between threads.
_process_locks: dict[str, threading.RLock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(db_path: Path) -> threading.RLock:
    with _process_locks_guard:
        return _process_locks.setdefault(str(db_path), threading.RLock())


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _lock_holder(exc: BaseException) -> str:
    """'Conflicting lock is held in /usr/bin/python (PID 42)' out of DuckDB's message."""
    match = re.search(r"Conflicting lock is held in ([^.]*?\(PID \d+\))", str(exc))
    if match:
        return f"held by {match.group(1)}"
    return _first_line(exc)


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return "lock" in text


def open_connection(db_path: Path, busy_timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Connect, retrying with exponential backoff while another process holds the file."""
    deadline = time.monotonic() + busy_timeout_s
    delay = _FIRST_DELAY_S
    while True:
        try:
            con = duckdb.connect(str(db_path))
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise WorkspaceError(
                    f"cannot open the workspace database {db_path}: {_first_line(exc)}"
                ) from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkspaceBusy(
                    f"workspace is busy: {db_path} is locked by another process "
                    f"({_lock_holder(exc)}) — try again in a moment"
                ) from exc
            # Jitter keeps two waiting processes from retrying in lockstep.
            time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))
            delay = min(delay * 2, _MAX_DELAY_S)
            continue
        # DuckDB's own progress bar writes to stdout, which would break the CLI's --json.
        con.execute("SET enable_progress_bar = false")
        return con


# Connections lent by session() to the operations of one thread (one page rerun).
_sessions = threading.local()


def _session_connections() -> dict[str, duckdb.DuckDBPyConnection]:
    if not hasattr(_sessions, "connections"):
        _sessions.connections = {}
    return _sessions.connections


@contextmanager
def connection(db_path: Path, busy_timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one operation, closed (and the file lock released) on exit; inside
    session() the session's connection is lent instead."""
    with _process_lock(db_path):
        shared = _session_connections().get(str(db_path))
        if shared is not None:
            yield shared
            return
        con = open_connection(db_path, busy_timeout_s)
        try:
            yield con
        finally:
            con.close()


@contextmanager
def session(db_path: Path, busy_timeout_s: float) -> Iterator[None]:
    """One connection for a short batch of operations in this thread.

    Opening the file costs 20-50 ms (DuckDB builds its catalog), so a page rerun that reads
    runs, datasets and messages opens it once. Keep a session short (never around a model
    load or a generation): other processes wait for it with backoff.
    """
    connections = _session_connections()
    key = str(db_path)
    if key in connections:
        yield
        return
    with _process_lock(db_path):
        con = open_connection(db_path, busy_timeout_s)
        connections[key] = con
        try:
            yield
        finally:
            del connections[key]
            con.close()


@contextmanager
def transaction(db_path: Path, busy_timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection inside BEGIN ... COMMIT; any exception rolls everything back."""
    with connection(db_path, busy_timeout_s) as con:
        con.begin()
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        con.commit()
