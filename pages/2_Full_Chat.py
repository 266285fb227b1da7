"""Full Chat: the focused multi-turn chat with the selected run, for demos."""

import streamlit as st

from ff_lib.errors import FFError
from ff_lib.ui import conversation, resources, selection, state
from ff_lib.ui.chat_view import chat_body, run_caption
from ff_lib.ui.engine import engine_sidebar
from ff_lib.ui.evaluation import replay_panel
from ff_lib.ui.inference_controls import on_clear
from ff_lib.ui.style import PAGE_ICON, page_style
from ff_lib.ui.widgets import export_controls

st.set_page_config(page_title="Full Chat · FF Playground", page_icon=PAGE_ICON, layout="wide")
page_style()
engine_sidebar()

try:
    ws = resources.workspace()
    conversation.init_history(ws)
except FFError as exc:
    st.error(str(exc), icon=":material/lock:")
    st.stop()
selection.init_selection()

st.title("Full Chat")
if notice := conversation.pop_notice():
    st.warning(notice)
run_caption()
if conversation.served_over_api():
    st.caption(
        ":material/api: This conversation was served over the API (`python -m ff_lib serve`)."
    )
if selection.selection() is None:
    st.warning("No validated adapter is selected: choose a completed run on the Inference page.")
if selection.ready_selection() is None:
    st.page_link("pages/1_Inference.py", label="Go to Inference", icon=":material/tune:")

tools = st.columns([1, 3], vertical_alignment="bottom")
tools[0].button(
    "Clear history", key="full_clear", on_click=on_clear, icon=":material/delete_sweep:"
)
with tools[1]:
    export_controls(
        conversation.history(), conversation.conversation_id(), key=state.FULL_EXPORT_FORMAT
    )

chat_body(ws, key="full_chat_input")
replay_panel(ws, conversation.conversation_id())
