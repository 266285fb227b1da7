"""Blind A/B votes: storage (migration m006_votes), the Wilson tally, the DPO export, the
`votes` CLI. No model: votes are stored directly (the page's AppTest generates real answers)."""

import json
import random

import duckdb
import pytest

from ff_lib.cli import main
from ff_lib.data import Workspace
from ff_lib.data.migrations import migrate
from ff_lib.errors import InvalidInput
from ff_lib.runs import RunCheck
from ff_lib.votes import (
    BlindPair,
    between,
    blind_pair,
    check_pair,
    dpo_export,
    tally,
    tally_table,
    wilson_interval,
)

BASE = {"key": "base", "label": "base model", "run_id": None, "adapter": None}
RUN = {"key": "run:7", "label": "capitals-lora (run 7)", "run_id": 7, "adapter": "/a/adapter"}


def vote(ws, verdict, prompt="Capital of France?", a=RUN, b=BASE, answer_a="Paris",
         answer_b="Lyon"):  # fmt: skip
    return ws.add_vote(prompt=prompt, answer_a=answer_a, answer_b=answer_b, model_a=a,
                       model_b=b, swapped=a is BASE, verdict=verdict,
                       meta_a={"adapter_sha256": "abc", "seed": 1},
                       meta_b={"adapter_sha256": None, "seed": 2})  # fmt: skip


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(tmp_path / "w")


def test_m006_creates_the_votes_table_on_a_blank_database():
    con = duckdb.connect(":memory:")
    assert "m006_votes" in migrate(con)
    columns = {r[0] for r in con.execute("DESCRIBE votes").fetchall()}
    assert {"prompt", "answer_a", "answer_b", "model_a", "model_b", "swapped", "verdict",
            "meta_a", "meta_b", "created_at"} <= columns  # fmt: skip
    with pytest.raises(duckdb.ConstraintException):  # the verdict is checked by the schema too
        con.execute(
            "INSERT INTO votes (prompt, answer_a, answer_b, model_a, model_b, swapped, verdict, "
            "created_at) VALUES ('p', 'a', 'b', '{}', '{}', false, 'maybe', now()::TIMESTAMP)"
        )


def test_a_vote_is_stored_with_both_answers_and_provenance(ws):
    stored = vote(ws, "a")
    again = ws.list_votes()
    assert again == [stored]
    v = again[0]
    assert (v.prompt, v.answer_a, v.answer_b, v.verdict) == ("Capital of France?", "Paris",
                                                              "Lyon", "a")  # fmt: skip
    assert v.model_a == RUN and v.model_b == BASE and v.swapped is False
    assert v.meta_a["adapter_sha256"] == "abc" and v.meta_b["seed"] == 2
    assert v.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("change", "said"),
    [({"verdict": "maybe"}, "unknown verdict"), ({"prompt": "  "}, "prompt of a vote"),
     ({"answer_b": None}, "answer B"), ({"model_a": "capitals"}, "model A")],
)  # fmt: skip
def test_a_bad_vote_is_refused_and_nothing_is_stored(ws, change, said):
    fields = {"prompt": "p", "answer_a": "x", "answer_b": "y", "model_a": RUN, "model_b": BASE,
              "swapped": False, "verdict": "a", "meta_a": {}, "meta_b": {}}  # fmt: skip
    with pytest.raises(InvalidInput, match=said):
        ws.add_vote(**{**fields, **change})
    assert ws.list_votes() == []


def test_wilson_interval_numbers():
    lo, hi = wilson_interval(8, 10)  # the textbook case: 8 of 10 -> [0.4902, 0.9433]
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and round(hi, 4) == 0.4345
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(50, 100)
    assert round(lo, 4) == 0.4038 and round(hi, 4) == 0.5962


def test_tally_counts_wins_from_either_side_and_leaves_ties_out_of_the_rate(ws):
    vote(ws, "a")  # the run shown as A wins
    vote(ws, "b", a=BASE, b=RUN)  # the run shown as B wins
    vote(ws, "a", a=BASE, b=RUN)  # the base wins
    vote(ws, "tie")
    vote(ws, "both_bad")
    rows = {r.key: r for r in tally(ws.list_votes())}
    run, base = rows["run:7"], rows["base"]
    assert (run.wins, run.losses, run.ties, run.both_bad) == (2, 1, 1, 1)
    assert (base.wins, base.losses, base.ties, base.both_bad) == (1, 2, 1, 1)
    assert run.win_rate == pytest.approx(2 / 3)  # ties and both bad left out of the rate
    assert run.interval == wilson_interval(2, 3)
    table = tally_table(tally(ws.list_votes()))
    assert table[0]["Model"] == "capitals-lora (run 7)" and table[0]["Win rate"] == "67%"
    other = {"key": "run:9", "label": "pirate (run 9)", "run_id": 9, "adapter": "/p"}
    vote(ws, "a", a=other, b=BASE)
    assert len(between(ws.list_votes(), ["base", "run:7"])) == 5


def test_dpo_export_has_exactly_prompt_chosen_rejected_and_counts_what_it_left_out(ws):
    vote(ws, "a", answer_a="Paris", answer_b="Lyon")
    vote(ws, "b", prompt="2+2?", a=BASE, b=RUN, answer_a="5", answer_b="4")
    vote(ws, "tie")
    vote(ws, "both_bad")
    vote(ws, "both_bad")
    export = dpo_export(ws.list_votes())
    lines = export.jsonl().decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
    assert rows == [
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
    ]
    assert (export.ties, export.both_bad) == (1, 2)
    assert export.summary("f.jsonl") == (
        "wrote 2 preference pairs to f.jsonl; left out 1 tie(s) and 2 “both bad”"
    )


