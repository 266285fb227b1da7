"""State and callbacks of the Inference page's controls (the page holds only layout)."""

from dataclasses import asdict

import streamlit as st

from ff_lib.compare import MAX_SIDES, compare_choices, is_checkpoint_key
from ff_lib.errors import FFError
from ff_lib.inference import DEFAULT_PRESET, PRESETS
from ff_lib.inference.prompts import EMPTY_PROMPT_MESSAGE
from ff_lib.runs import latest_usable_run, run_choices
from ff_lib.ui import conversation, resources, selection, state

SAMPLE_COUNT = 5
MAX_NEW_TOKENS = 1024  # the sliders' top for bases whose context is longer
NO_USABLE_RUN = (
    "No completed run can answer (each is marked ✗ with its reason in Training run): "
    "train one, register it, or fix its base (see Home)."
)
NO_TRAINING_RUN = (
    "No completed training run can answer; this button skips checkpoints registered as runs. "
    "To use one, choose it in Training run (the newest that can answer: '{name}')."
)


def init_controls() -> None:
    """Default values of the page's widgets (set once per session, before any widget)."""
    ss = st.session_state
    preset = PRESETS[DEFAULT_PRESET]
    defaults = {
        state.INF_BASE_MODEL: "",
        state.INF_RUN: None,
        state.INF_PRESET: DEFAULT_PRESET,
        state.INF_TEMPERATURE: float(preset.temperature),
        state.INF_MAX_NEW_TOKENS: int(preset.max_new_tokens),
        state.INF_REPETITION_PENALTY: float(preset.repetition_penalty),
        state.INF_TOP_P: float(preset.top_p),
        state.INF_SEED: None,
        state.INF_SYSTEM_PROMPT: "",
        state.INF_SAMPLES: None,
        state.INF_SAMPLE: None,
        state.INF_EXPECTED: None,
        state.INF_PROMPT: "",
        state.INF_COMPARE_WITH: [],
        state.INF_DIALOG_OPEN: False,
    }
    for key, value in defaults.items():
        ss.setdefault(key, value)


def run_options(ws) -> tuple[list[int], dict]:
    """(run ids in box order, id -> label); completed runs first, ✗ and why on those that
    cannot answer. Labels are unique: a select box maps its label back to the option."""
    choices = run_choices(ws.list_runs(), resources.check_adapter)
    return [c.id for c in choices], {c.id: c.label for c in choices}


COMPARE_HELP = (
    f"Up to {MAX_SIDES - 1} models answer beside the selected run, in one batched pass: the "
    "base, other runs on the same base, or a checkpoint of a run (registered as a run, named "
    "after it, the first time it answers). Words that differ from the first column are marked."
)
COMPARE_PLACEHOLDER = "the base model, other runs on the same base, or their checkpoints"


def compare_options(ws, sel) -> list:
    """What "Compare with" offers beside the ready run (ff_lib.compare.CompareChoice); a choice
    held from another run or base that is no longer offered is dropped from the selection."""
    ss = st.session_state
    choices = (
        []
        if sel is None
        else compare_choices(sel, ws.list_runs(), resources.check_adapter, checkpoints=True)
    )
    offered = {c.key for c in choices}
    ss[state.INF_COMPARE_WITH] = [k for k in ss.get(state.INF_COMPARE_WITH, []) if k in offered]
    return choices


def on_compare_change(choices: list) -> None:
    """A model that cannot answer is not kept in "Compare with": the warning says why."""
    ss = st.session_state
    refused = {c.key: c for c in choices if not c.ok}
    chosen = ss.get(state.INF_COMPARE_WITH, [])
    for key in chosen:
        if key in refused:
            what = f"checkpoint {key}" if is_checkpoint_key(key) else f"run {key}"
            ss[state.INF_MESSAGE] = f"Cannot compare with {what}: {refused[key].reason}"
    ss[state.INF_COMPARE_WITH] = [k for k in chosen if k not in refused]


