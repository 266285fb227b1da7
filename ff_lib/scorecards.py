"""Scorecards: the base, a run and any number of runs on its base answer a dataset's rows.

Every (model, row) answer is submitted to the engine at once (it decodes them in shared
batches); each finished answer is scored and buffered, and the buffer is written to the
workspace every `ROWS_PER_WRITE` answers or `WRITE_SECONDS` seconds (one write opens the
DuckDB file: ~35 ms), at the end, and when the scoring stops (a closed tab, Ctrl-C, an
error). A scorecard that stopped is 'interrupted' and `resume_scorecard` answers only what
is missing. No streamlit, no SQL, no torch here.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence

from ff_lib.errors import InvalidInput
from ff_lib.inference import PRESETS, GenerationSettings
from ff_lib.inference.base_identity import same_base
from ff_lib.inference.door import checks_shared, together
from ff_lib.inference.provenance import adapter_sha256
from ff_lib.runs import RunCheck, usable_run
from ff_lib.scoring import mean_scores, score_answer

SCORE_PRESET = "Deterministic"
SCORE_SEED = 0
DEFAULT_SCORE_ROWS = 20
MAX_SCORE_ROWS = 500
ROWS_PER_WRITE = 64  # finished answers buffered before one workspace write...
WRITE_SECONDS = 2.0  # ...or this long since the last write, whichever comes first
BASE_KEY, RUN_KEY = "base", "run"  # keys of summary["models"]; compared runs: compare, compare_2
# progress(done, total, what): called as each answer is stored (done: before it) and at the end.
Progress = Callable[[int, int, str], None]
Model = tuple[str, str, RunCheck | None]  # (key, label, run or None for the base)


def _no_progress(done: int, total: int, what: str) -> None:
    return None


def score_settings(max_new_tokens: int | None = None) -> GenerationSettings:
    """The Deterministic preset with a fixed seed (greedy: the same answers every time)."""
    settings = dataclasses.replace(PRESETS[SCORE_PRESET], seed=SCORE_SEED)
    if max_new_tokens is not None:
        settings = dataclasses.replace(settings, max_new_tokens=max_new_tokens)
    return settings


def compare_key(i: int) -> str:
    """The key of the i-th compared run (0-based): 'compare' (as scorecards had), 'compare_2'..."""
    return "compare" if i == 0 else f"compare_{i + 1}"


def _same_base_or_refuse(main: RunCheck, other: RunCheck) -> None:
    if not same_base(main.base_model, other.base_model):
        raise InvalidInput(
            f"Run {other.run_id} ({other.run_name}) is on base {other.base_model}, not "
            f"{main.base_model}: a comparison needs both runs on the same base model."
        )


def scored_models(ws, main: RunCheck, compare_run_ids: Sequence[int]) -> list[Model]:
    """(key, label, run or None) of each model a scorecard answers with: base, run, compared."""
    ids = list(compare_run_ids)
    if main.run_id in ids:
        raise InvalidInput("A compared run is the run being scored: pick another run.")
    if len(set(ids)) != len(ids):
        raise InvalidInput("The same run is chosen twice to compare with: choose each once.")
    models: list[Model] = [(BASE_KEY, "base model", None), (RUN_KEY, main.label, main)]
    for i, run_id in enumerate(ids):
        other = usable_run(ws, run_id)  # a run that cannot answer is refused with its reason
        _same_base_or_refuse(main, other)
        models.append((compare_key(i), other.label, other))
    return models


class AnswerBuffer:
    """Finished answers kept in memory and written to the workspace in batches."""

    def __init__(self, ws, scorecard_id: int, *, every: int | None = None,
                 seconds: float | None = None, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.ws, self.scorecard_id = ws, scorecard_id
        self.every = ROWS_PER_WRITE if every is None else every  # read now: tests may set them
        self.seconds = WRITE_SECONDS if seconds is None else seconds
        self.clock = clock
        self.pending: list[dict] = []
        self.last_write = clock()

    def add(self, answer: dict) -> None:
        self.pending.append(answer)
        if len(self.pending) >= self.every or self.clock() - self.last_write >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.ws.add_scorecard_rows(self.scorecard_id, self.pending)
            self.pending = []
        self.last_write = self.clock()


def _answers(host, base_model, jobs, settings, quantization):
    """Yield (job, text) in job order; every job's stream is started, as one batch, before
    any is read."""
    with checks_shared():
        streams = [
            host.stream_reply(
                base_model,
                [{"role": "user", "content": pair.prompt}],
                settings,
                None if target is None else target.adapter_path,
                quantization=quantization,
            )
            for (_, _, target), _, pair in jobs
        ]
    with together(streams):
        for job, stream in zip(jobs, streams, strict=True):
            yield job, stream.text()


def _fill(host, ws, card, models, pairs, settings, quantization, progress, stored) -> None:
    """Answer every (model, row) the scorecard lacks (not in `stored`), storing them in batches
    as they finish; on any stop the buffer is written and the scorecard marked 'interrupted'."""
    jobs = [
        (model, ordinal, pair)
        for model in models
        for ordinal, pair in enumerate(pairs)
        if (model[0], ordinal) not in stored
    ]
    total, base_model = len(pairs) * len(models), card.summary["base_model"]
    buffer = AnswerBuffer(ws, card.id)
    done = len(stored)
    try:
        for ((key, label, _), ordinal, pair), text in _answers(
            host, base_model, jobs, settings, quantization
        ):
            buffer.add(
                {
                    "ordinal": ordinal,
                    "model": key,
                    "prompt": pair.prompt,
                    "expected": pair.response,
                    "answer": text,
                    "scores": score_answer(text, pair.response),
                }
            )  # before the progress call: a Stop raised there loses no answer
            progress(done, total, f"{label}: row {ordinal + 1} of {len(pairs)}")
            done += 1
        buffer.flush()
    except BaseException:
        try:
            buffer.flush()
        finally:
            ws.finish_scorecard(card.id, "interrupted", rows=assemble_rows(ws, card))
        raise
    progress(total, total, "done")


def assemble_rows(ws, card) -> list[dict]:
    """The rows every model has answered, in file order, in the scorecard row shape."""
    keys = list(card.summary.get("models", {}))
    by_row: dict[int, dict] = {}
    for a in ws.scorecard_rows(card.id):
        row = by_row.setdefault(
            a["ordinal"],
            {"prompt": a["prompt"], "expected": a["expected"], "answers": {}, "scores": {}},
        )
        row["answers"][a["model"]] = a["answer"]
        row["scores"][a["model"]] = a["scores"]
    return [
        {
            **row,
            "answers": {k: row["answers"][k] for k in keys},
            "scores": {k: row["scores"][k] for k in keys},
        }  # fmt: skip
        for _, row in sorted(by_row.items())
        if all(k in row["answers"] for k in keys)
    ]


def _model_summary(models: list[Model]) -> dict:
    return {
        key: {
            "label": label,
            "run_id": None if target is None else target.run_id,
            "adapter": None if target is None else target.adapter_dir,
            "adapter_sha256": None if target is None else adapter_sha256(target.adapter_path)[1],
        }
        for key, label, target in models
    }


def _complete(host, ws, card, models, pairs, settings, quantization, progress, spent: float,
              stored=frozenset()):  # fmt: skip
    started = time.perf_counter()
    _fill(host, ws, card, models, pairs, settings, quantization, progress, stored)
    with ws.session():  # one open of the database file for the read and the write
        rows = assemble_rows(ws, card)
        summary = {
            **card.summary,
            "n": len(rows),
            "means": {key: mean_scores(r["scores"][key] for r in rows) for key, _, _ in models},
            "seconds": round(spent + time.perf_counter() - started, 2),
        }
        return ws.finish_scorecard(card.id, "complete", summary=summary, rows=rows)


def score_run(
    host,
    ws,
    run_id: int,
    dataset_id: int,
    *,
    n: int = DEFAULT_SCORE_ROWS,
    compare_run_ids: Sequence[int] = (),
    base_model: str | None = None,
    quantization: str = "auto",
    max_new_tokens: int | None = None,
    progress: Progress | None = None,
):
    """Score the base, the run and any compared runs (same base) on the first n rows.

    Every answer uses the Deterministic preset with a fixed seed; each is scored against the
    row's expected response (exact match, token F1, ROUGE-L). The scorecard is stored from the
    start ('running') and its answers as they finish; returned complete (ff_lib.data.Scorecard).
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SCORE_ROWS:
        raise InvalidInput(f"Rows to score must be between 1 and {MAX_SCORE_ROWS} (got {n!r}).")
    with ws.session():  # the checks and the start: one open of the database file, not five
        main = usable_run(ws, run_id, base_model)
        models = scored_models(ws, main, compare_run_ids)
        dataset = ws.get_dataset(dataset_id)
        pairs = ws.dataset_pairs(dataset_id, limit=n)
        if not pairs:
            raise InvalidInput(f"Dataset {dataset.name} has no rows to score.")
        summary = _summary(main, models, dataset, pairs, max_new_tokens)
        card = ws.start_scorecard(main.run_id, dataset.id, summary)
    return _complete(host, ws, card, models, pairs, score_settings(max_new_tokens), quantization,
                     progress or _no_progress, 0.0)  # fmt: skip


