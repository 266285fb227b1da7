"""Did the fine-tune work: a run's adapter effect, scorecards on a dataset, conversation replays.

Orchestrates a ModelHost and a Workspace (no streamlit, no SQL, no torch here): the pages and the
CLI call these functions and render what they return.
"""

import dataclasses
import difflib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import InvalidInput
from ff_lib.inference import PRESETS, GenerationSettings, validate_adapter
from ff_lib.inference.adapters import same_base
from ff_lib.inference.effect import (
    BUILT_IN_PROMPTS,
    EFFECT_MAX_NEW_TOKENS,
    EFFECT_PROMPTS,
    AdapterEffect,
    measure_effect,
)
from ff_lib.inference.provenance import adapter_sha256
from ff_lib.runs import RunCheck, usable_run
from ff_lib.scoring import mean_scores, score_answer

EFFECT_KEY = "effect"  # where a run's effect is stored in its metrics
SCORE_PRESET = "Deterministic"
SCORE_SEED = 0
DEFAULT_SCORE_ROWS = 20
MAX_SCORE_ROWS = 500
# progress(done, total, what): called before each answer and once at the end.
Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, what: str) -> None:
    return None


# --- adapter effect ---------------------------------------------------------------------------
def effect_prompts(ws, run, k: int = EFFECT_PROMPTS) -> list[str]:
    """The first k prompts of the run's own dataset (file order), else the built-in set."""
    if run.dataset_id is not None:
        prompts = [p.prompt for p in ws.dataset_pairs(run.dataset_id, limit=k)]
        if prompts:
            return prompts
    return list(BUILT_IN_PROMPTS[:k])


def stored_effect(run, adapter_dir: Path, base_model: str) -> AdapterEffect | None:
    """The effect stored with the run when it was measured on these weights and this base."""
    data = (run.metrics or {}).get(EFFECT_KEY)
    if not isinstance(data, dict):
        return None
    _, sha = adapter_sha256(adapter_dir)
    if sha is None or data.get("adapter_sha256") != sha:
        return None
    if str(data.get("base_model", "")) != str(base_model):
        return None
    return AdapterEffect.from_dict(data)


def run_effect(
    host,
    ws,
    run_id: int,
    *,
    base_model: str | None = None,
    quantization: str = "auto",
    refresh: bool = False,
) -> AdapterEffect:
    """The run's adapter effect: stored one when the weights' hash matches, else measured+stored."""
    target = usable_run(ws, run_id, base_model)
    if not refresh:
        cached = stored_effect(target.run, target.adapter_path, target.base_model)
        if cached is not None:
            return cached
    effect = measure_effect(
        host,
        target.base_model,
        target.adapter_path,
        effect_prompts(ws, target.run),
        quantization=quantization,
    )
    ws.update_run_metrics(target.run_id, {EFFECT_KEY: effect.as_dict()})
    return effect


_ADAPTER_EFFECTS: dict[tuple, AdapterEffect] = {}


def adapter_effect(
    host, adapter_path, *, base_model: str | None = None, quantization: str = "auto"
) -> AdapterEffect:
    """The effect of an adapter folder outside any run, on the built-in prompts (cached by hash)."""
    check = validate_adapter(adapter_path, base_model=base_model).raise_if_invalid()
    base = (base_model or "").strip() or check.base_model
    if not base:
        raise InvalidInput("No base model: the adapter does not name one; pass --base-model.")
    adapter_dir = Path(check.adapter_dir)
    _, sha = adapter_sha256(adapter_dir)
    key = (sha, str(base), quantization, EFFECT_MAX_NEW_TOKENS)
    if key not in _ADAPTER_EFFECTS:
        _ADAPTER_EFFECTS[key] = measure_effect(
            host, base, adapter_dir, list(BUILT_IN_PROMPTS), quantization=quantization
        )
    return _ADAPTER_EFFECTS[key]


# --- scorecards -------------------------------------------------------------------------------
def score_settings(max_new_tokens: int | None = None) -> GenerationSettings:
    """The Deterministic preset with a fixed seed (greedy: the same answers every time)."""
    settings = dataclasses.replace(PRESETS[SCORE_PRESET], seed=SCORE_SEED)
    if max_new_tokens is not None:
        settings = dataclasses.replace(settings, max_new_tokens=max_new_tokens)
    return settings


def _same_base_or_refuse(main: RunCheck, other: RunCheck) -> None:
    if not same_base(main.base_model, other.base_model):
        raise InvalidInput(
            f"Run {other.run_id} ({other.run_name}) is on base {other.base_model}, not "
            f"{main.base_model}: a comparison needs both runs on the same base model."
        )


