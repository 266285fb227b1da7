"""N-way compare: which models may sit beside a run, one batched pass whose greedy answers equal
each model answering alone, every side stored with its provenance, and older replies read alike."""

import dataclasses
import json
import threading
from types import SimpleNamespace

import pytest

from ff_lib import compare
from ff_lib.chat import ChatTurn, export_jsonl, export_markdown, export_text, stop_turn, turn_meta
from ff_lib.chat.compared import NOT_ANSWERED, STOPPED_NOTE, compared_sides
from ff_lib.chat.history import ChatMessage
from ff_lib.errors import InvalidInput
from ff_lib.inference import PRESETS
from ff_lib.runs import check_run
from tests.test_chat_recorder import FakeStream, FakeWorkspace
from tests.test_chat_turn import GatedStream
from tests.test_effect import zero_b_adapter  # noqa: F401  (session fixture)
from tests.test_evaluation import eval_workspace, run_named  # noqa: F401  (session fixture)

GREEDY = dataclasses.replace(PRESETS["Deterministic"], max_new_tokens=16)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def main_check(ws, name="capitals"):
    run = run_named(ws, name)
    return check_run(run, run.base_model)


# --- one batched pass ---------------------------------------------------------------------------
def test_every_side_answers_in_one_batched_pass_equal_to_each_alone(eval_workspace, host):  # noqa: F811
    ws = eval_workspace
    specs = ["capitals", "base", "other", str(run_named(ws, "untrained").id)]
    sides = compare.resolve_models(ws, specs)
    assert [s.label for s in sides] == ["capitals", "base model", "other", "untrained"]
    host.generate(sides[0].base_model, QUESTION, GREEDY, None)  # the base is loaded first
    host._engine.scheduler.max_batch_seen = 0

    together = compare.answer_together(host, sides, QUESTION, GREEDY)

    assert host._engine.scheduler.max_batch_seen >= len(sides)  # all four in one batch
    alone = [host.generate(s.base_model, QUESTION, GREEDY, s.adapter_path) for s in sides]
    assert [r.text for r in together] == [r.text for r in alone]
    assert together[0].text != together[1].text  # the adapter answers, not the base
    assert [r.adapter for r in together][1] is None


# --- which models may be compared --------------------------------------------------------------
def test_choices_are_the_base_and_runs_on_the_same_base_with_the_broken_ones_marked(
    eval_workspace,  # noqa: F811
):
    ws = eval_workspace
    main = main_check(ws)
    failed = SimpleNamespace(id=99, name="diverged", status="failed", base_model=main.base_model,
                             adapter_path=None)  # fmt: skip
    choices = compare.compare_choices(main, [*ws.list_runs(), failed])
    keys = [c.key for c in choices]
    assert keys[0] == compare.BASE
    assert run_named(ws, "other").id in keys and run_named(ws, "untrained").id in keys
    assert main.run_id not in keys  # already the first column
    assert run_named(ws, "other-base").id not in keys  # another base cannot share the batch
    refused = next(c for c in choices if c.key == 99)
    assert not refused.ok and refused.label.startswith("✗ diverged (run 99)")
    assert "failed" in refused.reason


def test_compare_sides_refuses_what_cannot_sit_beside_the_run(eval_workspace):  # noqa: F811
    ws = eval_workspace
    main = main_check(ws)
    other, untrained = run_named(ws, "other").id, run_named(ws, "untrained").id
    sides = compare.compare_sides(ws, main, [compare.BASE, other])
    assert [(s.label, s.adapter_dir is None) for s in sides] == [
        ("base model", True),
        ("other", False),
    ]
    with pytest.raises(InvalidInput, match="at most 3"):
        compare.compare_sides(ws, main, [compare.BASE, other, untrained, 12345])
    with pytest.raises(InvalidInput, match="twice"):
        compare.compare_sides(ws, main, [other, other])
    with pytest.raises(InvalidInput, match="already the first column"):
        compare.compare_sides(ws, main, [main.run_id])
    with pytest.raises(InvalidInput, match="not .*share one base"):
        compare.compare_sides(ws, main, [run_named(ws, "other-base").id])


def test_resolve_models_refusals(eval_workspace):  # noqa: F811
    ws = eval_workspace
    with pytest.raises(InvalidInput, match="at most 4"):
        compare.resolve_models(ws, ["base", "capitals", "other", "untrained", "base"])
    with pytest.raises(InvalidInput, match="Unknown model 'nope'"):
        compare.resolve_models(ws, ["capitals", "nope"])
    with pytest.raises(InvalidInput, match="share one base"):
        compare.resolve_models(ws, ["capitals", "other-base"])
    with pytest.raises(InvalidInput, match="No base model"):
        compare.resolve_models(ws, ["base"])
    by_id = compare.resolve_models(ws, [str(run_named(ws, "other").id), "base"])
    assert [s.label for s in by_id] == ["other", "base model"]


# --- storing every side ------------------------------------------------------------------------
SIDES = [
    {"label": "base model", "run_id": None, "adapter": None},
    {"label": "other", "run_id": 2, "adapter": "/runs/other/adapter"},
    {"label": "third", "run_id": 3, "adapter": "/runs/third/adapter"},
]


