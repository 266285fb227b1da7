"""Scorecards, stored effects, replays without a base reload, and each reply's provenance."""

import hashlib
import json
from pathlib import Path

import pytest

from ff_lib import evaluation
from ff_lib.chat import ReplyRecorder, export_jsonl, load_history
from ff_lib.data import Workspace
from ff_lib.errors import InvalidInput
from ff_lib.inference import PRESETS
from ff_lib.inference.effect import NO_EFFECT_WARNING
from ff_lib.scoring import score_answer
from tests.fixtures_models import CAPITAL_PAIRS
from tests.test_effect import zero_b_adapter  # noqa: F401  (session fixture)

# The model fixtures (tiny_base, capitals_adapter, other_adapter, host) come from
# tests/fixtures_models.py, registered in conftest.py.

# Keeps the base's rambling answers short; the CLI and the page use the preset's 128.
SCORE_TOKENS = 24


_BUILT: dict = {}  # imported into several modules: build once per process, not per module


@pytest.fixture(scope="session")
def eval_workspace(
    tmp_path_factory,
    tiny_base,
    short_context_base,
    capitals_adapter,
    other_adapter,
    zero_b_adapter,  # noqa: F811
):
    """A workspace with the capitals dataset and runs: capitals, other, untrained, other base."""
    if "ws" not in _BUILT:
        ws = Workspace.open(tmp_path_factory.mktemp("eval-ws"))
        ds = ws.add_dataset("capitals", CAPITAL_PAIRS, source="test")
        base = str(tiny_base)
        ws.add_run("capitals", base, str(capitals_adapter), dataset_id=ds.id)
        ws.add_run("other", base, str(other_adapter))
        ws.add_run("untrained", base, str(zero_b_adapter), dataset_id=ds.id)
        ws.add_run("other-base", str(short_context_base), str(other_adapter))
        _BUILT["ws"] = ws
    return _BUILT["ws"]


def run_named(ws, name):
    return next(r for r in ws.list_runs() if r.name == name)


def capitals_dataset(ws):
    return next(d for d in ws.list_datasets() if d.name == "capitals")


# --- scorecards -------------------------------------------------------------------------------
def test_scorecard_capitals_far_above_base(eval_workspace, host):
    ws = eval_workspace
    seen = []
    card = evaluation.score_run(
        host,
        ws,
        run_named(ws, "capitals").id,
        capitals_dataset(ws).id,
        n=6,
        compare_run_ids=[run_named(ws, "other").id],
        max_new_tokens=SCORE_TOKENS,
        progress=lambda done, total, what: seen.append((done, total)),
    )
    means = card.summary["means"]
    assert means["run"]["exact_match"] >= 0.8
    assert means["base"]["exact_match"] == 0.0
    assert means["run"]["token_f1"] > means["base"]["token_f1"] + 0.5
    assert means["compare"]["exact_match"] < 0.5
    assert seen[0] == (0, 18) and seen[-1] == (18, 18)  # 6 rows x 3 models
    # Rows in file order, each scored by the metric functions.
    assert [r["prompt"] for r in card.rows] == [p for p, _ in CAPITAL_PAIRS[:6]]
    for row in card.rows:
        for key, answer in row["answers"].items():
            assert row["scores"][key] == score_answer(answer, row["expected"])
    assert card.summary["settings"]["temperature"] == 0 and card.summary["settings"]["seed"] == 0
    assert card.summary["models"]["run"]["label"] == "capitals"
    # Stored with the run, listed newest first.
    stored = ws.list_scorecards(run_named(ws, "capitals").id)
    assert stored[0].id == card.id and stored[0].summary["means"] == means
    table = evaluation.scorecard_table(card)
    assert set(table[0]) >= {"Prompt", "Expected", "capitals", "capitals F1", "base model EM"}
    assert [m["Model"] for m in evaluation.scorecard_means(card)] == [
        "base model",
        "capitals",
        "other",
    ]


def test_scorecard_is_greedy_and_reproducible(eval_workspace, host):
    ws = eval_workspace
    args = (host, ws, run_named(ws, "capitals").id, capitals_dataset(ws).id)
    first = evaluation.score_run(*args, n=2, max_new_tokens=SCORE_TOKENS)
    second = evaluation.score_run(*args, n=2, max_new_tokens=SCORE_TOKENS)
    assert first.rows == second.rows
    assert first.summary["settings"] == {
        **PRESETS["Deterministic"].as_dict(),
        "seed": 0,
        "max_new_tokens": SCORE_TOKENS,
    }


def test_compare_run_on_another_base_is_refused(eval_workspace, host):
    ws = eval_workspace
    with pytest.raises(InvalidInput, match="same base model"):
        evaluation.score_run(
            host,
            ws,
            run_named(ws, "capitals").id,
            capitals_dataset(ws).id,
            n=2,
            compare_run_ids=[run_named(ws, "other-base").id],
        )


def test_scorecard_refuses_bad_row_counts(eval_workspace, host):
    ws = eval_workspace
    with pytest.raises(InvalidInput, match="between 1 and"):
        evaluation.score_run(host, ws, run_named(ws, "capitals").id, 1, n=0)


