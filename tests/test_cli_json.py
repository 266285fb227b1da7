"""`--json` carries every fact the text mode prints: warnings, the prompt cut to fit, turns
dropped, which decoder answered on what (DESIGN.md's keys stay)."""

import io
import json
import re
import sys

from tests.test_cli_eval import cli
from tests.test_cli_model import run_cli
from tests.test_effect import zero_b_adapter  # noqa: F401
from tests.test_evaluation import _conversation, eval_workspace, run_named  # noqa: F401

CONTRACT = {"text", "adapter", "base_model", "settings", "stats"}
LONG_PROMPT = "Tell me everything about the capitals of Europe and their rivers. " * 12


def stderr_facts(err: str) -> dict[str, list[str]]:
    """'warning: X' and 'note: X' lines, and the '[N tokens, ..., DESCRIBE]' figures lines."""
    facts: dict[str, list[str]] = {"warning": [], "note": [], "figures": []}
    for line in err.splitlines():
        if match := re.match(r"(warning|note): (.*)", line):
            facts[match.group(1)].append(match.group(2))
        elif line.startswith("[") and "tokens/s" in line:
            facts["figures"].append(line)
    return facts


def test_generate_json_says_what_text_mode_says(capsys, capitals_adapter, short_context_base):
    args = (
        "generate", "--adapter", capitals_adapter.parent, "--base-model", short_context_base,
        "--prompt", LONG_PROMPT, "--preset", "Deterministic", "--max-new-tokens", 8,
    )  # fmt: skip
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    said = stderr_facts(err)
    assert said["warning"] and said["note"]  # the run folder resolved; the prompt was cut

    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= CONTRACT
    assert doc["warnings"] == said["warning"]
    assert [doc["notice"]] == said["note"]
    assert doc["truncated_tokens"] > 0 and "cut" in doc["notice"]
    assert doc["decoder"] and doc["quantization"] in said["figures"][0]
    assert f"{doc['stats']['new_tokens']} tokens" in said["figures"][0]
    assert doc["waited_for_model"] is False
    assert "prompt_text" not in doc


def test_chat_json_says_which_turns_were_dropped(
    capsys, capitals_adapter, short_context_base, monkeypatch
):
    lines = "".join(f"Question {i}: what is the capital of Kenya and why?\n" for i in range(3))
    args = (
        "chat", "--adapter", capitals_adapter, "--base-model", short_context_base,
        "--preset", "Deterministic", "--max-new-tokens", 8,
    )  # fmt: skip
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    notes = stderr_facts(err)["note"]
    assert any("dropped" in n for n in notes)

    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    turns = json.loads(out)
    assert [t["notice"] for t in turns if t["notice"]] == notes
    assert sum(t["dropped_turns"] for t in turns) > 0
    assert all(set(t) >= CONTRACT | {"prompt", "warnings", "decoder"} for t in turns)


def test_effect_and_replay_json_carry_their_summary_lines(capsys, eval_workspace, host):  # noqa: F811
    ws = eval_workspace
    run = run_named(ws, "capitals")
    code, out, err = cli(capsys, ws, "effect", "--run", run.id)
    assert code == 0, err
    summary_line = out.splitlines()[0]
    code, out, err = cli(capsys, ws, "effect", "--run", run.id, "--json")
    assert json.loads(out)["summary"] == summary_line

    cid = _conversation(ws, host, run, ["What is the capital of Peru?"])
    replay = ("replay", cid, "--run", run_named(ws, "other").id)
    code, _, err = cli(capsys, ws, *replay)
    assert code == 0, err
    unchanged = int(re.search(r"(\d+)/1 answers unchanged", err).group(1))
    code, out, err = cli(capsys, ws, *replay, "--json")
    assert json.loads(out)["unchanged"] == unchanged
    assert json.loads(out)["turns"][0]["replayed_meta"]["decoder"]