def _summary(main: RunCheck, models: list[Model], dataset, pairs, max_new_tokens) -> dict:
    """What a scorecard records from its start: the dataset, models, preset and settings."""
    settings = score_settings(max_new_tokens)
    return {
        "dataset": {"id": dataset.id, "name": dataset.name},
        "n": len(pairs),
        "base_model": main.base_model,
        "preset": SCORE_PRESET,
        "settings": settings.as_dict(),
        "models": _model_summary(models),
        "seconds": 0.0,
    }


def _resumed_models(ws, card) -> list[Model]:
    """The scorecard's models again, each checked: still here, same base, same weights."""
    base_model = card.summary["base_model"]
    models: list[Model] = []
    for key, model in card.summary["models"].items():
        if model.get("run_id") is None:
            models.append((key, model["label"], None))
            continue
        check = usable_run(ws, model["run_id"], base_model)
        if adapter_sha256(check.adapter_path)[1] != model.get("adapter_sha256"):
            raise InvalidInput(
                f"Run {check.run_id} ({check.run_name})'s adapter changed since scorecard "
                f"{card.id} began: its answers would mix two adapters. Score it anew instead."
            )
        models.append((key, model["label"], check))
    return models


def resume_scorecard(
    host, ws, scorecard_id: int, *, quantization: str = "auto", progress: Progress | None = None
):
    """Answer only the (model, row) pairs an unfinished scorecard lacks, then complete it."""
    with ws.session():
        card = ws.get_scorecard(scorecard_id)
        if card.status == "complete":
            raise InvalidInput(f"Scorecard {card.id} is complete: there is nothing to resume.")
        models = _resumed_models(ws, card)
        pairs = ws.dataset_pairs(card.dataset_id, limit=card.summary["n"])
        stored = {(a["model"], a["ordinal"]) for a in ws.scorecard_rows(card.id)}
    if len(pairs) < card.summary["n"]:
        raise InvalidInput(
            f"Dataset {card.summary['dataset']['name']} now has {len(pairs)} rows, fewer than "
            f"the {card.summary['n']} scorecard {card.id} scores: score it anew instead."
        )
    known = {f.name for f in dataclasses.fields(GenerationSettings)}
    settings = GenerationSettings(
        **{k: v for k, v in card.summary["settings"].items() if k in known}
    )
    card = ws.finish_scorecard(card.id, "running")
    return _complete(host, ws, card, models, pairs, settings, quantization,
                     progress or _no_progress, float(card.summary.get("seconds") or 0),
                     stored)  # fmt: skip


