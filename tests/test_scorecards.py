"""Scorecards stored in batches as they are made, interrupted and resumed, several runs compared.

A fake host answers instantly (each answer names its adapter and prompt) so these tests count
the workspace writes and the answers generated, not the model's speed.
"""

from pathlib import Path

import pytest

from ff_lib import scorecards
from ff_lib.data import Workspace
from ff_lib.errors import InvalidInput
from tests.fixtures_models import CAPITAL_PAIRS


class FakeStream:
    def __init__(self, host, text, job):
        self.host, self._text, self.job = host, text, job

    def prepare(self):
        return self

    def start(self):
        return self

    def text(self):
        self.host.read += 1
        if self.host.stop_after is not None and self.host.read > self.host.stop_after:
            raise KeyboardInterrupt  # what a closed tab or Ctrl-C does mid-scorecard
        return self._text

    def close(self):
        return None


class FakeHost:
    """stream_reply answers 'adapter-name: prompt' (the base: 'base: prompt')."""

    def __init__(self, stop_after=None):
        self.asked: list[tuple[str, str]] = []
        self.read, self.stop_after = 0, stop_after

    def stream_reply(self, base_model, messages, settings, adapter_dir, quantization="auto"):
        who = "base" if adapter_dir is None else Path(adapter_dir).name
        prompt = messages[-1]["content"]
        self.asked.append((who, prompt))
        job = {"base_model": base_model, "quantization": quantization}
        return FakeStream(self, f"{who}: {prompt}", job)


class SpyWorkspace:
    """A workspace that counts its answer writes (each one opens the DuckDB file)."""

    def __init__(self, ws):
        self._ws, self.writes = ws, []

    def add_scorecard_rows(self, scorecard_id, answers):
        self.writes.append(len(answers))
        return self._ws.add_scorecard_rows(scorecard_id, answers)

    def __getattr__(self, name):
        return getattr(self._ws, name)


def _adapter(folder: Path) -> str:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(
        '{"base_model_name_or_path": "tiny", "peft_type": "LORA", "r": 2, "lora_alpha": 4,'
        ' "target_modules": ["q_proj"]}'
    )
    (folder / "adapter_model.safetensors").write_bytes(b"weights-" + folder.name.encode())
    return str(folder)


@pytest.fixture
def card_ws(tmp_path, monkeypatch):
    _validating(monkeypatch)
    ws = Workspace.open(tmp_path / "ws")
    ds = ws.add_dataset("capitals", CAPITAL_PAIRS, source="test")
    ids = {}
    for name in ("main", "second", "third"):
        ids[name] = ws.add_run(name, "tiny", _adapter(tmp_path / name)).id
    return ws, ds.id, ids


def _validating(monkeypatch):
    """The fake adapters pass validation without weights (the engine is never called)."""
    from ff_lib import runs

    real = runs.check_run

    def check(run, base_model=None, validate=None):
        return real(run, base_model, lambda path, base_model=None: _ok(path, base_model))

    monkeypatch.setattr(runs, "check_run", check)


def _ok(path, base_model):
    from ff_lib.inference.adapters import AdapterCheck

    return AdapterCheck(True, "ok", str(path), adapter_dir=str(path), base_model=base_model)


def test_answers_are_stored_in_batches_not_one_write_per_answer(card_ws, monkeypatch):
    ws, ds, ids = card_ws
    spy = SpyWorkspace(ws)
    monkeypatch.setattr(scorecards, "ROWS_PER_WRITE", 16)
    monkeypatch.setattr(scorecards, "WRITE_SECONDS", 3600.0)  # counted by rows only here
    card = scorecards.score_run(FakeHost(), spy, ids["main"], ds, n=10,
                                compare_run_ids=[ids["second"], ids["third"]])  # fmt: skip
    # 10 rows x 4 models = 40 answers: 16 + 16 + 8, three writes (not 40).
    assert spy.writes == [16, 16, 8]
    assert card.status == "complete" and len(card.rows) == 10
    assert len(ws.scorecard_rows(card.id)) == 40


def test_a_slow_scorecard_writes_every_two_seconds(card_ws):
    ws, ds, ids = card_ws
    card = ws.start_scorecard(ids["main"], ds, {"n": 1, "models": {}})
    spy = SpyWorkspace(ws)
    now = [0.0]
    buffer = scorecards.AnswerBuffer(spy, card.id, every=100, seconds=2.0, clock=lambda: now[0])
    answer = {"model": "base", "prompt": "p", "expected": "e", "answer": "a", "scores": {}}
    for i in range(5):
        now[0] += 0.9  # an answer every 0.9 s: written at 2.7 s (3 answers), then held
        buffer.add({**answer, "ordinal": i})
    assert spy.writes == [3]
    buffer.flush()
    assert spy.writes == [3, 2]


def test_several_compared_runs_get_keys_labels_and_means(card_ws):
    ws, ds, ids = card_ws
    card = scorecards.score_run(FakeHost(), ws, ids["main"], ds, n=3,
                                compare_run_ids=[ids["second"], ids["third"]])  # fmt: skip
    models = card.summary["models"]
    assert list(models) == ["base", "run", "compare", "compare_2"]  # old keys kept first
    assert [m["run_id"] for m in models.values()] == [None, ids["main"], ids["second"],
                                                       ids["third"]]  # fmt: skip
    assert card.rows[0]["answers"]["compare_2"] == f"third: {CAPITAL_PAIRS[0][0]}"
    assert [m["Model"] for m in scorecards.scorecard_means(card)][2:] == [
        models["compare"]["label"],
        models["compare_2"]["label"],
    ]
    assert {m["Metric"] for m in scorecards.means_long(card)} == {
        "Exact match",
        "Token F1",
        "ROUGE-L",
    }


