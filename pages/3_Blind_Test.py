"""Blind test: two models answer as A and B in random order; vote, then see who was who."""

import streamlit as st

from ff_lib.errors import FFError
from ff_lib.ui import blind, resources, state
from ff_lib.ui.engine import engine_sidebar
from ff_lib.ui.style import PAGE_ICON, page_style

st.set_page_config(page_title="Blind test · FF Playground", page_icon=PAGE_ICON, layout="wide")
page_style()
engine_sidebar()

try:
    ws = resources.workspace()
except FFError as exc:
    st.error(str(exc), icon=":material/lock:")
    st.stop()
blind.init_state()

st.title("Blind test")
st.caption(
    "Two models answer the same prompt in one batched pass. You see them as A and B, in a "
    "random order per prompt; vote, then see who was who. Votes export as DPO training pairs."
)

first_col, second_col = st.columns(2)
with first_col:
    first = blind.first_model(ws)
with second_col:
    sides = blind.second_model(ws, first)
blind.prompt_controls(ws, first)
ready = blind.engine_ready()
if st.button(
    "Generate", type="primary", disabled=len(sides) != 2 or not ready, icon=":material/shuffle:"
):
    blind.generate(sides)
if message := st.session_state.get(state.BLIND_MESSAGE):
    st.warning(message)
    st.session_state[state.BLIND_MESSAGE] = None

blind.pair_view(ws)
blind.tally_view(ws, sides)
