"""The focused chat (bubbles + composer), shared by the Full Chat View dialog and the Full Chat page."""

import streamlit as st

from ff_lib.ui import conversation, generation, selection, state
from ff_lib.ui.inference_controls import close_dialog, on_clear
from ff_lib.ui.widgets import bubbles, raw_text_toggle, status_line

COMPOSER_PLACEHOLDER = "Message the fine-tuned model"


def run_caption() -> None:
    """The selected run and its status, one line."""
    sel = selection.selection()
    if sel is None:
        st.caption("No training run selected.")
    else:
        base = f" · base `{sel.base_model}`" if sel.base_model else ""
        st.caption(f"Run **{sel.run_name}** ({sel.run_status}){base}")


def chat_body(ws, key: str) -> None:
    """History bubbles, then the composer; a sent message streams its reply in place."""
    status_slot = st.empty()
    with status_slot.container():
        status_line(*selection.status())
    raw = raw_text_toggle(f"{key}_raw")
    log = st.container()
    with log:
        bubbles(conversation.history(), key=key, raw=raw)
    locked = selection.ready_selection() is None
    prompt = st.chat_input(COMPOSER_PLACEHOLDER, key=key, disabled=locked)
    if prompt and prompt.strip():
        with log:  # the new turn goes above the composer, after the history
            generation.run_turn(ws, prompt.strip(), chat=True, status_slot=status_slot)


@st.dialog("Full Chat View", width="large", icon=":material/forum:", on_dismiss=close_dialog)
def full_chat_dialog(ws) -> None:
    """The large dialog of the Inference page, rebuilt from the shared history each time."""
    run_caption()
    chat_body(ws, key="inf_dialog_input")
    clear_col, close_col = st.columns(2)
    clear_col.button(
        "Clear history", key="inf_dialog_clear", on_click=on_clear, icon=":material/delete_sweep:"
    )
    if close_col.button("Close", key="inf_dialog_close"):
        st.session_state[state.INF_DIALOG_OPEN] = False
        st.rerun()
