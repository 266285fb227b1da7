"""The sidebar's engine choice, per session: this machine (in-process) or a vLLM server."""

import os

import streamlit as st

from ff_lib.evaluation import engine_label
from ff_lib.ui import resources, state

GATE_NOTE = (
    "Base and adapter replies take turns on the server, never decoded in one batch (vLLM bug "
    "#48421 answered base requests with an adapter): Compare with the base takes two turns."
)
THIS_MACHINE = "this machine"
VLLM_SERVER = "vLLM server"
URL_HELP = (
    "The OpenAI-compatible address of a vLLM server that serves your base and adapters, e.g. "
    "http://gpu-box:8000/v1 (README, 'Use vLLM as the engine'). FF_ENGINE_URL sets the default; "
    "FF_ENGINE_API_KEY its key."
)


def init_engine_choice() -> None:
    """The session's first choice follows FF_ENGINE_URL (set: the vLLM server it names).

    The choice and URL live in session keys no widget owns (state.ENGINE_CHOICE, ENGINE_URL):
    Streamlit drops a widget's keyed state when the page that rendered it is left, so the
    sidebar's widgets are seeded from these keys on every page and copy back on change."""
    env_url = os.environ.get("FF_ENGINE_URL", "").strip()
    st.session_state.setdefault(state.ENGINE_CHOICE, VLLM_SERVER if env_url else THIS_MACHINE)
    st.session_state.setdefault(state.ENGINE_URL, env_url)


def _keep(widget_key: str, session_key: str) -> None:
    """on_change: the widget's new value becomes the session's choice."""
    st.session_state[session_key] = st.session_state[widget_key]


def engine_sidebar() -> None:
    """Engine: this machine / vLLM server (+ its URL), and whether that engine answers now."""
    init_engine_choice()
    ss = st.session_state
    with st.sidebar:
        ss[state.ENGINE_CHOICE_WIDGET] = ss[state.ENGINE_CHOICE]
        choice = st.radio(
            "Engine",
            (THIS_MACHINE, VLLM_SERVER),
            key=state.ENGINE_CHOICE_WIDGET,
            on_change=_keep,
            args=(state.ENGINE_CHOICE_WIDGET, state.ENGINE_CHOICE),
            horizontal=True,
        )
        if choice == VLLM_SERVER:
            ss[state.ENGINE_URL_WIDGET] = ss[state.ENGINE_URL]
            st.text_input(
                "vLLM server URL",
                key=state.ENGINE_URL_WIDGET,
                on_change=_keep,
                args=(state.ENGINE_URL_WIDGET, state.ENGINE_URL),
                placeholder="http://HOST:PORT/v1",
                help=URL_HELP,
            )
        host = resources.host()
        reason = resources.engine_problem(host)
        if reason:
            st.error(reason, icon=":material/cloud_off:")
        else:
            st.caption(f"Replies come from {engine_label(host)}.")
            if resources.is_remote(host):
                st.caption(GATE_NOTE)
