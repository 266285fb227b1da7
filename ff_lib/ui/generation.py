"""One turn of the shared conversation as a page shows it: the status, the prompt, the streams.

Used by Generate on the Inference page and by Send in the dialog and on the Full Chat page, so
all three append to the same history and the same stored conversation. What is stored (prompt,
reply, base answer, how a stopped turn ends) is ff_lib.chat.turn's.
"""

from dataclasses import asdict
from pathlib import Path

import streamlit as st

from ff_lib.chat import model_messages, turn_meta
from ff_lib.errors import FFError
from ff_lib.inference import DEFAULT_PRESET, PRESETS, GenerationSettings
from ff_lib.runs import check_run
from ff_lib.ui import conversation, resources, selection, state
from ff_lib.ui.explain import why_control
from ff_lib.ui.widgets import figures_caption, prompt_view, status_line

NO_ADAPTER_MESSAGE = "No validated adapter: choose a completed training run on the Inference page."


def current_settings() -> GenerationSettings:
    """The settings chosen on the Inference page, else the default preset."""
    chosen = st.session_state.get(state.MODEL_SETTINGS)
    return GenerationSettings(**chosen) if chosen else PRESETS[DEFAULT_PRESET]


def _recheck(ws):
    """Check the selected run again (its folder may have changed since it was chosen)."""
    sel = selection.ready_selection()
    if sel is None:
        selection.set_status("error", NO_ADAPTER_MESSAGE)
        return None
    check = check_run(ws.get_run(sel.run_id), sel.base_model, resources.check_adapter)
    st.session_state[state.MODEL_SELECTION] = check
    if not check.ok:
        selection.set_status("error", check.message)
        return None
    return check


def _reply_area(chat: bool, compare: bool):
    """Where the streaming reply(es) go: a bubble, or the Response part of a Prompt/Response block."""
    block = st.chat_message("assistant") if chat else st.container(border=True)
    if not chat:
        block.caption("Response")
    if not compare:
        return block, None
    left, right = block.columns(2)
    left.markdown("**Fine-tuned**")
    right.markdown("**Base model**")
    return left, right


def run_turn(
    ws,
    prompt: str,
    *,
    chat: bool,
    compare: bool = False,
    status_slot=None,
) -> bool:
    """Answer `prompt` with the selected run; True when the reply completed.

    `chat` renders bubbles (chat views) instead of a Prompt/Response block; `status_slot` is
    an st.empty() holding the status line, refreshed as the status changes.
    """
    try:
        check = _recheck(ws)
    except FFError as exc:  # the run is gone, or the workspace is locked by another process
        selection.set_status("error", str(exc))
        check = None
    if check is None:
        _show_status(status_slot, *selection.status())
        return False
    settings = current_settings()
    host = resources.host()
    loaded = host.info()
    first = loaded is None or str(loaded.base_model) != str(check.base_model)
    detail = selection.LOADING_MESSAGE if first else selection.GENERATING_MESSAGE
    _show_status(status_slot, "generating", detail)
    prior = conversation.history()
    try:
        turn = conversation.start_turn(
            ws,
            prompt,
            run_id=check.run_id,
            run_meta=check.as_meta(),
            meta=turn_meta(check.as_meta(), check.base_model, check.adapter_dir, asdict(settings)),
            compare=compare,
        )
    except FFError as exc:  # e.g. the workspace is locked by another process: nothing sent
        _show_status(status_slot, "error", str(exc))
        return False
    ok = False
    try:
        _stream_turn(turn, host, check, model_messages(prior, prompt), settings, chat, status_slot)
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


def _stream_turn(turn, host, check, messages, settings, chat: bool, status_slot) -> None:
    """Show the prompt, then stream the reply (and the base model's, in compare mode)."""
    detail = selection.status()[1]
    prompt_view(turn.prompt.content, key=f"live_{turn.reply_id}", chat=chat)
    main_area, base_area = _reply_area(chat, turn.compare)
    stop_slot = st.empty()
    stop_slot.button("Stop", key=f"stop_{turn.reply_id}", icon=":material/stop:")

    def on_wait() -> None:
        _show_status(status_slot, "waiting", selection.WAITING_MESSAGE)

    base_stream = None
    try:
        with main_area, st.spinner("Generating...", show_time=True):
            stream = host.stream_reply(
                check.base_model, messages, settings, Path(check.adapter_dir), on_wait=on_wait
            )
            if turn.compare:
                # Both sides decode together in the engine's batch; the base side's text waits
                # in its stream until the fine-tuned reply has been shown.
                base_stream = host.stream_reply(
                    check.base_model, messages, settings, None, on_wait=on_wait
                )
                stream.start()
                base_stream.start()
            st.write_stream(_after_wait(turn.reply_pieces(stream), status_slot, detail))
            figures_caption(turn.message.meta)  # shown now: a chat view does not rerun after
            why_control(turn.message, key="live")
        if base_stream is not None:
            with base_area, st.spinner("Base model...", show_time=True):
                st.write_stream(_after_wait(turn.base_pieces(base_stream), status_slot, detail))
                figures_caption(turn.message.meta.get("base_reply") or {})
    finally:
        if base_stream is not None:
            base_stream.close()  # a Stop (or an error) before the base side was read
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
