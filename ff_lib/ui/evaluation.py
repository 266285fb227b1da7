"""Widgets for "did it work?": the adapter's effect, the Score panel, past scorecards, replays.

The Score panel and scorecards live in ff_lib/ui/scorecards.py (its names are imported here).
Stable keys (for browser tests, `.st-key-<key>`): effect_line, effect_button; replay_panel, replay_run, replay_button, replay_results. Model text reaches HTML only through
`diff_html`, which escapes it first.
"""

import html
from pathlib import Path

import streamlit as st

from ff_lib import evaluation
from ff_lib.chat import blank_text_note
from ff_lib.errors import FFError
from ff_lib.runs import run_choices
from ff_lib.ui import resources
from ff_lib.ui.scorecards import score_panel, scorecard_view, scorecards_list  # noqa: F401
from ff_lib.ui.state import (
    EVAL_MEASURE,
    EVAL_REPLAY,
    EVAL_REPLAY_RUN,
)
from ff_lib.ui.style import md_escape

NOT_MEASURED = "Adapter effect: measured once the model is loaded (or measure it now)."


# --- adapter effect ---------------------------------------------------------------------------
def _loaded_with(base_model: str | None) -> bool:
    info = resources.host().info()
    return info is not None and str(info.base_model) == str(base_model)


def _request_effect(run_id: int) -> None:
    st.session_state[EVAL_MEASURE] = run_id


def effect_line(ws, check) -> None:
    """Under the meta line: 'adapter changes 63% of tokens', a warning when near zero.

    Shown from the run's stored figures when its weights are unchanged; measured (under the
    host's lock) once the run's base is loaded, or when `Measure adapter effect` is clicked.
    """
    if check is None or not check.ok:
        return
    problem = resources.engine_problem(resources.host())
    with st.container(key="effect_line"):
        try:
            run = ws.get_run(check.run_id)
            effect = evaluation.stored_effect(run, Path(check.adapter_dir), check.base_model)
            asked = st.session_state.pop(EVAL_MEASURE, None) == check.run_id
            if effect is None and problem is None and (asked or _loaded_with(check.base_model)):
                with st.spinner("Measuring the adapter's effect (adapter on vs off)..."):
                    effect = evaluation.run_effect(
                        resources.host(), ws, check.run_id, base_model=check.base_model
                    )
                    run = ws.get_run(check.run_id)
        except FFError as exc:
            st.error(f"Adapter effect: {exc}", icon=":material/error:")
            return
        if effect is None:
            text_col, button_col = st.columns([5, 2], vertical_alignment="center")
            text_col.caption(NOT_MEASURED)
            button_col.button(
                "Measure adapter effect",
                key="effect_button",
                on_click=_request_effect,
                args=(check.run_id,),
                icon=":material/compare_arrows:",
                disabled=problem is not None,
            )
            return
        st.caption(effect_caption(effect, evaluation.effect_measured_by(run)))
        if effect.warning:
            st.warning(effect.warning, icon=":material/warning:")


def effect_caption(effect, measured_by: str | None) -> str:
    """The effect's figures and the engine that measured them (which may not be this session's:
    the figure belongs to the engine that computed it)."""
    who = measured_by or "an engine that was not recorded (measured before engines were named)"
    return f"{effect.summary()}, measured by {who}"


# --- replay -----------------------------------------------------------------------------------
def diff_html(pieces: list[tuple[str, bool]]) -> str:
    """One side of a word diff as HTML: the text escaped, changed words wrapped in <mark>."""
    parts = []
    for text, changed in pieces:
        safe = html.escape(text).replace("\n", "<br>")
        parts.append(f"<mark>{safe}</mark>" if changed else safe)
    body = "".join(parts) or "<em>(no text)</em>"
    return f'<div class="ff-diff" style="white-space: pre-wrap">{body}</div>'


def replay_panel(ws, conversation_id: str | None) -> None:
    """Replay the conversation's user turns against another run; both sides, differences marked."""
    with st.expander("Replay against another run", key="replay_panel", icon=":material/replay:"):
        if not conversation_id:
            st.caption("No saved conversation yet: send a message first.")
            return
        try:
            runs = [r for r in ws.list_runs() if r.status == "completed"]
            choices = run_choices(runs, resources.check_adapter)
        except FFError as exc:
            st.error(str(exc))
            return
        bases = {r.id: r.base_model or "base unknown" for r in runs}
        names = {c.id: c.label + (f" · {bases[c.id]}" if c.ok else "") for c in choices}
        run_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        run_col.selectbox(
            "Replay with run",
            list(names),
            index=None,
            format_func=names.get,
            key=EVAL_REPLAY_RUN,
            placeholder="Choose a completed run on the same base",
        )
        run_id = st.session_state.get(EVAL_REPLAY_RUN)
        clicked = button_col.button(
            "Replay", key="replay_button", disabled=run_id is None, icon=":material/replay:"
        )
        if clicked and run_id is not None:
            bar = st.progress(0.0, text="Replaying...")
            try:
                replay = evaluation.replay_conversation(
                    resources.host(),
                    ws,
                    conversation_id,
                    run_id,
                    progress=lambda d, t, what: bar.progress(d / max(t, 1), text=what),
                )
            except FFError as exc:
                bar.empty()
                st.error(str(exc), icon=":material/error:")
                return
            bar.empty()
            st.session_state[EVAL_REPLAY] = replay
        replay = st.session_state.get(EVAL_REPLAY)
        if replay is not None and replay.conversation_id == conversation_id:
            replay_view(replay)


def replay_view(replay) -> None:
    """Each turn: the prompt, then the stored answer and the replayed one side by side."""
    with st.container(key="replay_results"):
        same = sum(t.original == t.replayed for t in replay.turns)
        st.caption(
            f"{same}/{len(replay.turns)} answers unchanged · adapter swapped, "
            f"{replay.base_loads} base model loads · {replay.seconds:.1f} s"
        )
        for i, turn in enumerate(replay.turns, 1):
            with st.container(border=True):
                st.caption(f"Turn {i} · prompt")
                st.text(turn.prompt)
                left, right = evaluation.word_diff(turn.original or "", turn.replayed)
                before, after = st.columns(2)
                with before:
                    st.markdown(f"**{md_escape(replay.original_label)}** (stored)")
                    st.html(diff_html(left))
                    _blank_note(turn.original)
                with after:
                    st.markdown(f"**{md_escape(replay.run_name)}** (replayed)")
                    st.html(diff_html(right))
                    _blank_note(turn.replayed)


def _blank_note(text: str | None) -> None:
    if note := blank_text_note(text or ""):
        st.caption(note)
