"""The Score panel (Inference page), a scorecard's view with its chart, and Home's list.

Stable keys (for browser tests, `.st-key-<key>`): score_panel, score_dataset, score_rows,
score_compare_runs, score_button, score_unfinished, score_resume_<id>, score_results,
score_chart, score_disagree; scorecards.
"""

import altair as alt
import streamlit as st

from ff_lib import scorecards
from ff_lib.chat import blank_text_note
from ff_lib.compare import BASE, compare_choices
from ff_lib.errors import FFError
from ff_lib.ui import resources
from ff_lib.ui.state import (
    EVAL_SCORE_COMPARE_RUNS,
    EVAL_SCORE_DATASET,
    EVAL_SCORE_DISAGREE,
    EVAL_SCORE_ROWS,
    EVAL_SCORE_RUN,
    EVAL_SCORECARD_ID,
)

SCORE_NOTE = (
    "Answers use the Deterministic preset with seed 0; each is scored against the dataset's "
    "response (exact match, token F1, ROUGE-L). Answers are stored as they finish: a scorecard "
    "that stops (a closed tab, an error) keeps them and can be resumed."
)


def _progress_callback(bar):
    def progress(done: int, total: int, what: str) -> None:
        bar.progress(done / max(total, 1), text=f"Scoring... {done}/{total} · {what}")

    return progress


def score_panel(ws, check, locked: bool) -> None:
    """`Score`: base vs this run (vs any runs on its base) on a dataset; unfinished ones resume."""
    with st.expander("Score this run on a dataset", key="score_panel", icon=":material/grading:"):
        try:
            with ws.session():
                datasets = ws.list_datasets()
                runs = ws.list_runs()
                run = None if check is None else ws.get_run(check.run_id)
                cards = [] if check is None else ws.list_scorecards(check.run_id)
        except FFError as exc:
            st.error(str(exc))
            return
        if not datasets:
            st.caption("No datasets in the workspace: import one to score against.")
            return
        _score_inputs(datasets, runs, run, check, locked)
        st.caption(SCORE_NOTE)
        if st.button("Score", key="score_button", disabled=locked, icon=":material/grading:"):
            _score(ws, check)
        _unfinished(ws, [c for c in cards if c.status != "complete"], locked)
        card = _shown_scorecard(ws, check)
        if card is not None:
            scorecard_view(card)


def _score_inputs(datasets, runs, run, check, locked: bool) -> None:
    """The dataset (the run's own by default), the row count and the runs compared."""
    ids = [d.id for d in datasets]
    labels = {d.id: f"{d.name} ({d.rows} rows)" for d in datasets}
    run_key = None if run is None else run.id
    if (
        st.session_state.get(EVAL_SCORE_DATASET) not in ids
        or st.session_state.get(EVAL_SCORE_RUN) != run_key
    ):  # a newly chosen run starts on its own dataset (when it has one in the workspace)
        st.session_state[EVAL_SCORE_DATASET] = (
            run.dataset_id if run is not None and run.dataset_id in ids else ids[0]
        )
        st.session_state[EVAL_SCORE_RUN] = run_key
        st.session_state[EVAL_SCORE_COMPARE_RUNS] = []
    # Runs on this run's base; one that cannot answer is listed with ✗ and its reason.
    choices = [] if check is None else compare_choices(check, runs, resources.check_adapter)
    names = {c.key: c.label for c in choices if c.key != BASE}
    chosen = st.session_state.get(EVAL_SCORE_COMPARE_RUNS) or []
    st.session_state[EVAL_SCORE_COMPARE_RUNS] = [k for k in chosen if k in names]  # removed runs
    data_col, rows_col = st.columns([3, 1], vertical_alignment="bottom")
    data_col.selectbox(
        "Score dataset", ids, format_func=labels.get, key=EVAL_SCORE_DATASET, disabled=locked
    )
    rows_col.number_input(
        "Rows",
        min_value=1,
        max_value=scorecards.MAX_SCORE_ROWS,
        value=scorecards.DEFAULT_SCORE_ROWS,
        key=EVAL_SCORE_ROWS,
        disabled=locked,
    )
    st.multiselect(
        "Compare with runs",
        list(names),
        format_func=names.get,
        key=EVAL_SCORE_COMPARE_RUNS,
        placeholder="(base model and this run only)",
        select_all=False,  # each compared run is a choice; runs that cannot answer are listed
        disabled=locked,
    )


