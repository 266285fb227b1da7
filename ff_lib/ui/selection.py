"""The validated run and the model status in st.session_state, shared by both pages."""

import streamlit as st

from ff_lib.runs import READY_MESSAGE, RunCheck, check_run
from ff_lib.ui import resources, state

STATUSES = ("idle", "validating", "ready", "generating", "waiting", "error")
IDLE_MESSAGE = "Idle: choose a training run to validate its adapter."
VALIDATING_MESSAGE = "Validating adapter..."
LOADING_MESSAGE = "Loading fine-tuned model and generating response..."
GENERATING_MESSAGE = "Generating response from fine-tuned model..."
WAITING_MESSAGE = "Waiting for the model: another session is generating."
NOT_REACHABLE_MESSAGE = "Adapter validated, but the engine is not reachable: nothing answers now."


def init_selection() -> None:
    ss = st.session_state
    ss.setdefault(state.MODEL_SELECTION, None)
    ss.setdefault(state.MODEL_STATUS, "idle")
    ss.setdefault(state.MODEL_STATUS_DETAIL, IDLE_MESSAGE)
    ss.setdefault(state.MODEL_PENDING_RUN, None)
    ss.setdefault(state.MODEL_BASE_FILLED, "")


def selection() -> RunCheck | None:
    """The last run check (ok or not), None before any run was chosen."""
    return st.session_state.get(state.MODEL_SELECTION)


def engine_problem() -> str | None:
    """Why this session's engine (the sidebar's choice) cannot answer now; None when it can."""
    return resources.engine_problem(resources.host())


def ready_selection() -> RunCheck | None:
    """The selection when it validated and the session's engine answers, else None: the chat
    controls unlock on this (a validated adapter is not ready while its engine does not answer)."""
    sel = selection()
    if sel is None or not sel.ok or engine_problem() is not None:
        return None
    return sel


def set_status(status: str, detail: str = "") -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    st.session_state[state.MODEL_STATUS] = status
    st.session_state[state.MODEL_STATUS_DETAIL] = detail


def status() -> tuple[str, str]:
    """(status, detail) for the status line."""
    ss = st.session_state
    status = ss.get(state.MODEL_STATUS, "idle")
    if status == "ready" and (problem := engine_problem()) is not None:
        return "error", f"{NOT_REACHABLE_MESSAGE} {problem}"
    return status, ss.get(state.MODEL_STATUS_DETAIL, IDLE_MESSAGE)


def reset_status() -> None:
    """Back to rest: ready when a validated run is selected, else idle (or its refusal)."""
    sel = selection()
    if sel is None:
        set_status("idle", IDLE_MESSAGE)
    elif sel.ok:
        set_status("ready", READY_MESSAGE)
    else:
        set_status("error", sel.message)


def apply_run(run, base_model: str | None) -> RunCheck:
    """Check `run` (cached adapter validation), make it the selection and set the status."""
    check = check_run(run, base_model, resources.check_adapter)
    st.session_state[state.MODEL_SELECTION] = check
    reset_status()
    return check


def forget_selection() -> None:
    st.session_state[state.MODEL_SELECTION] = None
    reset_status()
