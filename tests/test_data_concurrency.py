"""Two real processes (and several threads) sharing one workspace file."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ff_lib.data import Workspace
from ff_lib.errors import WorkspaceBusy

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

HOLD_SCRIPT = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold_database(db_path: Path, seconds: float) -> subprocess.Popen:
    """A child process holding the database open; returns once it has the lock."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(db_path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_cli_writes_while_this_process_reads_and_writes(tmp_path):
    ws = Workspace.open(tmp_path / "w")
    results: list[subprocess.CompletedProcess] = []

    def trainer():
        for i in range(5):
            cmd = [sys.executable, "-m", "ff_lib", "--workspace", str(ws.path), "runs", "add"]
            cmd += ["--name", f"child-{i}", "--base-model", "tiny", "--adapter"]
            cmd += [str(tmp_path / f"out{i}"), "--status", "running"]
            results.append(subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT))

    thread = threading.Thread(target=trainer)
    thread.start()
    conversation = ws.create_conversation("parent")
    written = 0
    while thread.is_alive():
        ws.add_message(conversation.id, "user", f"message {written}")
        ws.list_runs()
        written += 1
    thread.join()
    assert [r.returncode for r in results] == [0] * 5, [r.stderr for r in results]
    assert sorted(r.name for r in ws.list_runs()) == [f"child-{i}" for i in range(5)]
    assert [m.content for m in ws.messages(conversation.id)] == [
        f"message {i}" for i in range(written)
    ]
    assert all(r.started_at is not None for r in ws.list_runs())


def test_a_short_lock_is_waited_out(tmp_path):
    ws = Workspace.open(tmp_path / "w")
    child = hold_database(ws.db_path, 1.0)
    start = time.monotonic()
    dataset = ws.add_dataset("after the wait", [("p", "r")], source="test")
    waited = time.monotonic() - start
    child.wait(timeout=10)
    assert waited > 0.3
    assert ws.list_datasets() == [dataset]


def test_a_long_lock_raises_workspace_busy_with_the_path(tmp_path):
    ws = Workspace.open(tmp_path / "w", busy_timeout_s=0.5)
    child = hold_database(ws.db_path, 3.0)
    try:
        with pytest.raises(WorkspaceBusy) as err:
            ws.add_dataset("too soon", [("p", "r")], source="test")
    finally:
        child.wait(timeout=10)
    message = str(err.value)
    assert message.startswith(f"workspace is busy: {ws.db_path} is locked by another process")
    assert f"PID {child.pid}" in message and message.endswith("try again in a moment")
    assert ws.list_datasets() == []  # usable again once the other process is gone


def test_threads_of_one_process_do_not_share_a_connection(tmp_path):
    ws = Workspace.open(tmp_path / "w")
    conversation = ws.create_conversation("threads")
    errors: list[BaseException] = []

    def chat(n):
        try:
            for i in range(5):
                ws.add_message(conversation.id, "user", f"{n}-{i}")
                ws.list_conversations()
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=chat, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ws.messages(conversation.id)) == 20