def _choose_run(ws, run_id: int | None) -> None:
    ss = st.session_state
    if run_id is None:
        selection.forget_selection()
        return
    run = ws.get_run(run_id)
    typed = ss.get(state.INF_BASE_MODEL, "").strip()
    if not typed or typed == ss.get(state.MODEL_BASE_FILLED):
        ss[state.INF_BASE_MODEL] = run.base_model or ""
        ss[state.MODEL_BASE_FILLED] = run.base_model or ""
    if run.dataset_id is not None and run.dataset_id != ss.get(state.INF_DATASET):
        ss[state.INF_DATASET] = run.dataset_id  # sample prompts from what the run learned
        ss[state.INF_SAMPLES] = None  # drawn again on this rerun (ensure_samples)
    ss[state.MODEL_PENDING_RUN] = run_id
    selection.set_status("validating", selection.VALIDATING_MESSAGE)


def on_run_change(ws) -> None:
    """A run was picked: fill the base model unless the user typed one, draw sample prompts from
    its dataset; validate on this rerun."""
    try:
        _choose_run(ws, st.session_state.get(state.INF_RUN))
    except FFError as exc:
        selection.set_status("error", str(exc))


def on_base_change() -> None:
    """A new base model: check the selected run against it again."""
    run_id = st.session_state.get(state.INF_RUN)
    if run_id is not None:
        st.session_state[state.MODEL_PENDING_RUN] = run_id
        selection.set_status("validating", selection.VALIDATING_MESSAGE)


def on_refresh_runs() -> None:
    st.cache_data.clear()  # adapter checks: a refresh re-reads every folder
    on_base_change()


def on_use_latest(ws) -> None:
    """Select the most recent completed training run that can answer (runs marked ✗ and
    checkpoints registered as runs are skipped)."""
    try:
        runs = ws.list_runs()
        run = latest_usable_run(runs, resources.check_adapter)
        if run is None:
            ckpt = latest_usable_run(runs, resources.check_adapter, checkpoints=True)
            st.session_state[state.INF_MESSAGE] = (
                NO_USABLE_RUN if ckpt is None else NO_TRAINING_RUN.format(name=ckpt.name)
            )
            return
        st.session_state[state.INF_RUN] = run.id
        _choose_run(ws, run.id)
    except FFError as exc:
        selection.set_status("error", str(exc))


def validate_pending(ws) -> None:
    """Validate the run chosen on this rerun (spinner, then a toast with the outcome)."""
    run_id = st.session_state.pop(state.MODEL_PENDING_RUN, None)
    if run_id is None:
        return
    try:
        with st.spinner("Validating adapter..."):
            run = ws.get_run(run_id)
            check = selection.apply_run(run, st.session_state.get(state.INF_BASE_MODEL))
    except FFError as exc:
        selection.set_status("error", str(exc))
        st.toast(str(exc), icon=":material/error:")
        return
    if check.ok:
        st.toast(f"{check.run_name}: adapter validated.", icon=":material/check_circle:")
    else:
        st.toast(f"{check.run_name}: {check.message}", icon=":material/error:")


