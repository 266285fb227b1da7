"""One turn of the shared conversation as a page shows it: the status, the prompt, the streams.

Used by Generate on the Inference page and by Send in the dialog and on the Full Chat page, so
all three append to the same history and the same stored conversation. What is stored (prompt,
reply, the compared answers, how a stopped turn ends) is ff_lib.chat.turn's.
"""

from collections.abc import Sequence
from dataclasses import asdict

import streamlit as st

from ff_lib.chat import model_messages, turn_meta
from ff_lib.chat.compared import first_label
from ff_lib.compare import compare_sides, side_provenance
from ff_lib.errors import FFError
from ff_lib.inference import DEFAULT_PRESET, PRESETS, GenerationSettings
from ff_lib.runs import check_run
from ff_lib.ui import conversation, resources, selection, state
from ff_lib.ui.explain import why_control
from ff_lib.ui.widgets import (
    figures_caption,
    prompt_view,
    say_notes,
    side_figures_caption,
    status_line,
)

NO_ADAPTER_MESSAGE = "No validated adapter: choose a completed training run on the Inference page."


def current_settings() -> GenerationSettings:
    """The settings chosen on the Inference page, else the default preset."""
    chosen = st.session_state.get(state.MODEL_SETTINGS)
    return GenerationSettings(**chosen) if chosen else PRESETS[DEFAULT_PRESET]


def _recheck(ws, compare_with: Sequence = ()):
    """Check the selected run again (its folder may have changed since it was chosen), and the
    models to compare it with; (check, sides) or None with the status saying why."""
    if (problem := selection.engine_problem()) is not None:
        selection.set_status("error", f"{selection.NOT_REACHABLE_MESSAGE} {problem}")
        return None
    sel = selection.ready_selection()
    if sel is None:
        selection.set_status("error", NO_ADAPTER_MESSAGE)
        return None
    check = check_run(ws.get_run(sel.run_id), sel.base_model, resources.check_adapter)
    st.session_state[state.MODEL_SELECTION] = check
    if not check.ok:
        selection.set_status("error", check.message)
        return None
    notes: list[str] = []  # a checkpoint compared for the first time is registered as a run
    sides = compare_sides(ws, check, list(compare_with), resources.check_adapter, notes)
    say_notes(notes)
    return check, sides


def _reply_area(chat: bool, labels: list[str]):
    """Where the streaming replies go: a bubble, or the Response part of a Prompt/Response
    block; one column per model when compared."""
    block = st.chat_message("assistant") if chat else st.container(border=True)
    if not chat:
        block.caption("Response")
    if len(labels) == 1:
        return [block]
    columns = block.columns(len(labels))
    for column, label in zip(columns, labels, strict=True):
        column.markdown(f"**{label}**")
    return columns


def run_turn(
    ws,
    prompt: str,
    *,
    chat: bool,
    compare_with: Sequence = (),
    status_slot=None,
) -> bool:
    """Answer `prompt` with the selected run (and beside it each model of `compare_with`: 'base'
    or run ids, in one batched pass); True when the reply completed.

    `chat` renders bubbles (chat views) instead of a Prompt/Response block; `status_slot` is
    an st.empty() holding the status line, refreshed as the status changes.
    """
    try:
        checked = _recheck(ws, compare_with)
    except FFError as exc:  # the run is gone, a compared model is refused, or the workspace
        selection.set_status("error", str(exc))  # is locked by another process
        checked = None
    if checked is None:
        _show_status(status_slot, *selection.status())
        return False
    check, sides = checked
    settings = current_settings()
    host = resources.host()
    prior = conversation.history()
    turn = _open_turn(ws, prompt, check, sides, settings, host, status_slot)
    if turn is None:
        return False
    ok = False
    try:
        messages = model_messages(prior, prompt)
        _stream_turn(turn, host, [check, *sides], messages, settings, chat, status_slot)
        ok = True
        selection.reset_status()
    except FFError as exc:
        turn.fail(str(exc))
        selection.set_status("error", str(exc))
    finally:
        # Also on Stop: the page reruns in a new thread and this one unwinds through here, where
        # every st call raises again, so the turn is finished before the page state is touched.
        try:
            turn.close()
        except FFError as exc:  # the reply stays in the history; loading it again marks it
            selection.set_status("error", str(exc))
        conversation.end_turn(turn.message)
        if selection.status()[0] in ("generating", "waiting"):
            selection.reset_status()
    _show_status(status_slot, *selection.status())
    return ok


def _open_turn(ws, prompt: str, check, sides, settings, host, status_slot):
    """Say that the model is loading or generating, and store the prompt and the open reply;
    None (and a red status) when the workspace refuses the write: nothing is sent then."""
    loaded = host.info()
    first = loaded is None or str(loaded.base_model) != str(check.base_model)
    detail = selection.LOADING_MESSAGE if first else selection.GENERATING_MESSAGE
    _show_status(status_slot, "generating", detail)
    try:
        return conversation.start_turn(
            ws,
            prompt,
            run_id=check.run_id,
            run_meta=check.as_meta(),
            meta=turn_meta(check.as_meta(), check.base_model, check.adapter_dir, asdict(settings)),
            sides=[side_provenance(side) for side in sides],
        )
    except FFError as exc:  # e.g. the workspace is locked by another process
        _show_status(status_slot, "error", str(exc))
        return None


def _stream_turn(turn, host, models, messages, settings, chat: bool, status_slot) -> None:
    """Show the prompt, then stream the reply, and in compare mode each other model's beside it.

    Every model's stream is started before any is read: they decode together in the engine's
    batch, and a side's text waits in its stream until the columns before it were shown.
    """
    detail = selection.status()[1]
    prompt_view(turn.prompt.content, key=f"live_{turn.reply_id}", chat=chat)
    labels = [first_label(turn.recorder.meta)] + [side["label"] for side in turn.sides]
    areas = _reply_area(chat, labels if turn.compare else labels[:1])
    stop_slot = st.empty()
    stop_slot.button("Stop", key=f"stop_{turn.reply_id}", icon=":material/stop:")

    def on_wait() -> None:
        _show_status(status_slot, "waiting", selection.WAITING_MESSAGE)

    base = models[0].base_model
    streams = [
        host.stream_reply(base, messages, settings, m.adapter_path, on_wait=on_wait) for m in models
    ]
    try:
        if len(streams) > 1:
            for stream in streams:
                stream.start()
        with areas[0], st.spinner("Generating...", show_time=True):
            st.write_stream(_after_wait(turn.reply_pieces(streams[0]), status_slot, detail))
            figures_caption(turn.message.meta)  # shown now: a chat view does not rerun after
            why_control(turn.message, key="live")
        for i, (area, stream) in enumerate(zip(areas[1:], streams[1:], strict=True)):
            with area, st.spinner(f"{labels[i + 1]}...", show_time=True):
                st.write_stream(_after_wait(turn.side_pieces(i, stream), status_slot, detail))
                side_figures_caption(turn.message.meta["compare_replies"][i])
    finally:
        for stream in streams[1:]:
            stream.close()  # a Stop (or an error) before a side was read
    stop_slot.empty()


def _after_wait(pieces, slot, detail: str):
    """Pass the pieces through; once a wait for the model ends, the status says generating."""
    for piece in pieces:
        if selection.status()[0] == "waiting":
            _show_status(slot, "generating", detail)
        yield piece


def _show_status(slot, status: str, detail: str) -> None:
    selection.set_status(status, detail)
    if slot is not None:
        with slot.container():
            status_line(status, detail)
