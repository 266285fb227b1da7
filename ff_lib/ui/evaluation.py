"""Widgets for "did it work?": the adapter's effect, the Score panel, past scorecards, replays.

Stable keys (for browser tests, `.st-key-<key>`): effect_line, effect_button; score_panel,
score_dataset, score_rows, score_compare_run, score_button, score_results; scorecards;
replay_panel, replay_run, replay_button, replay_results. Model text reaches HTML only through
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
from ff_lib.ui.state import (
    EVAL_MEASURE,
    EVAL_REPLAY,
    EVAL_REPLAY_RUN,
    EVAL_SCORE_COMPARE_RUN,
    EVAL_SCORE_DATASET,
    EVAL_SCORE_ROWS,
    EVAL_SCORE_RUN,
    EVAL_SCORECARD_ID,
)

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
    with st.container(key="effect_line"):
        try:
            run = ws.get_run(check.run_id)
            effect = evaluation.stored_effect(run, Path(check.adapter_dir), check.base_model)
            asked = st.session_state.pop(EVAL_MEASURE, None) == check.run_id
            if effect is None and (asked or _loaded_with(check.base_model)):
                with st.spinner("Measuring the adapter's effect (adapter on vs off)..."):
                    effect = evaluation.run_effect(
                        resources.host(), ws, check.run_id, base_model=check.base_model
                    )
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
            )
            return
        st.caption(effect.summary())
        if effect.warning:
            st.warning(effect.warning, icon=":material/warning:")


# --- scorecards -------------------------------------------------------------------------------
def _progress_callback(bar):
    def progress(done: int, total: int, what: str) -> None:
        bar.progress(done / max(total, 1), text=f"Scoring... {done}/{total} · {what}")

    return progress


def score_panel(ws, check, locked: bool) -> None:
    """`Score`: base vs this run (vs a second run) on a dataset, with a progress bar and a table."""
    with st.expander("Score this run on a dataset", key="score_panel", icon=":material/grading:"):
        try:
            with ws.session():
                datasets = ws.list_datasets()
                runs = [r for r in ws.list_runs() if r.status == "completed"]
                run = None if check is None else ws.get_run(check.run_id)
            choices = run_choices(runs, resources.check_adapter)
        except FFError as exc:
            st.error(str(exc))
            return
        if not datasets:
            st.caption("No datasets in the workspace: import one to score against.")
            return
        ids = [d.id for d in datasets]
        labels = {d.id: f"{d.name} ({d.rows} rows)" for d in datasets}
        # A newly chosen run starts on its own dataset (when it has one in the workspace).
        run_key = None if run is None else run.id
        if (
            st.session_state.get(EVAL_SCORE_DATASET) not in ids
            or st.session_state.get(EVAL_SCORE_RUN) != run_key
        ):
            own = run.dataset_id if run is not None and run.dataset_id in ids else ids[0]
            st.session_state[EVAL_SCORE_DATASET] = own
            st.session_state[EVAL_SCORE_RUN] = run_key
        others = [c.id for c in choices if check is None or c.id != check.run_id]
        names = {c.id: c.label for c in choices}
        data_col, rows_col, compare_col = st.columns([3, 1, 3], vertical_alignment="bottom")
        data_col.selectbox(
            "Score dataset", ids, format_func=labels.get, key=EVAL_SCORE_DATASET, disabled=locked
        )
        rows_col.number_input(
            "Rows",
            min_value=1,
            max_value=evaluation.MAX_SCORE_ROWS,
            value=evaluation.DEFAULT_SCORE_ROWS,
            key=EVAL_SCORE_ROWS,
            disabled=locked,
        )
        compare_col.selectbox(
            "Compare with run",
            others,
            index=None,
            format_func=names.get,
            key=EVAL_SCORE_COMPARE_RUN,
            placeholder="(base model and this run only)",
            disabled=locked,
        )
        st.caption(
            "Answers use the Deterministic preset with seed 0; each is scored against the "
            "dataset's response (exact match, token F1, ROUGE-L)."
        )
        clicked = st.button("Score", key="score_button", disabled=locked, icon=":material/grading:")
        if clicked and check is not None:
            bar = st.progress(0.0, text="Scoring...")
            try:
                card = evaluation.score_run(
                    resources.host(),
                    ws,
                    check.run_id,
                    st.session_state[EVAL_SCORE_DATASET],
                    n=int(st.session_state[EVAL_SCORE_ROWS]),
                    compare_run_id=st.session_state.get(EVAL_SCORE_COMPARE_RUN),
                    base_model=check.base_model,
                    progress=_progress_callback(bar),
                )
            except FFError as exc:
                bar.empty()
                st.error(str(exc), icon=":material/error:")
                return
            bar.empty()
            st.session_state[EVAL_SCORECARD_ID] = card.id
        card = _shown_scorecard(ws, check)
        if card is not None:
            scorecard_view(card)


def _shown_scorecard(ws, check):
    card_id = st.session_state.get(EVAL_SCORECARD_ID)
    if card_id is None or check is None:
        return None
    return next((c for c in ws.list_scorecards(check.run_id) if c.id == card_id), None)


def scorecard_view(card) -> None:
    """The means per model, then every row (prompt, expected, each answer and its scores)."""
    with st.container(key="score_results"):
        summary = card.summary
        st.markdown(
            f"**Scorecard {card.id}** · {summary['dataset']['name']} · {summary['n']} rows · "
            f"{summary['preset']}, seed {summary['settings'].get('seed')} · "
            f"{summary.get('seconds', 0):.1f} s"
        )
        st.dataframe(evaluation.scorecard_means(card), hide_index=True, width="stretch")
        st.dataframe(_shown_answers(card), hide_index=True, width="stretch")


def _shown_answers(card) -> list[dict]:
    """The scorecard's rows with a blank answer saying so, as chat does ('only whitespace: ...')."""
    answer_columns = [m["label"] for m in card.summary.get("models", {}).values()]
    table = evaluation.scorecard_table(card)
    for line in table:
        for column in answer_columns:
            note = blank_text_note(line[column] or "")
            if note:
                line[column] = f"({note})"
    return table


