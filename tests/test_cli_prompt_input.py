"""Prompts that are not UTF-8 (an argument, a file, stdin): one clear line, never a traceback."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from ff_lib.cli import main

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C.UTF-8", "HF_HUB_OFFLINE": "1"}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *texts: str) -> None:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert all(t in err for t in texts), err


def test_a_latin1_prompt_argument_is_refused_in_one_line(tmp_path):
    # As a terminal set to Latin-1 passes "café": bytes, not UTF-8. No model is loaded.
    cmd = [sys.executable, "-m", "ff_lib", "generate", "--adapter", str(tmp_path)]
    done = subprocess.run(
        [*map(os.fsencode, cmd), b"--prompt", b"caf\xe9 au lait?"],
        capture_output=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == b""
    one_error_line(done.stderr.decode(), "--prompt is not valid UTF-8", "0xe9", "character 4")


def test_a_system_prompt_argument_is_checked_too(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "generate", "--adapter", tmp_path, "--prompt", "hi", "--system-prompt", "\udcff"
    )
    assert (code, out) == (1, "")
    one_error_line(err, "--system-prompt is not valid UTF-8", "0xff")


def test_a_prompt_file_that_is_not_utf8_names_its_line(capsys, tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_bytes("Résumé this:\nCafé\n".encode("cp1252"))
    code, out, err = run_cli(capsys, "generate", "--adapter", tmp_path, "--prompt-file", f)
    assert (code, out) == (1, "")
    one_error_line(err, f"the prompt file {f} is not valid UTF-8", "0xe9 on line 1")
    code, _, err = run_cli(capsys, "generate", "--adapter", tmp_path, "--prompt-file", "/no/such")
    assert code == 1
    one_error_line(err, "cannot read the prompt file /no/such")


def test_a_prompt_on_stdin_that_is_not_utf8_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe bad\n")))
    code, out, err = run_cli(capsys, "generate", "--adapter", tmp_path, "--prompt-file", "-")
    assert (code, out) == (1, "")
    one_error_line(err, "the prompt on stdin is not valid UTF-8", "0xff on line 2")


def test_a_prompt_file_answers(capsys, capitals_adapter, tmp_path):
    from tests.fixtures_models import CAPITAL_PAIRS

    question, answer = CAPITAL_PAIRS[0]
    f = tmp_path / "q.txt"
    f.write_bytes(("\ufeff" + question).encode("utf-8"))  # a BOM, as Notepad writes it
    code, out, err = run_cli(
        capsys,
        "generate",
        "--adapter",
        capitals_adapter,
        "--prompt-file",
        f,
        "--preset",
        "Deterministic",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["text"] == answer


def test_chat_skips_a_line_that_is_not_utf8_and_goes_on(capsys, capitals_adapter, monkeypatch):
    from tests.fixtures_models import CAPITAL_PAIRS

    question, answer = CAPITAL_PAIRS[1]
    data = b"caf\xe9?\n" + question.encode() + b"\n/exit\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = run_cli(
        capsys, "chat", "--adapter", capitals_adapter, "--preset", "Deterministic", "--json"
    )
    assert code == 0, err
    assert [t["text"] for t in json.loads(out)] == [answer]
    assert "error: line 1 of the input is not valid UTF-8: byte 0xe9" in err
    assert "(line skipped)" in err and "Traceback" not in err


def test_any_text_argument_that_is_not_utf8_is_refused_in_one_line(capsys, tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n')
    ws = tmp_path / "ws"
    code, out, err = run_cli(
        capsys, "--workspace", ws, "datasets", "import", f, "--name", "caf\udce9"
    )
    assert (code, out) == (1, "")
    one_error_line(err, "--name is not valid UTF-8: byte 0xe9 at character 4")
    code, _, err = run_cli(capsys, "--workspace", ws, "import-finefoundry", "/tmp/x\udcff.db")
    assert code == 1
    one_error_line(err, "DB_FILE is not valid UTF-8: byte 0xff")