# --- effect stored with the run ---------------------------------------------------------------
def test_run_effect_is_stored_and_reused_by_weights_hash(
    eval_workspace,
    host,
    zero_b_adapter,  # noqa: F811
    monkeypatch,
):
    ws = eval_workspace
    run = run_named(ws, "untrained")
    effect = evaluation.run_effect(host, ws, run.id)
    assert effect.warning == NO_EFFECT_WARNING and effect.changed_token_share == 0.0
    # The run's own dataset gave the prompts.
    assert [p.prompt for p in effect.per_prompt] == [p for p, _ in CAPITAL_PAIRS[:4]]
    stored = ws.get_run(run.id).metrics["effect"]
    weights = Path(zero_b_adapter) / "adapter_model.safetensors"
    assert stored["adapter_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert stored["warning"] == NO_EFFECT_WARNING

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although the weights did not change")

    monkeypatch.setattr(evaluation, "measure_effect", no_measuring)
    assert evaluation.run_effect(host, ws, run.id) == effect


# --- replay -----------------------------------------------------------------------------------
def _conversation(ws, host, run, questions):
    """A stored conversation answered by `run`, recorded the way the pages record it."""
    cid = ws.create_conversation("capitals chat", run_id=run.id).id
    history = []
    for question in questions:
        ws.add_message(cid, "user", question)
        history.append({"role": "user", "content": question})
        stream = host.stream_reply(
            run.base_model, history, PRESETS["Deterministic"], Path(run.adapter_path)
        )
        recorder = ReplyRecorder(ws, cid, meta={"run": {"id": run.id, "name": run.name}})
        for _ in recorder.pieces(stream):
            pass
        history.append({"role": "assistant", "content": recorder.text})
    return cid


def test_replay_swaps_the_adapter_without_reloading_the_base(eval_workspace, host):
    ws = eval_workspace
    capitals = run_named(ws, "capitals")
    cid = _conversation(ws, host, capitals, ["What is the capital of France?"])
    loads = host.base_loads
    replay = evaluation.replay_conversation(host, ws, cid, run_named(ws, "other").id)
    assert host.base_loads == loads and replay.base_loads == 0
    assert replay.original_label == "capitals" and replay.run_name == "other"
    (turn,) = replay.turns
    assert turn.original == "The capital of France is Paris."
    assert turn.replayed != turn.original
    # Replaying with the run that answered reproduces its answer (same settings, greedy).
    again = evaluation.replay_conversation(host, ws, cid, capitals.id)
    assert again.turns[0].replayed == again.turns[0].original
    assert again.base_loads == 0


def test_replay_keeps_the_replayed_side_as_history(eval_workspace, host):
    ws = eval_workspace
    capitals = run_named(ws, "capitals")
    questions = ["What is the capital of Japan?", "What is the capital of Peru?"]
    cid = _conversation(ws, host, capitals, questions)
    replay = evaluation.replay_conversation(host, ws, cid, run_named(ws, "other").id)
    assert [t.prompt for t in replay.turns] == questions
    assert replay.turns[1].replayed_meta["run"]["name"] == "other"
    # The second turn saw the replayed run's first answer, not the stored one.
    second_prompt = replay.turns[1].replayed_meta["prompt_text"]
    assert questions[0] in second_prompt
    assert replay.turns[0].original not in second_prompt


def test_replay_on_another_base_is_refused(eval_workspace, host):
    ws = eval_workspace
    cid = _conversation(ws, host, run_named(ws, "capitals"), ["What is the capital of Italy?"])
    with pytest.raises(InvalidInput, match="on that base"):
        evaluation.replay_conversation(host, ws, cid, run_named(ws, "other-base").id)


def test_word_diff_marks_only_changed_words():
    left, right = evaluation.word_diff("The capital is Paris.", "The capital is Rome.")
    assert "".join(t for t, _ in left) == "The capital is Paris."
    assert [t.strip() for t, changed in left if changed] == ["Paris."]
    assert [t.strip() for t, changed in right if changed] == ["Rome."]
    same, _ = evaluation.word_diff("a  b\nc", "a  b\nc")
    assert same == [("a  b\nc", False)]


# --- provenance -------------------------------------------------------------------------------
def test_a_stored_reply_records_everything_it_depended_on(
    eval_workspace,
    host,
    tiny_base,
    capitals_adapter,
):
    ws = eval_workspace
    capitals = run_named(ws, "capitals")
    cid = _conversation(ws, host, capitals, ["What is the capital of Kenya?"])
    reply = load_history(ws, cid)[-1]
    meta = reply.meta
    weights = Path(capitals_adapter) / "adapter_model.safetensors"
    assert meta["run"] == {"id": capitals.id, "name": "capitals"}
    assert meta["adapter"] == str(Path(capitals_adapter).resolve())
    assert meta["adapter_weights"] == str(weights.resolve())
    assert meta["adapter_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["base_model"] == str(tiny_base)
    assert meta["base_source"] == str(Path(tiny_base).resolve())
    assert meta["quantization"] == "float32"
    assert meta["prompt_text"].startswith("<|begin_of_text|>")
    assert "What is the capital of Kenya?" in meta["prompt_text"]
    assert meta["prompt_text"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert meta["settings"] == PRESETS["Deterministic"].as_dict() and "seed" in meta
    assert meta["stats"]["new_tokens"] > 0
    # The JSONL export carries all of it.
    line = json.loads(export_jsonl([reply]).decode().splitlines()[0])
    for key in ("run", "adapter_sha256", "base_source", "prompt_text", "settings", "seed"):
        assert line[key] == meta[key]
