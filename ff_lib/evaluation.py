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
from ff_lib.inference import GenerationSettings, validate_adapter
from ff_lib.inference.base_identity import same_base
from ff_lib.inference.effect import (
    BUILT_IN_PROMPTS,
    EFFECT_MAX_NEW_TOKENS,
    EFFECT_PROMPTS,
    AdapterEffect,
    measure_effect,
)
from ff_lib.inference.provenance import adapter_sha256
from ff_lib.runs import usable_run
from ff_lib.scorecards import (  # noqa: F401  (scorecards used to live here: same names)
    DEFAULT_SCORE_ROWS,
    MAX_SCORE_ROWS,
    SCORE_PRESET,
    SCORE_SEED,
    resume_scorecard,
    score_run,
    score_settings,
    scorecard_means,
    scorecard_table,
)

EFFECT_KEY = "effect"  # where a run's effect is stored in its metrics
MEASURED_BY_KEY = "measured_by"  # in it: the engine that measured it ('vLLM at HOST:PORT')
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
    stored = {**effect.as_dict(), MEASURED_BY_KEY: engine_label(host)}
    ws.update_run_metrics(target.run_id, {EFFECT_KEY: stored})
    return effect


def engine_label(host) -> str:
    """'vLLM at HOST:PORT' for a remote engine, 'this machine' for the in-process one."""
    where = getattr(host, "where", None)
    return where.describe if where is not None else "this machine"


def effect_measured_by(run) -> str | None:
    """The engine that measured the run's stored effect; None when it was not recorded."""
    data = (run.metrics or {}).get(EFFECT_KEY)
    return data.get(MEASURED_BY_KEY) if isinstance(data, dict) else None


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


def _replay_turns(host, target, turns, quantization, progress) -> list[ReplayTurn]:
    """Each user turn answered by `target`, its own answers becoming the history."""
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
        replayed.append(
            ReplayTurn(
                prompt=prompt,
                original=None if stored is None else stored.content,
                replayed=reply.text,
                original_meta=meta,
                replayed_meta={**reply.as_meta(), **target.as_meta()},
            )
        )
    progress(len(turns), len(turns), "done")
    return replayed


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
    replayed = _replay_turns(host, target, turns, quantization, progress)
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
