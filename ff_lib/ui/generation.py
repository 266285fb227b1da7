"""One turn of the shared conversation: store the prompt, stream the reply, keep what came.

Used by Generate on the Inference page and by Send in the dialog and on the Full Chat page, so
all three append to the same history and the same stored conversation.
"""

from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import streamlit as st

from ff_lib.chat import ReplyRecorder, ensure_conversation, model_messages, record_message
from ff_lib.errors import FFError
from ff_lib.inference import DEFAULT_PRESET, PRESETS, GenerationSettings
from ff_lib.runs import check_run
from ff_lib.ui import conversation, resources, selection, state
from ff_lib.ui.widgets import status_line

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
    """Where the prompt and the streaming reply(es) go: bubbles, or a Prompt/Response block."""
    if chat:
        return st.chat_message("assistant"), None
    block = st.container(border=True)
    with block:
        st.caption("Response")
        if compare:
            left, right = st.columns(2)
            left.markdown("**Fine-tuned**")
            right.markdown("**Base model**")
            return left, right
    return block, None


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
    meta = {
        **check.as_meta(),
        "base_model": check.base_model,
        "adapter": check.adapter_dir,
        "settings": asdict(settings),
    }
    try:
        recorder = _store_turn(ws, prompt, check, meta)
    except FFError as exc:  # e.g. the workspace is locked by another process: nothing sent
        _show_status(status_slot, "error", str(exc))
        return False

    if chat:
        with st.chat_message("user"):
            st.markdown(prompt)
    else:
        with st.container(border=True):
            st.caption("Prompt")
            st.markdown(prompt)
    main_area, base_area = _reply_area(chat, compare)
    messages = model_messages(prior, prompt)
    ok = False
    pieces = None
    try:
        stop_slot = st.empty()
        stop_slot.button("Stop", key=f"stop_{recorder.message.id}", icon=":material/stop:")
        with main_area, st.spinner("Generating...", show_time=True):
            stream = host.stream_reply(
                check.base_model,
                messages,
                settings,
                Path(check.adapter_dir),
                on_wait=lambda: _show_status(status_slot, "waiting", selection.WAITING_MESSAGE),
            )
            pieces = recorder.pieces(stream)
            st.write_stream(_after_wait(pieces, status_slot, detail))
        if compare:
            with base_area or nullcontext(), st.spinner("Base model...", show_time=True):
                base_stream = host.stream_reply(
                    check.base_model,
                    messages,
                    settings,
                    None,
                    on_wait=lambda: _show_status(status_slot, "waiting", selection.WAITING_MESSAGE),
                )
                text = st.write_stream(_after_wait(base_stream, status_slot, detail))
                recorder.attach_base_reply(
                    text if isinstance(text, str) else "", base_stream.reply.as_meta()
                )
        stop_slot.empty()
        ok = True
        selection.reset_status()
    except FFError as exc:
        recorder.fail(str(exc))
        selection.set_status("error", str(exc))
    finally:
        # Also on Stop (a rerun unwinds through here): end generation, keep what was generated.
        if pieces is not None:
            pieces.close()
        try:
            recorder.stop()
        except FFError as exc:  # the reply stays in the history; loading it again marks it
            selection.set_status("error", str(exc))
        conversation.replace(recorder.message)
        if selection.status()[0] in ("generating", "waiting"):
            selection.reset_status()
    _show_status(status_slot, *selection.status())
    return ok


def _store_turn(ws, prompt: str, check, meta: dict) -> ReplyRecorder:
    """Store the prompt (creating the conversation at its first turn) and open its reply."""
    cid = ensure_conversation(ws, conversation.conversation_id(), prompt, check.run_id)
    conversation.set_conversation(cid)
    conversation.append(record_message(ws, cid, "user", prompt, meta=check.as_meta()))
    recorder = ReplyRecorder(ws, cid, meta=meta)
    conversation.append(recorder.message)
    return recorder


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