# --- views ------------------------------------------------------------------------------------
def disagrees(row: dict) -> bool:
    """Whether the models' answers to this row differ (whitespace at the ends ignored)."""
    return len({(a or "").strip() for a in row["answers"].values()}) > 1


def scorecard_table(scorecard, disagreeing_only: bool = False) -> list[dict]:
    """One flat dict per row for a table: prompt, expected, then each model's answer and scores;
    with disagreeing_only, only the rows whose answers differ between models."""
    models = scorecard.summary.get("models", {})
    table = []
    for row in scorecard.rows:
        if disagreeing_only and not disagrees(row):
            continue
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


METRIC_NAMES = {"exact_match": "Exact match", "token_f1": "Token F1", "rouge_l": "ROUGE-L"}


def scorecard_means(scorecard) -> list[dict]:
    """One dict per model: its label and mean exact match, token F1, ROUGE-L."""
    models = scorecard.summary.get("models", {})
    means = scorecard.summary.get("means", {})
    return [
        {"Model": model["label"], **{name: means[key][m] for m, name in METRIC_NAMES.items()}}
        for key, model in models.items()
        if key in means
    ]


def means_long(scorecard) -> list[dict]:
    """The means as one dict per (model, metric): what a grouped bar chart draws."""
    return [
        {"Model": mean["Model"], "Metric": name, "Score": mean[name]}
        for mean in scorecard_means(scorecard)
        for name in METRIC_NAMES.values()
    ]
