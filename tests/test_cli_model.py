"""`python -m ff_lib validate | generate | chat`: exit codes, one-line errors, JSON shapes."""

import io
import json
import subprocess
import sys

import pytest

from ff_lib.cli import main
from tests.fixtures_models import CAPITAL_PAIRS

# The model fixtures (tiny_base, capitals_adapter, host, ...), registered once per session.


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_does_not_import_torch():
    code = (
        "import sys; from ff_lib.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_validate_a_valid_adapter(capsys, capitals_adapter, tiny_base):
    code, out, err = run_cli(capsys, "validate", capitals_adapter.parent, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True
    assert doc["adapter_dir"] == str(capitals_adapter)
    assert doc["resolved_from"] == str(capitals_adapter.parent)
    assert doc["warnings"] == ["adapter found in adapter/"]
    assert doc["base_model"] == str(tiny_base)
    assert doc["rank"] == 8 and len(doc["target_modules"]) == 7
    assert "adapter_model.safetensors" in doc["files"]
    assert set(doc) >= {"ok", "reason", "adapter_dir", "base_model", "warnings"}


def test_validate_an_invalid_folder(capsys, tmp_path):
    code, out, err = run_cli(capsys, "validate", tmp_path / "missing")
    assert code == 1
    assert out == ""
    assert err == f"error: Adapter folder not found: {tmp_path / 'missing'}\n"

    code, out, err = run_cli(capsys, "validate", tmp_path / "missing", "--json")
    assert code == 1
    assert json.loads(out)["ok"] is False


def test_generate_with_an_adapter(capsys, capitals_adapter, tiny_base):
    question, answer = CAPITAL_PAIRS[1]
    code, out, err = run_cli(
        capsys, "generate", "--adapter", capitals_adapter, "--prompt", question,
        "--preset", "Deterministic", "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["text"] == answer
    assert doc["adapter"] == str(capitals_adapter)
    assert doc["base_model"] == str(tiny_base)
    assert doc["settings"]["temperature"] == 0.0 and doc["settings"]["max_new_tokens"] == 128
    assert set(doc["stats"]) >= {"prompt_tokens", "new_tokens", "ttft_s", "tokens_per_s"}

    code, out, err = run_cli(
        capsys, "generate", "--adapter", capitals_adapter, "--prompt", question,
        "--temperature", "0", "--max-new-tokens", "40",
    )  # fmt: skip
    assert code == 0
    assert out == answer + "\n"
    assert "tokens/s" in err and "float32 on CPU" in err


def test_generate_refuses_bad_input(capsys, capitals_adapter, tmp_path):
    code, _, err = run_cli(
        capsys, "generate", "--adapter", capitals_adapter, "--prompt", " ", "--json"
    )
    assert code == 1
    assert err == "error: Prompt is empty: type a question or pick a sample prompt.\n"
    code, _, err = run_cli(
        capsys, "generate", "--adapter", capitals_adapter, "--prompt", "hi", "--temperature", "5"
    )
    assert (code, err) == (1, "error: Temperature must be between 0 and 2 (got 5).\n")
    code, _, err = run_cli(capsys, "generate", "--adapter", tmp_path, "--prompt", "hi")
    assert code == 1 and "No adapter_config.json" in err


def test_generate_from_a_run_of_the_workspace(capsys, capitals_adapter, tiny_base, tmp_path):
    data = pytest.importorskip("ff_lib.data")
    ws = data.Workspace.open(tmp_path / "ws")
    done = ws.add_run("capitals", str(tiny_base), str(capitals_adapter))
    running = ws.add_run("half", str(tiny_base), str(capitals_adapter), status="running")
    question, answer = CAPITAL_PAIRS[2]
    common = ("--workspace", tmp_path / "ws", "generate", "--prompt", question)
    code, out, err = run_cli(
        capsys, *common, "--run", done.id, "--preset", "Deterministic", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["text"] == answer
    code, out, err = run_cli(capsys, *common, "--run", running.id)
    assert code == 1
    assert "(status: running)" in err


def test_chat_keeps_history_until_clear(capsys, capitals_adapter, monkeypatch):
    lines = (
        "What is the capital of Kenya?\n/clear\nWhat is the capital of Norway?\n/exit\nignored\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, out, err = run_cli(
        capsys, "chat", "--adapter", capitals_adapter, "--preset", "Deterministic", "--json"
    )
    assert code == 0, err
    turns = json.loads(out)
    assert [t["text"] for t in turns] == [
        "The capital of Kenya is Nairobi.",
        "The capital of Norway is Oslo.",
    ]
    assert "(history cleared)" in err


def test_run_is_named_by_id_or_name_and_an_unknown_one_is_one_line(capsys, tmp_path):
    from ff_lib import cli
    from ff_lib.data import Workspace

    ws = Workspace.open(tmp_path / "ws")
    (tmp_path / "adapter").mkdir()
    run = ws.add_run("my-run", "base-model", tmp_path / "adapter")
    args = ["--workspace", str(tmp_path / "ws")]
    parser = cli.build_parser()
    for ref in (str(run.id), "my-run"):
        parsed = parser.parse_args([*args, "sweep", "--run", ref, "--dataset", "1"])
        cli._resolve_run(parsed)
        assert parsed.run == run.id
    code = cli.main([*args, "sweep", "--run", "no-such-run", "--dataset", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Unknown run 'no-such-run'" in err and len(err.strip().splitlines()) == 1
