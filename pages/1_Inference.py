"""Inference: pick a run, have its adapter validated, then prompt it and compare answers."""

import streamlit as st

from ff_lib.errors import FFError
from ff_lib.inference import PRESETS
from ff_lib.ui import conversation, generation, resources, selection, state
from ff_lib.ui import evaluation as evaluation_ui
from ff_lib.ui import inference_controls as ctl
from ff_lib.ui import sweep as sweep_ui
from ff_lib.ui.chat_view import full_chat_dialog
from ff_lib.ui.engine import engine_sidebar
from ff_lib.ui.style import PAGE_ICON, page_style
from ff_lib.ui.widgets import (
    export_controls,
    meta_line,
    output_list,
    raw_text_toggle,
    status_line,
    warnings,
)

st.set_page_config(page_title="Inference · FF Playground", page_icon=PAGE_ICON, layout="wide")
page_style()
engine_sidebar()

try:
    ws = resources.workspace()
    selection.init_selection()
    ctl.init_controls()
    conversation.init_history(ws)  # outside the session: a reply cut off by Stop is written now
    with ws.session():
        run_ids, run_labels = ctl.run_options(ws)
        dataset_ids, dataset_labels = ctl.dataset_options(ws)
        ctl.ensure_samples(ws, dataset_ids)
except FFError as exc:
    st.error(str(exc), icon=":material/lock:")
    st.stop()

st.title("Inference")
if notice := conversation.pop_notice():
    st.warning(notice)

# --- Model & adapter ---
st.header("Model & adapter")
status_slot = st.empty()
meta_slot = st.container()
base_col, run_col, refresh_col, latest_col = st.columns(
    [3, 3, 1.6, 2.4], vertical_alignment="bottom"
)
base_col.text_input(
    "Base model",
    key=state.INF_BASE_MODEL,
    on_change=ctl.on_base_change,
    placeholder="a local folder or a cached model id",
    persist_state="session",
)
run_col.selectbox(
    "Training run",
    run_ids,
    index=None,
    format_func=run_labels.get,
    key=state.INF_RUN,
    on_change=ctl.on_run_change,
    args=(ws,),
    placeholder="Choose a training run",
    persist_state="session",
)
refresh_col.button(
    "Refresh runs", key="inf_refresh_runs", on_click=ctl.on_refresh_runs, icon=":material/refresh:"
)
latest_col.button("Use latest completed run", on_click=ctl.on_use_latest, args=(ws,))
ctl.validate_pending(ws)

with status_slot.container():
    status_line(*selection.status())
sel = selection.selection()
with meta_slot:
    line_slot = st.empty()
    if sel is not None:
        warnings(sel.warnings)
    evaluation_ui.effect_line(ws, sel)  # may load the base (to measure): how it runs comes after
    with line_slot.container():
        meta_line(sel, resources.runs_as(sel))
locked = selection.ready_selection() is None

# --- Prompt & responses ---
st.header("Prompt & responses")
st.radio(
    "Preset",
    list(PRESETS),
    key=state.INF_PRESET,
    on_change=ctl.on_preset_change,
    horizontal=True,
    disabled=locked,
    persist_state="session",
)
temp_col, tokens_col = st.columns(2)
temp_col.slider(
    "Temperature",
    0.0,
    2.0,
    step=0.05,
    key=state.INF_TEMPERATURE,
    disabled=locked,
    help="0 means greedy decoding: the same answer every time.",
    persist_state="session",
)
base_now = sel.base_model if sel is not None and sel.ok else None
tokens_top = ctl.max_new_tokens_top(state.INF_MAX_NEW_TOKENS, base_now, 16, 16)
tokens_col.slider(
    "Max new tokens",
    16,
    tokens_top,
    step=16,
    help=f"At most {tokens_top}: the base's context, prompt and reply together."
    if tokens_top < ctl.MAX_NEW_TOKENS
    else None,
    key=state.INF_MAX_NEW_TOKENS,
    disabled=locked,
    persist_state="session",
)
with st.expander("Advanced"):
    st.slider(
        "Repetition penalty",
        1.0,
        2.0,
        step=0.05,
        key=state.INF_REPETITION_PENALTY,
        disabled=locked,
        persist_state="session",
    )
    st.slider(
        "Top-p", 0.05, 1.0, step=0.05, key=state.INF_TOP_P, disabled=locked, persist_state="session"
    )
    st.number_input(
        "Seed",
        min_value=0,
        step=1,
        key=state.INF_SEED,
        disabled=locked,
        placeholder="random",
        persist_state="session",
    )
    st.text_area(
        "System prompt", key=state.INF_SYSTEM_PROMPT, disabled=locked, persist_state="session"
    )