def _score(ws, check) -> None:
    if check is None:
        return
    bar = st.progress(0.0, text="Scoring...")
    try:
        card = scorecards.score_run(
            resources.host(),
            ws,
            check.run_id,
            st.session_state[EVAL_SCORE_DATASET],
            n=int(st.session_state[EVAL_SCORE_ROWS]),
            compare_run_ids=list(st.session_state.get(EVAL_SCORE_COMPARE_RUNS) or []),
            base_model=check.base_model,
            progress=_progress_callback(bar),
        )
    except FFError as exc:
        bar.empty()
        st.error(str(exc), icon=":material/error:")
        return
    bar.empty()
    st.session_state[EVAL_SCORECARD_ID] = card.id


def _unfinished(ws, cards, locked: bool) -> None:
    """Scorecards that stopped before the end: what they hold, and a Resume button each."""
    if not cards:
        return
    with st.container(key="score_unfinished"):
        for card in cards:
            text_col, button_col = st.columns([5, 2], vertical_alignment="center")
            done = len(ws.scorecard_rows(card.id))
            total = card.summary.get("n", 0) * len(card.summary.get("models", {}))
            text_col.caption(
                f"Scorecard {card.id} ({card.status}) · "
                f"{card.summary.get('dataset', {}).get('name')} · {done}/{total} answers stored"
            )
            if button_col.button(
                "Resume", key=f"score_resume_{card.id}", disabled=locked, icon=":material/replay:"
            ):
                _resume(ws, card.id)


def _resume(ws, card_id: int) -> None:
    bar = st.progress(0.0, text="Scoring...")
    try:
        card = scorecards.resume_scorecard(
            resources.host(), ws, card_id, progress=_progress_callback(bar)
        )
    except FFError as exc:
        bar.empty()
        st.error(str(exc), icon=":material/error:")
        return
    bar.empty()
    st.session_state[EVAL_SCORECARD_ID] = card.id
    st.rerun()  # the list of unfinished scorecards above was drawn before it completed


def _shown_scorecard(ws, check):
    card_id = st.session_state.get(EVAL_SCORECARD_ID)
    if card_id is None or check is None:
        return None
    return next((c for c in ws.list_scorecards(check.run_id) if c.id == card_id), None)


def means_chart(card) -> alt.Chart:
    """A bar per model, grouped by metric (exact match, token F1, ROUGE-L), scores 0 to 1."""
    return (
        alt.Chart(alt.Data(values=scorecards.means_long(card)))
        .mark_bar()
        .encode(
            x=alt.X("Metric:N", title=None, sort=list(scorecards.METRIC_NAMES.values())),
            xOffset=alt.XOffset("Model:N"),
            y=alt.Y("Score:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("Model:N"),
            tooltip=["Model:N", "Metric:N", alt.Tooltip("Score:Q", format=".2f")],
        )
    )


def scorecard_view(card) -> None:
    """The means per model (a table and a bar chart), then the rows (optionally only those
    where the models' answers differ)."""
    with st.container(key="score_results"):
        summary = card.summary
        st.markdown(
            f"**Scorecard {card.id}** · {summary['dataset']['name']} · {summary['n']} rows · "
            f"{summary['preset']}, seed {summary['settings'].get('seed')} · "
            f"{summary.get('seconds', 0):.1f} s"
        )
        st.dataframe(scorecards.scorecard_means(card), hide_index=True, width="stretch")
        with st.container(key="score_chart"):
            st.altair_chart(means_chart(card), width="stretch")
        only = st.toggle("Only rows where the models disagree", key=EVAL_SCORE_DISAGREE)
        table = _shown_answers(card, only)
        if only and not table:
            st.caption("The models gave the same answer on every row.")
        st.dataframe(table, hide_index=True, width="stretch")


def _shown_answers(card, disagreeing_only: bool) -> list[dict]:
    """The scorecard's rows with a blank answer saying so, as chat does ('only whitespace: ...')."""
    answer_columns = [m["label"] for m in card.summary.get("models", {}).values()]
    table = scorecards.scorecard_table(card, disagreeing_only)
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
            st.dataframe(_list_rows(c for c in cards if c.run_id == run_id), hide_index=True,
                         width="stretch")  # fmt: skip


def _list_rows(cards) -> list[dict]:
    rows = []
    for card in cards:
        head = {
            "When": f"{card.created_at:%Y-%m-%d %H:%M}",
            "Dataset": card.summary.get("dataset", {}).get("name"),
            "Rows": card.summary.get("n"),
            "Status": card.status,
        }
        means = scorecards.scorecard_means(card)
        rows += [{**head, **mean} for mean in means] or [head]  # unfinished: no means yet
    return rows


def _removed_label(cards, run_id: int) -> str:
    """A removed run's scorecards stay: named as they were when scored."""
    card = next(c for c in cards if c.run_id == run_id)
    label = card.summary.get("models", {}).get("run", {}).get("label") or f"run {run_id}"
    return f"{label} (removed)"
