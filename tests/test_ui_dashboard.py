"""Home's downloads: a stored conversation exported on click, read from the workspace."""

import json

from ff_lib.data import Workspace
from ff_lib.ui.dashboard import conversation_export, load_dashboard


def test_conversation_export_reads_the_stored_messages(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    conv = ws.create_conversation("emoji")
    ws.add_message(conv.id, "user", "Bonjour 👋 <script>x</script>")
    ws.add_message(conv.id, "assistant", "Arr 🏴‍☠️", meta={"stats": {"new_tokens": 3}})

    lines = conversation_export(ws, conv.id, "JSONL").decode("utf-8").splitlines()

    records = [json.loads(line) for line in lines]
    assert [r["content"] for r in records] == ["Bonjour 👋 <script>x</script>", "Arr 🏴‍☠️"]
    assert "Arr 🏴‍☠️" in conversation_export(ws, conv.id, "Text").decode("utf-8")


def test_dashboard_lists_conversations_without_reading_their_messages(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    conv = ws.create_conversation("one")
    ws.add_message(conv.id, "user", "hi")

    board = load_dashboard(ws)

    assert [c.id for c in board.conversations] == [conv.id]
    assert board.conversations[0].message_count == 1
