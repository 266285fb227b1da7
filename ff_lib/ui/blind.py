"""The Blind test page's state and panels: two models, answers shown as A and B (sides shuffled
per prompt), a vote, the reveal, the running tally and the DPO download. Logic: ff_lib.votes."""

import dataclasses

import streamlit as st

from ff_lib.chat import blank_text_note
from ff_lib.compare import (
    BASE,
    checkpoint_run,
    compare_choices,
    compare_sides,
    is_checkpoint_key,
    model_choices,
)
from ff_lib.errors import FFError, InvalidInput
from ff_lib.inference import DEFAULT_PRESET, PRESETS
from ff_lib.runs import check_run
from ff_lib.ui import resources, state
from ff_lib.ui.inference_controls import max_new_tokens_top
from ff_lib.ui.widgets import say_notes
from ff_lib.votes import (
    TALLY_RULE,
    VERDICT_LABELS,
    between,
    blind_pair,
    dpo_export,
    model_key,
    same_answers,
    tally,
    tally_table,
)

DPO_FILE = "blind-votes-dpo.jsonl"


def init_state() -> None:
    defaults = {
        state.BLIND_FIRST: None,
        state.BLIND_SECOND: None,
        state.BLIND_DATASET: None,
        state.BLIND_PROMPT: "",
        state.BLIND_PRESET: DEFAULT_PRESET,
        state.BLIND_MAX_NEW_TOKENS: int(PRESETS[DEFAULT_PRESET].max_new_tokens),
        state.BLIND_PAIR: None,
        state.BLIND_VOTE: None,
        state.BLIND_MESSAGE: None,
    }
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def first_model(ws):
    """The `First model` box (runs, then checkpoints of runs; ✗ and why on those that cannot
    answer); its RunCheck. A checkpoint answers as a run (registered as one if needed)."""
    choices = model_choices(ws.list_runs(), resources.check_adapter)
    labels = {c.key: c.label for c in choices}
    if st.session_state[state.BLIND_FIRST] not in labels:
        st.session_state[state.BLIND_FIRST] = next((c.key for c in choices if c.ok), None)
    key = st.selectbox("First model", list(labels), format_func=labels.get, key=state.BLIND_FIRST,
                       placeholder="Choose a run", on_change=_new_first_model)  # fmt: skip
    if key is None:
        return None
    notes: list[str] = []  # a checkpoint chosen for the first time is registered as a run
    try:
        run = checkpoint_run(ws, key, notes) if is_checkpoint_key(key) else ws.get_run(key)
    except FFError as exc:
        st.error(str(exc))
        return None
    say_notes(notes)
    return check_run(run, None, resources.check_adapter)


def _new_first_model() -> None:
    """A newly chosen first model starts on its own dataset (see prompt_controls), without the
    last round, whose answers were other models'."""
    st.session_state[state.BLIND_DATASET] = None
    _forget_round()


def _forget_round() -> None:
    st.session_state[state.BLIND_PAIR] = st.session_state[state.BLIND_VOTE] = None


def second_model(ws, first) -> list:
    """The `Second model` box: the base, another run on the first one's base or a checkpoint of
    one. The two sides, checked and ready (first, second), or [] with the reason shown."""
    if first is None or not first.ok:
        if first is not None:
            st.error(first.message)
        st.session_state[state.BLIND_SECOND] = None
        st.selectbox("Second model", [], key=state.BLIND_SECOND, disabled=True)
        return []
    choices = compare_choices(first, ws.list_runs(), resources.check_adapter, checkpoints=True)
    labels = {c.key: c.label for c in choices}
    if st.session_state[state.BLIND_SECOND] not in labels:
        st.session_state[state.BLIND_SECOND] = BASE
    key = st.selectbox("Second model", list(labels), format_func=labels.get,
                       key=state.BLIND_SECOND, on_change=_forget_round)  # fmt: skip
    notes: list[str] = []
    try:
        sides = [first, *compare_sides(ws, first, [key], resources.check_adapter, notes)]
        say_notes(notes)
        return sides
    except FFError as exc:
        st.error(str(exc))
        return []


def draw_prompt(ws) -> None:
    """`Draw a prompt`: one random row's prompt of the chosen dataset fills `Prompt`."""
    ss = st.session_state
    try:
        if ss[state.BLIND_DATASET] is None:
            raise InvalidInput("No dataset chosen: choose one to draw a prompt from.")
        ss[state.BLIND_PROMPT] = ws.sample_prompts(ss[state.BLIND_DATASET], k=1)[0].prompt
    except (FFError, IndexError) as exc:
        ss[state.BLIND_MESSAGE] = str(exc) if isinstance(exc, FFError) else "The dataset is empty."


def on_preset_change() -> None:
    """A preset sets `Max new tokens` to its own, as on the Inference page."""
    preset = PRESETS[st.session_state[state.BLIND_PRESET]]
    st.session_state[state.BLIND_MAX_NEW_TOKENS] = int(preset.max_new_tokens)