def test_a_vote_between_identical_answers_is_no_preference_pair(ws):
    vote(ws, "a", answer_a="Manila.", answer_b="Manila. ")  # the same answer on both sides
    vote(ws, "b", answer_a="Paris", answer_b="Lyon")
    export = dpo_export(ws.list_votes())
    rows = [json.loads(line) for line in export.jsonl().decode("utf-8").splitlines()]
    assert rows == [{"prompt": "Capital of France?", "chosen": "Lyon", "rejected": "Paris"}]
    assert export.same == 1
    assert export.summary("f.jsonl") == (
        "wrote 1 preference pair to f.jsonl; left out 0 tie(s) and 0 “both bad”, and 1 vote(s) "
        "between identical answers"
    )


class FakeReply:
    def __init__(self, text):
        self.text = text

    def as_meta(self):
        return {"text_was": self.text}


class FakeHost:
    def __init__(self):
        self.jobs = []

    def generate_many(self, jobs):
        self.jobs.append(jobs)
        return [FakeReply(f"answer {i}") for i in range(len(jobs))]


def checks():
    first = RunCheck(True, "", 7, "capitals-lora", "completed", "/a/adapter", "tiny")
    second = RunCheck(True, "", None, "base model", "", None, "tiny")
    return [first, second]


@pytest.mark.parametrize("seed", range(6))
def test_blind_pair_answers_in_one_batch_and_records_the_shuffle(seed):
    host = FakeHost()
    pair = blind_pair(host, checks(), "Capital of France?", settings=None,
                      rng=random.Random(seed))  # fmt: skip
    assert len(host.jobs) == 1 and len(host.jobs[0]) == 2  # one batched pass, both sides
    first = "a" if not pair.swapped else "b"
    model = pair.model_a if first == "a" else pair.model_b
    answer = pair.answer_a if first == "a" else pair.answer_b
    assert model["key"] == "run:7" and answer == "answer 0"
    assert getattr(pair, f"meta_{first}") == {"text_was": "answer 0"}


def test_both_sides_are_shown_first_over_many_prompts():
    rng = random.Random(1)
    swaps = {blind_pair(FakeHost(), checks(), "p", None, rng=rng).swapped for _ in range(20)}
    assert swaps == {True, False}


def test_a_pair_must_be_two_different_models_that_can_answer():
    run, base = checks()
    with pytest.raises(InvalidInput, match="same model"):
        check_pair([run, run])
    with pytest.raises(InvalidInput, match="two models, not 1"):
        check_pair([run])
    with pytest.raises(InvalidInput, match="prompt is empty"):
        blind_pair(FakeHost(), [run, base], "  ", None)
    refused = RunCheck(False, "Run 'x' failed.", 8, "x", "failed")
    with pytest.raises(InvalidInput, match="Run 'x' failed"):
        check_pair([run, refused])
    pair = BlindPair("p", "x", "y", RUN, BASE, False)
    with pytest.raises(InvalidInput, match="Unknown verdict"):
        pair.vote_fields("maybe")
    assert pair.vote_fields("tie")["verdict"] == "tie"


# --- the command line -------------------------------------------------------------------------
def cli(capsys, ws, *args):
    code = main(["--workspace", str(ws.path), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_votes_export_dpo_writes_jsonl_and_a_summary_line(capsys, ws, tmp_path):
    vote(ws, "a")
    vote(ws, "tie")
    vote(ws, "both_bad")
    target = tmp_path / "pairs.jsonl"
    code, out, err = cli(capsys, ws, "votes", "export", "--format", "dpo", target)
    assert code == 0, err
    assert out.strip() == f"wrote 1 preference pair to {target}; left out 1 tie(s) and 1 “both bad”"
    rows = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert rows == [{"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"}]


def test_votes_export_refusals_exit_1_with_one_line(capsys, ws, tmp_path):
    vote(ws, "tie")
    target = tmp_path / "pairs.jsonl"
    code, out, err = cli(capsys, ws, "votes", "export", "--format", "dpo", target)
    assert code == 1 and out == "" and not target.exists()
    assert "No vote with a winner" in err and len(err.strip().splitlines()) == 1
    vote(ws, "a")
    code, out, err = cli(capsys, ws, "votes", "export", "--format", "dpo",
                         tmp_path / "missing" / "x.jsonl")  # fmt: skip
    assert code == 1 and "Cannot write" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [("votes", "export", "f.jsonl"),
                                  ("votes", "export", "--format", "csv", "f.jsonl"),
                                  ("votes",)])  # fmt: skip
def test_votes_usage_errors_exit_2(capsys, ws, args):
    with pytest.raises(SystemExit) as exc:
        cli(capsys, ws, *args)
    assert exc.value.code == 2


def test_votes_list_json_and_table(capsys, ws):
    code, out, _ = cli(capsys, ws, "votes", "list", "--json")
    assert code == 0 and json.loads(out) == []
    vote(ws, "a")
    vote(ws, "b", a=BASE, b=RUN)
    code, out, err = cli(capsys, ws, "votes", "list", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["verdict"] for r in rows] == ["a", "b"]
    assert rows[0]["a"]["model"] == RUN and rows[0]["b"]["answer"] == "Lyon"
    assert rows[0]["a"]["meta"]["adapter_sha256"] == "abc" and rows[1]["swapped"] is True
    code, out, err = cli(capsys, ws, "votes", "list")
    assert code == 0, err
    assert "A better" in out and "B better" in out
    assert "capitals-lora (run 7)" in out and "100%" in out and "left out" in out
