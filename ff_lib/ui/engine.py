"""The sidebar's engine choice, per session: this machine (in-process) or a vLLM server."""

import os

import streamlit as st

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
    """The session's first choice follows FF_ENGINE_URL (set: the vLLM server it names)."""
    env_url = os.environ.get("FF_ENGINE_URL", "").strip()
    st.session_state.setdefault(state.ENGINE_CHOICE, VLLM_SERVER if env_url else THIS_MACHINE)
    st.session_state.setdefault(state.ENGINE_URL, env_url)


def engine_sidebar() -> None:
    """Engine: this machine / vLLM server (+ its URL), and whether that engine answers now."""
    init_engine_choice()
    with st.sidebar:
        choice = st.radio(
            "Engine", (THIS_MACHINE, VLLM_SERVER), key=state.ENGINE_CHOICE, horizontal=True
        )
        if choice == VLLM_SERVER:
            st.text_input(
                "vLLM server URL",
                key=state.ENGINE_URL,
                placeholder="http://HOST:PORT/v1",
                help=URL_HELP,
            )
        host = resources.host()
        reason = resources.engine_problem(host)
        if reason:
            st.error(reason, icon=":material/cloud_off:")
        else:
            st.caption(f"Replies come from {resources.engine_name(host)}.")
            if resources.is_remote(host):
                st.caption(GATE_NOTE)