ctl.store_settings()

ds_col, ds_refresh_col, sample_col, sample_refresh_col = st.columns(
    [3, 2.2, 4, 1.8], vertical_alignment="bottom"
)
ds_col.selectbox(
    "Dataset for sample prompts",
    dataset_ids,
    format_func=dataset_labels.get,
    key=state.INF_DATASET,
    on_change=ctl.load_samples,
    args=(ws,),
    disabled=locked,
    persist_state="session",
)
ds_refresh_col.button(
    "Refresh datasets", key="inf_refresh_datasets", icon=":material/refresh:", disabled=locked
)
sample_col.selectbox(
    "Sample prompts",
    range(len(st.session_state[state.INF_SAMPLES])),
    index=None,
    format_func=ctl.sample_labels(st.session_state[state.INF_SAMPLES]).get,
    key=state.INF_SAMPLE,
    on_change=ctl.on_sample_change,
    placeholder="Pick a sample prompt",
    disabled=locked,
)
sample_refresh_col.button(
    "New samples",
    key="inf_refresh_samples",
    on_click=ctl.load_samples,
    args=(ws,),
    icon=":material/shuffle:",
    disabled=locked,
)

st.text_area(
    "Prompt",
    key=state.INF_PROMPT,
    on_change=ctl.on_prompt_edit,
    disabled=locked,
    height=120,
    persist_state="session",
)
pending = st.session_state.pop(state.INF_PENDING_PROMPT, None)
gen_col, clear_col, export_col, view_col = st.columns(
    [1.2, 1.2, 2.6, 1.3], vertical_alignment="bottom"
)
gen_col.button(
    "Generate",
    type="primary",
    on_click=ctl.on_generate,
    disabled=locked or pending is not None,
    icon=":material/play_arrow:",
)
clear_col.button(
    "Clear history", key="inf_clear", on_click=ctl.on_clear, icon=":material/delete_sweep:"
)
with export_col:
    export_controls(
        conversation.history(), conversation.conversation_id(), key=state.INF_EXPORT_FORMAT
    )
view_col.button("Full Chat View", on_click=ctl.open_dialog, icon=":material/forum:")
compare_col, raw_col = st.columns([3, 1], vertical_alignment="bottom")
try:
    compare_choices = ctl.compare_options(ws, selection.ready_selection())
except FFError as exc:
    compare_choices = []
    st.error(str(exc))
compare_col.multiselect(
    "Compare with",
    [c.key for c in compare_choices],
    format_func={c.key: c.label for c in compare_choices}.get,
    key=state.INF_COMPARE_WITH,
    on_change=ctl.on_compare_change,
    args=(compare_choices,),
    max_selections=ctl.MAX_SIDES - 1,
    select_all=False,  # "Select all" would pick runs that cannot answer and drop all past three
    disabled=locked,
    placeholder=ctl.COMPARE_PLACEHOLDER,
    help=ctl.COMPARE_HELP,
)
with raw_col:
    raw = raw_text_toggle(state.INF_RAW_TEXT)
if message := st.session_state.pop(state.INF_MESSAGE, None):
    st.warning(message, icon=":material/warning:")
evaluation_ui.score_panel(ws, selection.ready_selection(), locked)
sweep_ui.sweep_panel(ws, selection.ready_selection(), locked)

if st.session_state[state.INF_DIALOG_OPEN]:
    full_chat_dialog(ws)

out_col, expected_col = (
    st.columns([3, 1]) if st.session_state[state.INF_EXPECTED] else (st.container(), None)
)
if expected_col is not None:
    with expected_col.container(border=True):
        st.caption("Expected answer")
        st.text(st.session_state[state.INF_EXPECTED])
with out_col:
    output_list(conversation.history(), raw=raw)
    if pending is not None:
        generation.run_turn(
            ws,
            pending,
            chat=False,
            compare_with=st.session_state[state.INF_COMPARE_WITH],
            status_slot=status_slot,
        )
        st.rerun()