def prompt_controls(ws, first=None) -> None:
    """`Dataset` + `Draw a prompt`, the `Prompt` box, `Preset` and `Max new tokens`. The dataset
    starts as the first model's own (its run's training data), else the first one, and starts
    again so when another first model is chosen."""
    datasets = {d.id: f"{d.name} ({d.rows} rows)" for d in ws.list_datasets()}
    if st.session_state[state.BLIND_DATASET] not in datasets:
        own = getattr(getattr(first, "run", None), "dataset_id", None)
        st.session_state[state.BLIND_DATASET] = (
            own if own in datasets else next(iter(datasets), None)
        )
    ds_col, draw_col = st.columns([3, 1], vertical_alignment="bottom")
    ds_col.selectbox("Dataset", list(datasets), format_func=datasets.get, key=state.BLIND_DATASET)
    draw_col.button("Draw a prompt", on_click=draw_prompt, args=(ws,), key="blind_draw",
                    disabled=not datasets, icon=":material/casino:")  # fmt: skip
    st.text_area("Prompt", key=state.BLIND_PROMPT, placeholder="Type a prompt or draw one")
    preset_col, tokens_col = st.columns(2)
    preset_col.radio("Preset", list(PRESETS), key=state.BLIND_PRESET, horizontal=True,
                     on_change=on_preset_change)  # fmt: skip
    base = first.base_model if first is not None and first.ok else None
    top = max_new_tokens_top(state.BLIND_MAX_NEW_TOKENS, base, 8, 8)
    tokens_col.slider("Max new tokens", 8, top, step=8, key=state.BLIND_MAX_NEW_TOKENS)


def engine_ready() -> bool:
    """Whether this session's engine answers now; when not, says so in red (Generate locks)."""
    problem = resources.engine_problem(resources.host())
    if problem is not None:
        st.error(f"The engine is not reachable: nothing answers now. {problem}",
                 icon=":material/cloud_off:")  # fmt: skip
    return problem is None


def generate(sides: list) -> None:
    """Both models answer the prompt in one batched pass; the pair shown is replaced."""
    ss = st.session_state
    settings = dataclasses.replace(PRESETS[ss[state.BLIND_PRESET]],
                                   max_new_tokens=int(ss[state.BLIND_MAX_NEW_TOKENS]))  # fmt: skip
    try:
        with st.spinner("Both models are answering…"):
            pair = blind_pair(resources.host(), sides, ss[state.BLIND_PROMPT], settings)
    except FFError as exc:
        ss[state.BLIND_MESSAGE] = str(exc)
        return
    ss[state.BLIND_PAIR], ss[state.BLIND_VOTE] = pair, None


def cast_vote(ws, verdict: str) -> None:
    ss = st.session_state
    pair = ss[state.BLIND_PAIR]
    if pair is None or ss[state.BLIND_VOTE] is not None:
        return
    try:
        ss[state.BLIND_VOTE] = ws.add_vote(**pair.vote_fields(verdict))
    except FFError as exc:
        ss[state.BLIND_MESSAGE] = str(exc)


def shown_answer(text: str) -> str:
    """The answer as shown: '(no text)', or '(only whitespace: 16 newlines)' for a blank one."""
    if not text:
        return "(no text)"
    note = blank_text_note(text)
    return f"({note})" if note else text


def pair_view(ws) -> None:
    """Answers A and B, the four vote buttons; after the vote, who was who."""
    pair, vote = st.session_state[state.BLIND_PAIR], st.session_state[state.BLIND_VOTE]
    if pair is None:
        st.caption("Generate to see two answers, as A and B in a random order.")
        return
    st.markdown(f"**Prompt:** {pair.prompt}")
    for col, side, answer in zip(st.columns(2), "AB", (pair.answer_a, pair.answer_b), strict=True):
        with col.container(border=True):
            st.markdown(f"#### {side}")
            st.text(shown_answer(answer))
    if same_answers(pair.answer_a, pair.answer_b):
        st.info(
            "A and B gave the same answer: “Tie” says so. A vote for one side is kept in the "
            "tally but left out of the DPO export (chosen would equal rejected).",
            icon=":material/drag_handle:",
        )
    buttons = st.columns(len(VERDICT_LABELS))
    for col, (verdict, label) in zip(buttons, VERDICT_LABELS.items(), strict=True):
        col.button(label, key=f"blind_vote_{verdict}", on_click=cast_vote, args=(ws, verdict),
                   disabled=vote is not None, width="stretch")  # fmt: skip
    if vote is not None:
        st.success(
            f"Vote stored: {VERDICT_LABELS[vote.verdict]}. A was **{pair.model_a['label']}** · "
            f"B was **{pair.model_b['label']}**.",
            icon=":material/visibility:",
        )


def tally_view(ws, sides: list) -> None:
    """Each of the chosen models' win rate over the votes between them, and the DPO download."""
    votes = ws.list_votes()
    st.subheader("Tally")
    if len(sides) == 2:
        names = " vs ".join(f"**{s.label}**" for s in sides)
        shown = between(votes, [model_key(s) for s in sides])
        if shown:
            st.markdown(f"{names}: {len(shown)} vote(s)")
            st.dataframe(tally_table(tally(shown)), hide_index=True, width="stretch")
        else:
            st.caption(f"No votes between {names} yet.")
    st.caption(TALLY_RULE)
    export = dpo_export(votes)
    st.download_button(
        "Download DPO pairs (JSONL)",
        data=export.jsonl(),
        file_name=DPO_FILE,
        mime="application/jsonl",
        disabled=not export.pairs,
        icon=":material/download:",
        key="blind_download_dpo",
    )
    st.caption(
        f"All {len(votes)} vote(s) of this workspace: {len(export.pairs)} preference pair(s) "
        f"(prompt, chosen, rejected: TRL's DPO format); left out {export.ties} tie(s) and "
        f"{export.both_bad} “both bad”"
        + (f", and {export.same} vote(s) between identical answers." if export.same else ".")
    )
