"""`python -m ff_lib compare` and `conversations list`: JSON shapes, order, refusals, exit codes."""

import json

import pytest

from ff_lib.data import Workspace
from tests.test_cli_eval import cli
from tests.test_effect import zero_b_adapter  # noqa: F401  (session fixture)
from tests.test_evaluation import eval_workspace, run_named  # noqa: F401  (session fixture)

PROMPT = "What is the capital of France?"


def compare_args(models: str, *extra):
    return ("compare", "--prompt", PROMPT, "--models", models, "--preset", "Deterministic",
            "--max-new-tokens", 12, *extra)  # fmt: skip


def test_compare_json_answers_in_the_order_given(capsys, eval_workspace):  # noqa: F811
    other = run_named(eval_workspace, "other").id
    code, out, err = cli(capsys, eval_workspace, *compare_args(f"capitals,base,{other}", "--json"))
    assert code == 0, err
    answers = json.loads(out)["answers"]
    assert [a["model"] for a in answers] == ["capitals", "base", str(other)]
    assert [a["label"] for a in answers] == ["capitals", "base model", "other"]
    for answer in answers:
        assert {"model", "text", "stats"} <= set(answer)
        assert answer["stats"]["new_tokens"] > 0
        # every fact of the reply: how it ended, its seed, what the context did, which engine
        assert answer["finish_reason"] in ("eos", "length")
        assert {"seed", "notice", "warnings", "describe"} <= set(answer)
        assert answer["engine"] == "in-process"
    assert answers[0]["text"] != answers[1]["text"]
    assert answers[1]["adapter"] is None and answers[2]["run_id"] == other


def test_compare_text_puts_each_answer_under_an_aligned_label(capsys, eval_workspace):  # noqa: F811
    code, out, err = cli(capsys, eval_workspace, *compare_args("base,capitals"))
    assert code == 0, err
    lines = out.splitlines()
    firsts = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] for line in firsts] == ["[base model", "[capitals"]
    # Every answer starts in the same column: after the widest label and one space.
    start = len("[base model]") + 1
    assert all(line[start - 1] == " " and line[start] != " " for line in firsts)


@pytest.mark.parametrize(
    ("models", "said"),
    [
        ("base,capitals,other,untrained,base", "at most 4"),
        ("capitals,nope", "Unknown model 'nope'"),
        ("capitals,other-base", "share one base"),
    ],
)
def test_compare_refusals_exit_1_with_one_line(capsys, eval_workspace, models, said):  # noqa: F811
    code, out, err = cli(capsys, eval_workspace, *compare_args(models, "--json"))
    assert code == 1 and out == ""
    assert said in err and len(err.strip().splitlines()) == 1


def test_compare_needs_a_prompt_and_models(capsys, eval_workspace):  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        cli(capsys, eval_workspace, "compare", "--prompt", PROMPT)
    assert exc.value.code == 2


def test_conversations_list_json_newest_first(capsys, tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    older = ws.create_conversation(title="older", run_id=None)
    ws.add_message(older.id, "user", "hi")
    newer = ws.create_conversation(title="newer", run_id=None)
    for role, text in (("user", "a"), ("assistant", "b")):
        ws.add_message(newer.id, role, text)
    code, out, err = cli(capsys, ws, "conversations", "list", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["id"], r["title"], r["messages"]) for r in rows] == [
        (newer.id, "newer", 2),
        (older.id, "older", 1),
    ]
    assert {"id", "title", "run_id", "messages", "updated_at"} <= set(rows[0])
    assert rows[0]["source"] == "app"
    ws.add_message(older.id, "assistant", "later")  # a new message makes it the newest
    code, out, _ = cli(capsys, ws, "conversations", "list", "--json")
    assert [r["id"] for r in json.loads(out)] == [older.id, newer.id]
    code, out, _ = cli(capsys, ws, "conversations", "list")
    assert code == 0 and out.splitlines()[0].split() == [
        "id",
        "title",
        "run",
        "messages",
        "updated",
    ]
    code, out, err = cli(capsys, ws, "conversations", "list", "--limit", 0)
    assert code == 1 and "--limit" in err


def test_conversations_list_of_an_empty_workspace(capsys, tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    code, out, _ = cli(capsys, ws, "conversations", "list", "--json")
    assert code == 0 and json.loads(out) == []
