"""`python -m ff_lib explain CONVERSATION_ID MESSAGE_NUMBER`: JSON shape, the table, refusals."""

import json
from pathlib import Path

import pytest

from ff_lib.cli import main
from tests.apptest_helpers import private_copy
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_explain import store_explained_conversation


@pytest.fixture(scope="module")
def explain_ws(demo_workspace, tmp_path_factory) -> tuple[Path, str]:  # noqa: F811
    folder = private_copy(demo_workspace, tmp_path_factory, "cli-explain")
    return folder, store_explained_conversation(folder)


def cli(capsys, folder, *args):
    code = main(["--workspace", str(folder), "explain", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_json(capsys, explain_ws):
    folder, cid = explain_ws
    code, out, err = cli(capsys, folder, cid, 2, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"tokens", "changed_share"} <= set(data)
    assert 0.5 < data["changed_share"] <= 1.0  # the demo's capitals adapter acts on its answer
    token = data["tokens"][0]
    assert {"text", "logprob_adapter", "logprob_base", "top_adapter", "top_base"} <= set(token)
    assert len(token["top_adapter"]) == len(token["top_base"]) == 5
    text, logprob = token["top_adapter"][0]
    assert isinstance(text, str) and isinstance(logprob, float)
    assert data["changed_share"] == round(data["changed"] / len(data["tokens"]), 4)


def test_explain_table(capsys, explain_ws):
    folder, cid = explain_ws
    code, out, err = cli(capsys, folder, cid, 2)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["#", "TOKEN", "LOGP"]
    assert "'<|eot_id|>'" in out  # the end of turn is a scored position
    assert lines[-1].startswith("the base would have picked another token at ")


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (1, "is a user message"),
        (4, "base model alone (no adapter)"),
        (5, "has 4 messages: choose a message number from 1 to 4"),
        (0, "has 4 messages"),
    ],
)
def test_explain_refusals(capsys, explain_ws, number, message):
    folder, cid = explain_ws
    code, out, err = cli(capsys, folder, cid, number, "--json")
    assert code == 1 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_explain_unknown_conversation(capsys, explain_ws):
    folder, _ = explain_ws
    code, out, err = cli(capsys, folder, "no-such-id", 2)
    assert code == 1 and out == ""
    assert "no conversation with id no-such-id" in err


def test_explain_needs_a_message_number(capsys, explain_ws):
    folder, cid = explain_ws
    with pytest.raises(SystemExit) as exc:
        cli(capsys, folder, cid)
    assert exc.value.code == 2
