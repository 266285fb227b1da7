"""Home's `Remove a run`: choose a run, confirm in a dialog, and the registration goes."""

import streamlit as st

from ff_lib.errors import FFError
from ff_lib.ui import selection, state

REMOVE_HELP = (
    "Forgets the run in this workspace. Its adapter files stay on disk and stored "
    "conversations keep every message. To correct a run instead: `python -m ff_lib runs "
    "rename ID NAME` or `runs set-base ID BASE`."
)


def _forget_target() -> None:
    st.session_state[state.HOME_REMOVE_TARGET] = None


@st.dialog("Remove run?", on_dismiss=_forget_target)
def _confirm_remove(ws, run) -> None:
    st.write(f"This removes run {run.id} from the workspace:")
    st.text(f"{run.name} · {run.status}")
    st.caption(f"Its adapter files stay in {run.adapter_path}; conversations keep their messages.")
    yes, no = st.columns(2)
    if yes.button("Remove", type="primary", key="home_confirm_remove"):
        try:
            ws.remove_run(run.id)
        except FFError as exc:
            st.error(str(exc))
            st.stop()
        current = selection.selection()
        if current is not None and current.run_id == run.id:
            selection.forget_selection()
            st.session_state[state.INF_RUN] = None
        st.session_state[state.HOME_REMOVE_TARGET] = None
        st.toast(f"Removed run {run.id} ({run.name}).", icon=":material/delete:")
        st.rerun()
    if no.button("Cancel", key="home_cancel_remove"):
        _forget_target()
        st.rerun()


def remove_run_control(ws, runs) -> None:
    """A run box and `Remove run`; the removal happens only after the dialog's `Remove`."""
    if not runs:
        return
    labels = {r.id: f"{r.name} · {r.status}" for r in runs}
    with st.expander("Remove a run", icon=":material/delete:"):
        st.caption(REMOVE_HELP)
        box, button = st.columns([4, 1], vertical_alignment="bottom")
        box.selectbox(
            "Run to remove",
            list(labels),
            index=None,
            format_func=labels.get,
            key=state.HOME_REMOVE_RUN,
            placeholder="Choose a run",
        )
        chosen = st.session_state.get(state.HOME_REMOVE_RUN)
        if button.button("Remove run", key="home_remove_run_button", disabled=chosen is None):
            st.session_state[state.HOME_REMOVE_TARGET] = chosen
    target = st.session_state.get(state.HOME_REMOVE_TARGET)
    run = next((r for r in runs if r.id == target), None)
    if run is not None:
        _confirm_remove(ws, run)