def max_new_tokens_top(key: str, base_model: str | None, low: int, step: int) -> int:
    """The top of a `Max new tokens` slider (state `key`, from `low` in `step`s): MAX_NEW_TOKENS,
    or the base's whole context when smaller, since no reply can be longer. A value above it
    (a preset, a restored conversation) is lowered to it, and a toast says so."""
    limit = resources.host().context_length_for(base_model) if base_model else None
    top = MAX_NEW_TOKENS if limit is None else max(low, min(MAX_NEW_TOKENS, limit // step * step))
    value = st.session_state.get(key)
    if not isinstance(value, int):
        return top
    # Written every run: a slider whose top changed is another widget to Streamlit, which would
    # otherwise start it again at its bottom instead of keeping the value.
    st.session_state[key] = min(value, top)
    if value > top:
        st.toast(
            f"Max new tokens lowered from {value} to {top}: {base_model} has a context of "
            f"{limit} tokens for the prompt and the reply together.",
            icon=":material/info:",
        )
    return top


def on_preset_change() -> None:
    """A preset sets the sliders (and the advanced values it defines)."""
    ss = st.session_state
    preset = PRESETS[ss[state.INF_PRESET]]
    ss[state.INF_TEMPERATURE] = float(preset.temperature)
    ss[state.INF_MAX_NEW_TOKENS] = int(preset.max_new_tokens)
    ss[state.INF_REPETITION_PENALTY] = float(preset.repetition_penalty)
    ss[state.INF_TOP_P] = float(preset.top_p)


def store_settings() -> None:
    """Keep the chosen settings where every page's Send can read them."""
    ss = st.session_state
    base = asdict(PRESETS[DEFAULT_PRESET])
    base.update(
        temperature=round(float(ss[state.INF_TEMPERATURE]), 3),
        max_new_tokens=int(ss[state.INF_MAX_NEW_TOKENS]),
        repetition_penalty=round(float(ss[state.INF_REPETITION_PENALTY]), 3),
        top_p=round(float(ss[state.INF_TOP_P]), 3),
        seed=None if ss[state.INF_SEED] is None else int(ss[state.INF_SEED]),
        system_prompt=ss[state.INF_SYSTEM_PROMPT] or "",
    )
    ss[state.MODEL_SETTINGS] = base


def dataset_options(ws) -> tuple[list[int], dict]:
    datasets = ws.list_datasets()
    return [d.id for d in datasets], {d.id: f"{d.name} ({d.rows} rows)" for d in datasets}


def load_samples(ws) -> None:
    """Five new random prompts from the chosen dataset; the choice of sample is reset."""
    ss = st.session_state
    dataset_id = ss.get(state.INF_DATASET)
    try:
        samples = [] if dataset_id is None else ws.sample_prompts(dataset_id, k=SAMPLE_COUNT)
    except FFError as exc:
        ss[state.INF_MESSAGE] = str(exc)
        samples = []
    ss[state.INF_SAMPLES] = samples
    ss[state.INF_SAMPLE] = None


def ensure_samples(ws, dataset_ids: list[int]) -> None:
    """Pick the first dataset and its samples the first time the page shows."""
    ss = st.session_state
    if ss.get(state.INF_DATASET) not in dataset_ids:
        ss[state.INF_DATASET] = dataset_ids[0] if dataset_ids else None
        ss[state.INF_SAMPLES] = None
    if ss.get(state.INF_SAMPLES) is None:
        load_samples(ws)


def sample_labels(samples) -> dict[int, str]:
    """Index -> the sample's prompt on one line, shortened for the select box."""
    labels = {}
    for index, sample in enumerate(samples):
        line = " ".join(sample.prompt.split())
        labels[index] = line if len(line) <= 90 else line[:89] + "…"
    return labels


def on_sample_change() -> None:
    """A sample prompt fills `Prompt` and shows its expected answer."""
    ss = st.session_state
    index = ss.get(state.INF_SAMPLE)
    if index is None:
        return
    sample = ss[state.INF_SAMPLES][index]
    ss[state.INF_PROMPT] = sample.prompt
    ss[state.INF_EXPECTED] = sample.response


def on_prompt_edit() -> None:
    """A prompt typed by the user is no longer the chosen sample: its expected answer goes."""
    ss = st.session_state
    index = ss.get(state.INF_SAMPLE)
    samples = ss.get(state.INF_SAMPLES) or []
    chosen = samples[index].prompt if index is not None and index < len(samples) else None
    if ss.get(state.INF_PROMPT) != chosen:
        ss[state.INF_EXPECTED] = None
        ss[state.INF_SAMPLE] = None


def on_generate() -> None:
    """Generate was clicked: refuse an empty prompt, else answer it on this rerun."""
    ss = st.session_state
    prompt = (ss.get(state.INF_PROMPT) or "").strip()
    if not prompt:
        ss[state.INF_MESSAGE] = EMPTY_PROMPT_MESSAGE
        return
    ss[state.INF_MESSAGE] = None
    ss[state.INF_PENDING_PROMPT] = prompt


def on_clear() -> None:
    """Empty the history (both views) and start a new conversation; stored messages stay."""
    conversation.clear_history()
    st.session_state[state.INF_EXPECTED] = None
    st.session_state[state.INF_MESSAGE] = None
    selection.reset_status()


def open_dialog() -> None:
    st.session_state[state.INF_DIALOG_OPEN] = True


def close_dialog() -> None:
    st.session_state[state.INF_DIALOG_OPEN] = False