def score_run(
    host,
    ws,
    run_id: int,
    dataset_id: int,
    *,
    n: int = DEFAULT_SCORE_ROWS,
    compare_run_id: int | None = None,
    base_model: str | None = None,
    quantization: str = "auto",
    max_new_tokens: int | None = None,
    progress: Progress | None = None,
):
    """Score the base, the run and (optionally) a second run on the first n rows of a dataset.

    Every answer uses the Deterministic preset with a fixed seed; each is scored against the
    row's expected response (exact match, token F1, ROUGE-L). The scorecard is stored in the
    workspace and returned (ff_lib.data.Scorecard).
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SCORE_ROWS:
        raise InvalidInput(f"Rows to score must be between 1 and {MAX_SCORE_ROWS} (got {n!r}).")
    progress = progress or _no_progress
    main = usable_run(ws, run_id, base_model)
    models = _scored_models(ws, main, compare_run_id)
    dataset = ws.get_dataset(dataset_id)
    pairs = ws.dataset_pairs(dataset_id, limit=n)
    if not pairs:
        raise InvalidInput(f"Dataset {dataset.name} has no rows to score.")
    settings = score_settings(max_new_tokens)
    started = time.perf_counter()
    total = len(pairs) * len(models)
    answers = _batched_answers(
        host, main.base_model, models, pairs, settings, quantization, progress
    )
    progress(total, total, "done")

    rows = _score_rows(pairs, models, answers)
    summary = {
        "dataset": {"id": dataset.id, "name": dataset.name},
        "n": len(rows),
        "base_model": main.base_model,
        "preset": SCORE_PRESET,
        "settings": settings.as_dict(),
        "models": {
            key: {
                "label": label,
                "run_id": None if target is None else target.run_id,
                "adapter": None if target is None else target.adapter_dir,
                "adapter_sha256": None
                if target is None
                else adapter_sha256(target.adapter_path)[1],
            }
            for key, label, target in models
        },
        "means": {key: mean_scores(r["scores"][key] for r in rows) for key, _, _ in models},
        "seconds": round(time.perf_counter() - started, 2),
    }
    return ws.add_scorecard(main.run_id, dataset.id, summary, rows)


def _scored_models(ws, main: RunCheck, compare_run_id: int | None) -> list:
    """(key, label, run or None) of each model a scorecard answers with: base, run, compare."""
    models: list[tuple[str, str, RunCheck | None]] = [
        ("base", "base model", None),
        ("run", main.label, main),
    ]
    if compare_run_id is not None:
        if compare_run_id == main.run_id:
            raise InvalidInput("The comparison run is the run being scored: pick another run.")
        other = usable_run(ws, compare_run_id)
        _same_base_or_refuse(main, other)
        models.append(("compare", other.label, other))
    return models


def _score_rows(pairs, models, answers) -> list[dict]:
    rows = []
    for i, pair in enumerate(pairs):
        row_answers = {key: answers[key][i] for key, _, _ in models}
        rows.append(
            {
                "prompt": pair.prompt,
                "expected": pair.response,
                "answers": row_answers,
                "scores": {k: score_answer(a, pair.response) for k, a in row_answers.items()},
            }
        )
    return rows


def _batched_answers(host, base_model, models, pairs, settings, quantization, progress):
    """Every (model, row) answer submitted at once: the engine decodes them in shared batches."""
    order = [(key, label, target, pair) for key, label, target in models for pair in pairs]
    streams = [
        host.stream_reply(
            base_model,
            [{"role": "user", "content": pair.prompt}],
            settings,
            None if target is None else target.adapter_path,
            quantization=quantization,
        )
        for _, _, target, pair in order
    ]
    answers: dict[str, list[str]] = {key: [] for key, _, _ in models}
    try:
        for stream in streams:
            stream.start()
        for done, ((key, label, _, _), stream) in enumerate(zip(order, streams, strict=True)):
            progress(done, len(order), f"{label}: row {len(answers[key]) + 1} of {len(pairs)}")
            answers[key].append(stream.text())
    finally:
        for stream in streams:
            stream.close()
    return answers


def scorecard_table(scorecard) -> list[dict]:
    """One flat dict per row for a table: prompt, expected, then each model's answer and scores."""
    models = scorecard.summary.get("models", {})
    table = []
    for row in scorecard.rows:
        line = {"Prompt": row["prompt"], "Expected": row["expected"]}
        for key, model in models.items():
            label = model["label"]
            scores = row["scores"][key]
            line[f"{label}"] = row["answers"][key]
            line[f"{label} EM"] = scores["exact_match"]
            line[f"{label} F1"] = scores["token_f1"]
            line[f"{label} ROUGE-L"] = scores["rouge_l"]
        table.append(line)
    return table


def scorecard_means(scorecard) -> list[dict]:
    """One dict per model: its label and mean exact match, token F1, ROUGE-L."""
    models = scorecard.summary.get("models", {})
    means = scorecard.summary.get("means", {})
    return [
        {
            "Model": model["label"],
            "Exact match": means[key]["exact_match"],
            "Token F1": means[key]["token_f1"],
            "ROUGE-L": means[key]["rouge_l"],
        }
        for key, model in models.items()
    ]


# --- replay -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayTurn:
    """One user turn answered again: the stored answer and the replayed run's answer."""

    prompt: str
    original: str | None  # None when the stored conversation has no reply to this turn
    replayed: str
    original_meta: dict
    replayed_meta: dict