def scorecards_list(ws) -> None:
    """Home: past scorecards per run, newest first (the means of each model)."""
    with st.container(key="scorecards"):
        st.subheader("Scorecards")
        try:
            with ws.session():
                cards = ws.list_scorecards()
                runs = {r.id: r.name for r in ws.list_runs()}
        except FFError as exc:
            st.error(str(exc))
            return
        if not cards:
            st.caption("No scorecards yet: use Score on the Inference page.")
            return
        for run_id in dict.fromkeys(c.run_id for c in cards):
            st.markdown(f"**{runs.get(run_id) or _removed_label(cards, run_id)}**")
            rows = []
            for card in (c for c in cards if c.run_id == run_id):
                for mean in evaluation.scorecard_means(card):
                    rows.append(
                        {
                            "When": f"{card.created_at:%Y-%m-%d %H:%M}",
                            "Dataset": card.summary.get("dataset", {}).get("name"),
                            "Rows": card.summary.get("n"),
                            **mean,
                        }
                    )
            st.dataframe(rows, hide_index=True, width="stretch")


def _removed_label(cards, run_id: int) -> str:
    """A removed run's scorecards stay: named as they were when scored."""
    card = next(c for c in cards if c.run_id == run_id)
    label = card.summary.get("models", {}).get("run", {}).get("label") or f"run {run_id}"
    return f"{label} (removed)"


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
                    st.markdown(f"**{_md_escape(replay.original_label)}** (stored)")
                    st.html(diff_html(left))
                    _blank_note(turn.original)
                with after:
                    st.markdown(f"**{_md_escape(replay.run_name)}** (replayed)")
                    st.html(diff_html(right))
                    _blank_note(turn.replayed)


def _blank_note(text: str | None) -> None:
    if note := blank_text_note(text or ""):
        st.caption(note)


def _md_escape(text: str) -> str:
    """A run name inside Markdown bold, its Markdown specials shown literally (st.markdown
    never renders HTML without unsafe_allow_html)."""
    out = text or ""
    for char in "\\`*_{}[]()#+-.!|~>:$<":
        out = out.replace(char, "\\" + char)
    return out
