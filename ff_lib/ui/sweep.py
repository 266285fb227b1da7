"""Inference page: "Sweep checkpoints on a dataset" (chart, table, exports, chat with the best);
Home: the stored sweeps. The logic is ff_lib.sweep; this module only draws it."""

import json

import altair as alt
import streamlit as st

from ff_lib import sweep
from ff_lib.errors import FFError
from ff_lib.ui import inference_controls as ctl
from ff_lib.ui import resources, state
from ff_lib.ui.widgets import say_notes

SWEEP_DATASET = "sweep_dataset"
SWEEP_ROWS = "sweep_rows"
SWEEP_DATASET_RUN = "sweep_dataset_run"  # int: the run the Sweep dataset was defaulted for
SWEEP_RESULT = "sweep_result"  # dict: the last sweep document shown on the Inference page
LOSS_LABELS = {"loss": "train loss", "eval_loss": "eval loss"}
METRIC_LABELS = {"exact_match": "exact match", "token_f1": "token F1", "rouge_l": "ROUGE-L"}
# Drawn as SVG (a few dozen marks): crisp at any zoom, its labels are text a reader (and a
# browser test) can find; Streamlit's default for Vega-Lite is a canvas.
SVG = {"embedOptions": {"renderer": "svg"}}
# Fit the column's width only: fitting the height too squeezed the plot into what the title,
# axes and legend left of 260 px.
FIT_X = alt.AutoSizeParams(type="fit-x", contains="padding")
POINTS = alt.OverlayMarkDef(size=70, filled=True)  # big enough for their shapes to be told apart
METRIC_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c"]  # Tableau 10: three hues told apart


def sweep_panel(ws, check, locked: bool) -> None:
    """The expander, shown only for a training run whose folder holds checkpoint-N folders; for
    a checkpoint registered as a run, a line that says which run to sweep instead."""
    if check is None or check.run is None or not check.run.adapter_path:
        return
    if not sweep.has_checkpoints(sweep.run_folder(check.run.adapter_path)):
        return
    try:
        refusal = sweep.checkpoint_refusal(ws, check.run)
    except FFError as exc:
        refusal = str(exc)
    if refusal:
        st.caption(f"Sweep checkpoints: {refusal}")
        return
    with st.expander("Sweep checkpoints on a dataset", key="sweep_panel",
                     icon=":material/timeline:"):  # fmt: skip
        try:
            with ws.session():
                datasets = ws.list_datasets()
        except FFError as exc:
            st.error(str(exc))
            return
        if not datasets:
            st.caption("No datasets in the workspace: import one to sweep against.")
            return
        _default_dataset([d.id for d in datasets], check.run)
        ids = [d.id for d in datasets]
        labels = {d.id: f"{d.name} ({d.rows} rows)" for d in datasets}
        data_col, rows_col = st.columns([3, 1], vertical_alignment="bottom")
        data_col.selectbox("Sweep dataset", ids, format_func=labels.get, key=SWEEP_DATASET,
                           disabled=locked)  # fmt: skip
        rows_col.number_input("Sweep rows", min_value=1, max_value=sweep.MAX_SCORE_ROWS,
                              value=sweep.DEFAULT_SCORE_ROWS, key=SWEEP_ROWS, disabled=locked)  # fmt: skip
        st.caption(
            "Every checkpoint, the final adapter and the base answer the rows in one batched "
            "pass (Deterministic preset, seed 0). Best: highest exact match, then token F1."
        )
        if st.button("Sweep", key="sweep_button", disabled=locked, icon=":material/timeline:"):
            try:
                with st.spinner("Answering with every checkpoint..."):
                    st.session_state[SWEEP_RESULT] = sweep.sweep_run(
                        resources.host(), ws, check.run_id, st.session_state[SWEEP_DATASET],
                        n=int(st.session_state[SWEEP_ROWS]))  # fmt: skip
            except FFError as exc:
                st.error(str(exc))
                return
        doc = st.session_state.get(SWEEP_RESULT)
        if doc is not None and doc["run"]["id"] == check.run_id:
            sweep_result(ws, doc)


def _default_dataset(ids: list[int], run) -> None:
    """A newly chosen run starts on its own dataset (when the workspace has it), as Score does:
    a dataset kept from the run chosen before would sweep this run on the wrong rows."""
    ss = st.session_state
    if ss.get(SWEEP_DATASET) not in ids or ss.get(SWEEP_DATASET_RUN) != run.id:
        ss[SWEEP_DATASET] = run.dataset_id if run.dataset_id in ids else ids[0]
        ss[SWEEP_DATASET_RUN] = run.id


def _last_step(doc: dict) -> int:
    steps = [p["step"] for p in doc["points"] if p["step"] is not None]
    return max(steps + [e["step"] for e in doc.get("loss_history", [])] or [1])


def _step_axis(doc: dict) -> alt.X:
    """One training-step axis for both charts, from 0 to the last step, so they line up."""
    return alt.X("step:Q", title="training step", scale=alt.Scale(domain=[0, _last_step(doc)]))