def test_refusals_name_the_problem(card_ws, tmp_path):
    ws, ds, ids = card_ws
    with pytest.raises(InvalidInput, match="twice"):
        scorecards.score_run(FakeHost(), ws, ids["main"], ds, n=1,
                             compare_run_ids=[ids["second"], ids["second"]])  # fmt: skip
    with pytest.raises(InvalidInput, match="being scored"):
        scorecards.score_run(FakeHost(), ws, ids["main"], ds, n=1, compare_run_ids=[ids["main"]])
    failed = ws.add_run("failed", "tiny", str(tmp_path / "main"), status="failed").id
    with pytest.raises(InvalidInput, match="only a completed run has an adapter"):
        scorecards.score_run(FakeHost(), ws, ids["main"], ds, n=1, compare_run_ids=[failed])
    elsewhere = ws.add_run("elsewhere", "other-base", _adapter(tmp_path / "elsewhere")).id
    with pytest.raises(InvalidInput, match="same base model"):
        scorecards.score_run(FakeHost(), ws, ids["main"], ds, n=1, compare_run_ids=[elsewhere])
    assert ws.list_scorecards() == []  # refused before any scorecard was started


def test_an_interrupted_scorecard_keeps_its_rows_and_resumes_only_the_missing(card_ws):
    ws, ds, ids = card_ws
    with pytest.raises(KeyboardInterrupt):
        scorecards.score_run(FakeHost(stop_after=7), ws, ids["main"], ds, n=4,
                             compare_run_ids=[ids["second"]])  # fmt: skip
    card = ws.list_scorecards(ids["main"])[0]
    assert card.status == "interrupted"
    stored = {(a["model"], a["ordinal"]) for a in ws.scorecard_rows(card.id)}
    assert len(stored) == 7  # base x4, run x3: every finished answer kept
    assert card.rows == []  # no row has all three models yet
    host = FakeHost()
    done = scorecards.resume_scorecard(host, ws, card.id)
    # 12 answers in all, 7 stored: only the 5 missing are generated.
    assert host.asked == [("main", CAPITAL_PAIRS[3][0])] + [
        ("second", p) for p, _ in CAPITAL_PAIRS[:4]
    ]
    assert done.status == "complete" and len(done.rows) == 4
    assert done.rows[0]["answers"] == {
        "base": f"base: {CAPITAL_PAIRS[0][0]}",
        "run": f"main: {CAPITAL_PAIRS[0][0]}",
        "compare": f"second: {CAPITAL_PAIRS[0][0]}",
    }
    with pytest.raises(InvalidInput, match="nothing to resume"):
        scorecards.resume_scorecard(host, ws, card.id)


def test_a_changed_adapter_is_not_resumed_into_the_same_scorecard(card_ws, tmp_path):
    ws, ds, ids = card_ws
    with pytest.raises(KeyboardInterrupt):
        scorecards.score_run(FakeHost(stop_after=1), ws, ids["main"], ds, n=2)
    card = ws.list_scorecards(ids["main"])[0]
    (tmp_path / "main" / "adapter_model.safetensors").write_bytes(b"retrained")
    with pytest.raises(InvalidInput, match="adapter changed"):
        scorecards.resume_scorecard(FakeHost(), ws, card.id)


def test_disagreement_filter_keeps_rows_whose_answers_differ():
    class Card:
        summary = {"models": {"base": {"label": "base model"}, "run": {"label": "r"}}}
        scores = {"exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0}
        rows = [
            {"prompt": "same", "expected": "x", "answers": {"base": "a ", "run": "a"},
             "scores": {"base": scores, "run": scores}},
            {"prompt": "differ", "expected": "x", "answers": {"base": "a", "run": "b"},
             "scores": {"base": scores, "run": scores}},
        ]  # fmt: skip

    assert [r["Prompt"] for r in scorecards.scorecard_table(Card)] == ["same", "differ"]
    assert [r["Prompt"] for r in scorecards.scorecard_table(Card, True)] == ["differ"]


def test_an_old_scorecard_with_run_and_compare_still_renders(card_ws):
    ws, ds, ids = card_ws
    scores = {"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0}
    models = {k: {"label": k, "run_id": None} for k in ("base", "run", "compare")}
    old = ws.add_scorecard(
        ids["main"],
        ds,
        {"dataset": {"id": ds, "name": "capitals"}, "n": 1, "models": models,
         "means": dict.fromkeys(models, scores)},
        [{"prompt": "p", "expected": "e", "answers": dict.fromkeys(models, "e"),
          "scores": dict.fromkeys(models, scores)}],
    )  # fmt: skip
    assert old.status == "complete"
    assert [m["Model"] for m in scorecards.scorecard_means(old)] == ["base", "run", "compare"]
    assert scorecards.scorecard_table(old)[0]["compare"] == "e"
