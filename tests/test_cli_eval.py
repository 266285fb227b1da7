"""`python -m ff_lib effect | score | replay`: JSON shapes, refusals and exit codes."""

import json

import pytest

from ff_lib.cli import main
from tests.test_effect import zero_b_adapter  # noqa: F401
from tests.test_evaluation import (  # noqa: F401
    _conversation,
    capitals_dataset,
    eval_workspace,
    run_named,
)


def cli(capsys, ws, *args):
    code = main(["--workspace", str(ws.path), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_effect_json_for_an_adapter_folder(capsys, eval_workspace, zero_b_adapter):  # noqa: F811
    code, out, err = cli(capsys, eval_workspace, "effect", "--adapter", zero_b_adapter, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"changed_token_share", "mean_kl", "prompts", "warning"} <= set(data)
    assert data["changed_token_share"] == 0.0 and data["prompts"] == 4
    assert "almost no effect" in data["warning"]


def test_effect_for_a_run_prints_the_share(capsys, eval_workspace):  # noqa: F811
    run = run_named(eval_workspace, "capitals")
    code, out, err = cli(capsys, eval_workspace, "effect", "--run", run.id)
    assert code == 0, err
    assert "adapter changes" in out and "% of tokens" in out
    assert "warning" not in err
    stored = eval_workspace.get_run(run.id).metrics["effect"]
    assert stored["changed_token_share"] > 0.5


def test_effect_needs_a_run_or_an_adapter(capsys, eval_workspace):  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        cli(capsys, eval_workspace, "effect")
    assert exc.value.code == 2


def test_score_json_and_refusal(capsys, eval_workspace):  # noqa: F811
    ws = eval_workspace
    run, ds = run_named(ws, "capitals"), capitals_dataset(ws)
    args = ("score", "--run", run.id, "--dataset", ds.id, "-n", 2, "--max-new-tokens", 24)
    code, out, err = cli(capsys, ws, *args, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["run_id"] == run.id and len(data["rows"]) == 2
    assert data["summary"]["means"]["run"]["exact_match"] == 1.0
    code, out, err = cli(capsys, ws, *args, "--compare-run", run_named(ws, "other-base").id)
    assert code == 1 and "same base model" in err and out == ""
    code, out, err = cli(capsys, ws, *args, "--compare-run", "no-such-run")
    assert code == 1 and "Unknown run 'no-such-run'" in err and out == ""


def test_score_table_for_people(capsys, eval_workspace):  # noqa: F811
    ws = eval_workspace
    run, ds = run_named(ws, "capitals"), capitals_dataset(ws)
    code, out, err = cli(
        capsys, ws, "score", "--run", run.id, "--dataset", ds.id, "-n", 1, "--max-new-tokens", 24
    )
    assert code == 0, err
    assert "EXACT MATCH" in out and "capitals" in out and "stored" in out
    assert "2/2 done" in err  # the progress bar (1 row x 2 models), on stderr


def test_replay_json(capsys, eval_workspace, host):  # noqa: F811
    ws = eval_workspace
    cid = _conversation(ws, host, run_named(ws, "capitals"), ["What is the capital of Peru?"])
    code, out, err = cli(capsys, ws, "replay", cid, "--run", run_named(ws, "other").id, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["conversation_id"] == cid and data["run_name"] == "other"
    assert data["turns"][0]["original"] == "The capital of Peru is Lima."
    assert data["turns"][0]["replayed"]
    code, out, err = cli(capsys, ws, "replay", "no-such-id", "--run", 1)
    assert code == 1 and "no conversation" in err


def test_score_with_repeated_compare_runs_json_keys(capsys, eval_workspace):  # noqa: F811
    ws = eval_workspace
    run, ds = run_named(ws, "capitals"), capitals_dataset(ws)
    others = [run_named(ws, "other").id, run_named(ws, "untrained").id]
    code, out, err = cli(
        capsys,
        ws,
        "score",
        "--run",
        run.id,
        "--dataset",
        ds.id,
        "-n",
        1,
        "--max-new-tokens",
        8,
        "--compare-run",
        others[0],
        "--compare-run",
        "untrained",
        "--json",
    )  # fmt: skip  (an id, a name)
    assert code == 0, err
    data = json.loads(out)
    assert {"id", "run_id", "dataset_id", "created_at", "status", "summary", "rows"} <= set(data)
    assert data["status"] == "complete"
    models = data["summary"]["models"]
    assert list(models) == ["base", "run", "compare", "compare_2"]
    assert [models[k]["run_id"] for k in ("compare", "compare_2")] == others
    assert set(data["rows"][0]["answers"]) == set(models) == set(data["summary"]["means"])


class _StoppingHost:
    """The real host, but the scoring stops (as Ctrl-C would) after `after` answers."""

    def __init__(self, host, after):
        self.host, self.after = host, after

    def stream_reply(self, *args, **kwargs):
        stream, outer = self.host.stream_reply(*args, **kwargs), self

        class Stopping:
            job = stream.job

            def prepare(self):
                return stream.prepare()

            def start(self):
                return stream.start()

            def text(self):
                outer.after -= 1
                if outer.after < 0:
                    raise KeyboardInterrupt
                return stream.text()

            def close(self):
                return stream.close()

        return Stopping()


def test_score_resume_completes_an_interrupted_scorecard(capsys, eval_workspace, host):  # noqa: F811
    from ff_lib import scorecards

    ws = eval_workspace
    run, ds = run_named(ws, "capitals"), capitals_dataset(ws)
    with pytest.raises(KeyboardInterrupt):
        scorecards.score_run(_StoppingHost(host, 3), ws, run.id, ds.id, n=2, max_new_tokens=8)
    card = ws.list_scorecards(run.id)[0]
    assert card.status == "interrupted" and len(ws.scorecard_rows(card.id)) == 3
    code, out, err = cli(capsys, ws, "score", "--resume", card.id, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["id"] == card.id and data["status"] == "complete" and len(data["rows"]) == 2
    assert data["summary"]["settings"]["max_new_tokens"] == 8  # the scorecard's own settings
    code, out, err = cli(capsys, ws, "score", "--resume", card.id)
    assert code == 1 and "nothing to resume" in err
    code, out, err = cli(capsys, ws, "score", "--resume", card.id, "--dataset", ds.id)
    assert code == 1 and "leave out --dataset" in err
    code, out, err = cli(capsys, ws, "score", "--run", run.id)
    assert code == 1 and "needs --dataset" in err
    with pytest.raises(SystemExit) as exc:
        cli(capsys, ws, "score", "--run", run.id, "--resume", card.id)
    assert exc.value.code == 2  # one or the other


def test_an_error_after_progress_starts_a_line_of_its_own(capsys, eval_workspace, monkeypatch):  # noqa: F811
    """replay stops at its second turn: the bar's line ends before the error, which read
    "[####....] 1/3 turn 1error: ..." before."""
    from ff_lib import evaluation
    from ff_lib.errors import InvalidInput

    def replay_then_fail(*args, progress=None, **kwargs):
        progress(1, 3, "turn 1")
        raise InvalidInput("Max new tokens (544) is too much: lower it.")

    monkeypatch.setattr(evaluation, "replay_conversation", replay_then_fail)
    code, out, err = cli(capsys, eval_workspace, "replay", "any", "--run", 1)
    assert code == 1 and out == ""
    assert "1/3 turn 1" in err and "\nerror: Max new tokens (544)" in err