def score_chart(doc: dict) -> alt.LayerChart | alt.Chart:
    """Exact match, token F1 and ROUGE-L against the step, the best checkpoint marked. Each
    metric has its own colour, dash and point shape: metrics that agree draw one line over
    another, and the dash and shapes still show both."""
    series = [{**row, "metric": METRIC_LABELS[row["metric"]]} for row in sweep.score_series(doc)]
    metrics = alt.Scale(domain=list(METRIC_LABELS.values()), range=METRIC_COLOURS)
    legend = alt.Legend(orient="bottom", title=None)
    lines = alt.Chart(alt.Data(values=series)).mark_line(point=POINTS).encode(
        x=_step_axis(doc),
        y=alt.Y("value:Q", title="score", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("metric:N", scale=metrics, legend=legend),
        strokeDash=alt.StrokeDash("metric:N", scale=alt.Scale(
            domain=list(METRIC_LABELS.values()), range=[[1, 0], [6, 3], [2, 2]]), legend=legend),
        shape=alt.Shape("metric:N", legend=legend),
        tooltip=["name:N", "step:Q", "metric:N", "value:Q"],
    )  # fmt: skip
    chart = lines
    step = doc["best"]["step"]
    if step is not None:
        rule = alt.Chart(alt.Data(values=[{"step": step, "label": f"best: {doc['best']['name']}"}]))
        # The label sits on the side of the rule with more room, so it is never cut off.
        right_half = step > _last_step(doc) / 2
        label = rule.mark_text(align="right" if right_half else "left", baseline="bottom",
                               dx=-4 if right_half else 4)  # fmt: skip
        chart = (
            lines
            + rule.mark_rule(strokeDash=[4, 4], color="gray").encode(x="step:Q")
            + label.encode(x="step:Q", y=alt.value(-4), text="label:N")  # just above the plot
        )
    return chart.properties(title="Scores by checkpoint", height=260, usermeta=SVG, autosize=FIT_X)


def loss_chart(doc: dict) -> alt.Chart | None:
    """The train (and eval) loss the trainer logged, on the same step axis; None if none."""
    losses = [
        {"step": e["step"], "kind": LOSS_LABELS[key], "value": e[key]}
        for e in doc.get("loss_history", [])
        for key in LOSS_LABELS
        if key in e
    ]
    if not losses:
        return None
    return alt.Chart(alt.Data(values=losses)).mark_line(point=True).encode(
        x=_step_axis(doc), y=alt.Y("value:Q", title="logged loss"),
        color=alt.Color("kind:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["step:Q", "kind:N", "value:Q"],
    ).properties(title="Logged loss", height=260, usermeta=SVG, autosize=FIT_X)  # fmt: skip


def sweep_result(ws, doc: dict) -> None:
    best = doc["best"]
    st.markdown(f"**Best: {best['name']}** (step {best['step']}) of run "
                f"{doc['run']['name']} on {doc['n']} rows of {doc['dataset']['name']}; "
                f"base exact match {doc['base']['scores']['exact_match']:.2f}.")  # fmt: skip
    # Two charts in columns, each as wide as its column (a concatenated chart is not resized
    # to the page and was cut off at its right edge).
    loss = loss_chart(doc)
    score_col, loss_col = st.columns([3, 2]) if loss is not None else (st.container(), None)
    score_col.altair_chart(score_chart(doc), key="sweep_chart")
    if loss_col is not None:
        loss_col.altair_chart(loss, key="sweep_loss_chart")
    st.dataframe(sweep.sweep_table(doc), hide_index=True, width="stretch")
    csv_col, json_col, chat_col = st.columns(3)
    stem = f"sweep-{doc.get('sweep_id', 'run')}"
    csv_col.download_button("Download CSV", sweep.sweep_csv(doc), f"{stem}.csv", "text/csv",
                            on_click="ignore", key="sweep_csv")  # fmt: skip
    json_col.download_button("Download JSON", json.dumps(doc, indent=2, default=str),
                             f"{stem}.json", "application/json", on_click="ignore",
                             key="sweep_json")  # fmt: skip
    chat_col.button("Chat with this checkpoint", key="sweep_chat_best", on_click=_chat_with_best,
                    args=(ws, doc), icon=":material/chat:")  # fmt: skip


def _chat_with_best(ws, doc: dict) -> None:
    """Register the best checkpoint as a run (when none has its folder) and select it."""
    try:
        point = next(p for p in doc["points"] if p["name"] == doc["best"]["name"])
        notes: list[str] = []
        run = sweep.register_checkpoint(ws, ws.get_run(doc["run"]["id"]), point, notes)
        say_notes(notes)
        st.cache_data.clear()  # the run list and adapter checks
        st.session_state[state.INF_RUN] = run.id
        ctl.on_run_change(ws)
    except FFError as exc:
        st.session_state[state.INF_MESSAGE] = str(exc)


def sweeps_list(ws) -> None:
    """Home: the stored sweeps, newest first, with each one's best checkpoint."""
    with st.container(key="sweeps"):
        st.subheader("Checkpoint sweeps")
        try:
            with ws.session():
                sweeps = ws.list_sweeps()
        except FFError as exc:
            st.error(str(exc))
            return
        if not sweeps:
            st.caption("No sweeps yet: use Sweep checkpoints on the Inference page.")
            return
        rows = [
            {"When": f"{s.created_at:%Y-%m-%d %H:%M}", "Run": s.document["run"]["name"],
             "Dataset": s.document["dataset"]["name"], "Rows": s.n,
             "Checkpoints": len(s.document["points"]), "Best": s.document["best"]["name"],
             "Best step": s.document["best"]["step"],
             **{METRIC_LABELS[m]: v for m, v in _best_scores(s.document).items()}}
            for s in sweeps
        ]  # fmt: skip
        st.dataframe(rows, hide_index=True, width="stretch")


def _best_scores(doc: dict) -> dict:
    return next(p["scores"] for p in doc["points"] if p["name"] == doc["best"]["name"])
