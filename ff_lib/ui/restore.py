"""A conversation opened by ?c= (reload, bookmark, Home's Continue) brings back its setup."""

from dataclasses import asdict

import streamlit as st

from ff_lib.chat import ChatMessage
from ff_lib.chat.restore import ConversationSetup, conversation_setup
from ff_lib.errors import FFError
from ff_lib.ui import selection, state


def restore_setup(ws, messages: list[ChatMessage]) -> ConversationSetup | None:
    """Select the run, base model and settings the conversation last used, and validate them.

    The outcome is said out loud: a toast names what came back; a run that cannot answer any
    more turns the status red with its reason. None when no message names a run.
    """
    setup = conversation_setup(messages)
    if setup is None:
        return None
    if setup.settings is not None:
        _set_settings(setup)
    name = setup.run_name or f"run {setup.run_id}"
    try:
        run = ws.get_run(setup.run_id)
    except FFError as exc:
        st.session_state[state.INF_RUN] = None
        selection.forget_selection()
        selection.set_status(
            "error", f"This conversation was answered by {name}, which cannot be opened: {exc}"
        )
        return setup
    base = setup.base_model or run.base_model or ""
    check = selection.apply_run(run, base or None)
    note = ""
    if not check.ok and run.base_model and base != run.base_model:
        # The run's base was set again since (a moved folder): try it, and say so.
        moved = selection.apply_run(run, run.base_model)
        if moved.ok:
            check, note = moved, f" (its base {base} is not usable; the run's base is used)"
            base = run.base_model
    ss = st.session_state
    ss[state.INF_RUN] = run.id
    ss[state.INF_BASE_MODEL] = base
    # A base the conversation typed stays typed: choosing another run then keeps it.
    ss[state.MODEL_BASE_FILLED] = base if base == (run.base_model or "") else ""
    ss[state.MODEL_PENDING_RUN] = None
    restored = "run, base model and settings" if setup.settings else "run and base model"
    outcome = "adapter validated" if check.ok else check.message
    st.toast(f"Restored this conversation's {restored} ({run.name}){note}: {outcome}")
    return setup


def _set_settings(setup: ConversationSetup) -> None:
    """The Inference page's setting widgets and the settings every page's Send reads."""
    ss = st.session_state
    settings = setup.settings
    if setup.preset is not None:
        ss[state.INF_PRESET] = setup.preset
    ss[state.INF_TEMPERATURE] = float(settings.temperature)
    ss[state.INF_MAX_NEW_TOKENS] = int(settings.max_new_tokens)
    ss[state.INF_REPETITION_PENALTY] = float(settings.repetition_penalty)
    ss[state.INF_TOP_P] = float(settings.top_p)
    ss[state.INF_SEED] = settings.seed
    ss[state.INF_SYSTEM_PROMPT] = settings.system_prompt
    ss[state.MODEL_SETTINGS] = asdict(settings)