@dataclass(frozen=True)
class Replay:
    """A conversation's user turns answered by another run on the same base."""

    conversation_id: str
    run_id: int
    run_name: str
    original_label: str  # who answered first: a run name, or "base model" / "unknown"
    base_model: str
    turns: tuple[ReplayTurn, ...]
    base_loads: int  # base models loaded while replaying (0 when the base was already loaded)
    seconds: float


def _turns(messages) -> list[tuple[str, object | None]]:
    """(user text, the assistant message that answered it or None), oldest first."""
    turns: list[list] = []
    for m in messages:
        if m.role == "user":
            turns.append([m.content, None])
        elif m.role == "assistant" and turns and turns[-1][1] is None:
            turns[-1][1] = m
    return [(prompt, reply) for prompt, reply in turns if prompt.strip()]


def replay_settings(meta: dict) -> GenerationSettings:
    """The settings (and seed) a stored reply was made with; Deterministic when unrecorded."""
    recorded = meta.get("settings") if isinstance(meta, dict) else None
    if not isinstance(recorded, dict):
        return score_settings()
    known = {f.name for f in dataclasses.fields(GenerationSettings)}
    values = {k: v for k, v in recorded.items() if k in known}
    if meta.get("seed") is not None:
        values["seed"] = meta["seed"]  # a drawn seed: reproduces a sampled answer too
    return GenerationSettings(**values)


def _original_base(ws, conversation, messages) -> tuple[str | None, str]:
    """(base model, label) the conversation was first answered with, as far as it is known."""
    for m in messages:
        if m.role == "assistant" and m.meta.get("base_model"):
            run = m.meta.get("run")
            label = run.get("name") if isinstance(run, dict) else None
            return str(m.meta["base_model"]), label or "base model"
    if conversation.run_id is not None:
        run = ws.get_run(conversation.run_id)
        return run.base_model, run.name
    return None, "unknown"


def replay_conversation(
    host,
    ws,
    conversation_id: str,
    run_id: int,
    *,
    quantization: str = "auto",
    progress: Progress | None = None,
) -> Replay:
    """Answer each user turn of a stored conversation again with `run_id`'s adapter.

    The replayed side keeps its own answers as the history of later turns (the conversation as
    it would have gone with that run); each turn uses the settings and seed its stored reply
    recorded. The run must be on the same base, so the adapter is swapped, never the base.
    """
    progress = progress or _no_progress
    conversation = ws.get_conversation(conversation_id)
    messages = ws.messages(conversation_id)
    turns = _turns(messages)
    if not turns:
        raise InvalidInput("This conversation has no user turns to replay.")
    target = usable_run(ws, run_id)
    original_base, original_label = _original_base(ws, conversation, messages)
    if original_base and not same_base(original_base, target.base_model):
        raise InvalidInput(
            f"Run {target.run_id} ({target.run_name}) is on base {target.base_model}, but this "
            f"conversation was answered on {original_base}: replay it with a run on that base."
        )
    loads_before = host.base_loads
    started = time.perf_counter()
    history: list[dict] = []
    replayed: list[ReplayTurn] = []
    for i, (prompt, stored) in enumerate(turns):
        progress(i, len(turns), f"turn {i + 1} of {len(turns)}")
        meta = dict(stored.meta) if stored is not None else {}
        history.append({"role": "user", "content": prompt})
        reply = host.generate(
            target.base_model,
            history,
            replay_settings(meta),
            target.adapter_path,
            quantization=quantization,
        )
        history.append({"role": "assistant", "content": reply.text})
        replay_meta = {**reply.as_meta(), **target.as_meta()}
        replayed.append(
            ReplayTurn(
                prompt=prompt,
                original=None if stored is None else stored.content,
                replayed=reply.text,
                original_meta=meta,
                replayed_meta=replay_meta,
            )
        )
    progress(len(turns), len(turns), "done")
    return Replay(
        conversation_id=conversation_id,
        run_id=target.run_id,
        run_name=target.run_name,
        original_label=original_label,
        base_model=target.base_model,
        turns=tuple(replayed),
        base_loads=host.base_loads - loads_before,
        seconds=round(time.perf_counter() - started, 2),
    )


_WORD_WITH_SPACE = re.compile(r"\s*\S+\s*|\s+")


def word_diff(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Both texts as (piece, changed) runs from a word-level diff; whitespace kept as it was."""
    a_words, b_words = _WORD_WITH_SPACE.findall(a or ""), _WORD_WITH_SPACE.findall(b or "")
    matcher = difflib.SequenceMatcher(
        a=[w.strip() for w in a_words], b=[w.strip() for w in b_words], autojunk=False
    )
    left: list[tuple[str, bool]] = []
    right: list[tuple[str, bool]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = tag != "equal"
        if i2 > i1:
            left.append(("".join(a_words[i1:i2]), changed))
        if j2 > j1:
            right.append(("".join(b_words[j1:j2]), changed))
    return left, right