def three_way_turn(ws) -> ChatTurn:
    run_meta = {"run": {"id": 1, "name": "capitals"}}
    meta = turn_meta(run_meta, "base", "/a", {"temperature": 0.0})
    return ChatTurn(ws, None, "Capital?", meta=meta, run_meta=run_meta, run_id=1, sides=SIDES)


def test_a_compared_turn_stores_every_side_with_its_provenance_in_order():
    ws = FakeWorkspace()
    turn = three_way_turn(ws)
    list(turn.reply_pieces(FakeStream(["Paris"])))
    for i, text in enumerate(["Lyon", "Paris is", "Rome"]):
        list(turn.side_pieces(i, FakeStream([text])))
    turn.close()
    stored = ws.rows[turn.reply_id]["meta"]["compare_replies"]
    assert [(s["label"], s["run_id"], s["adapter"]) for s in stored] == [
        (s["label"], s["run_id"], s["adapter"]) for s in SIDES
    ]
    assert [(s["text"], s["status"]) for s in stored] == [
        ("Lyon", "complete"),
        ("Paris is", "complete"),
        ("Rome", "complete"),
    ]


def test_stop_during_a_side_keeps_its_partial_text_and_marks_the_unasked_one():
    ws = FakeWorkspace()
    turn = three_way_turn(ws)
    second, started = GatedStream(["the", " the", " the"], free=2), threading.Event()

    def page():
        try:
            list(turn.reply_pieces(FakeStream(["Paris"])))
            list(turn.side_pieces(0, FakeStream(["Lyon"])))
            for i, _ in enumerate(turn.side_pieces(1, second)):
                if i == 1:
                    started.set()
        finally:
            turn.close()

    thread = threading.Thread(target=page)
    thread.start()
    assert started.wait(5)
    threading.Timer(0.1, second.gate.set).start()
    shown = stop_turn(turn.reply_id, wait_s=5)
    thread.join(5)
    sides = shown.meta["compare_replies"]
    assert [(s["text"], s["status"]) for s in sides] == [
        ("Lyon", "complete"),
        ("the the", "interrupted"),
        ("", NOT_ANSWERED),
    ]
    assert sides[2]["note"] == STOPPED_NOTE
    assert ws.rows[turn.reply_id]["meta"]["compare_replies"] == sides
    assert second.closed


# --- reading and exporting ---------------------------------------------------------------------
OLD_BASE = {"text": "Base says hi", "status": "complete", "adapter": None,
            "stats": {"new_tokens": 3, "tokens_per_s": 30.0}}  # fmt: skip
THREE_WAY = {
    "run": {"id": 1, "name": "capitals"},
    "adapter": "/a",
    "compare_replies": [
        {**SIDES[0], "text": "Lyon", "status": "complete",
         "meta": {"adapter": None, "stats": {"new_tokens": 1, "tokens_per_s": 9.0}}},
        {**SIDES[1], "text": "Paris is", "status": "interrupted", "meta": {}},
        {**SIDES[2], "text": "", "status": NOT_ANSWERED, "note": STOPPED_NOTE, "meta": {}},
    ],
}  # fmt: skip
HISTORY = [
    ChatMessage("user", "Capital?"),
    ChatMessage("assistant", "Paris", meta=THREE_WAY),
    ChatMessage("user", "Old?"),
    ChatMessage("assistant", "Madrid", meta={"adapter": "/a", "base_reply": OLD_BASE}),
]


def test_an_older_base_reply_reads_as_one_base_side():
    (side,) = compared_sides(HISTORY[3].meta)
    assert (side["label"], side["run_id"], side["adapter"]) == ("base model", None, None)
    assert (side["text"], side["status"]) == ("Base says hi", "complete")
    assert side["meta"]["stats"] == OLD_BASE["stats"]


def test_text_and_markdown_exports_keep_every_side():
    text = export_text(HISTORY)
    assert "Base model response:\nLyon\n-- 1 tokens · 9.0 tokens/s · base model" in text
    assert "other response [interrupted]:\nParis is" in text
    assert f"third response [not answered: {STOPPED_NOTE}]:" in text
    assert "Base model response:\nBase says hi" in text  # the older shape
    md = export_markdown(HISTORY)
    assert md.index("### Base model response") < md.index("### other response [interrupted]")
    assert "### third response [not answered" in md


def test_jsonl_carries_each_sides_provenance():
    lines = [json.loads(line) for line in export_jsonl(HISTORY).decode().splitlines()]
    sides = lines[1]["compare_replies"]
    assert [(s["label"], s["run_id"], s["adapter"], s["status"]) for s in sides] == [
        ("base model", None, None, "complete"),
        ("other", 2, "/runs/other/adapter", "interrupted"),
        ("third", 3, "/runs/third/adapter", NOT_ANSWERED),
    ]
    old = lines[3]["compare_replies"]
    assert [(s["label"], s["text"]) for s in old] == [("base model", "Base says hi")]
    assert "base_reply" not in lines[3]  # one shape in the file
