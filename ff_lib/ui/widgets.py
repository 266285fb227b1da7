"""Small shared widgets: the status line, run labels, bubbles, the output list, export controls.

Model and user text is always rendered with st.markdown / st.text, which escape HTML.
"""

import streamlit as st

from ff_lib.chat import (
    EXPORT_FORMATS,
    ChatMessage,
    Turn,
    export_bytes,
    export_filename,
    pairs,
    reply_figures,
)
from ff_lib.runs import RunCheck

STATUS_BADGES = {
    "completed": ":green-badge[completed]",
    "running": ":blue-badge[running]",
    "pending": ":gray-badge[pending]",
    "failed": ":red-badge[failed]",
    "cancelled": ":orange-badge[cancelled]",
}
EMPTY_OUTPUT = "No prompts yet. Responses will appear here, newest last."
EMPTY_CHAT = "No messages yet. Say something to the fine-tuned model."
RECENT_SHOWN = 50  # Prompt / Response pairs drawn before "Show N earlier"


def status_line(status: str, detail: str) -> None:
    """The one-line model status: red with the reason on error, green when ready."""
    if status == "error":
        st.error(f"Error: {detail}", icon=":material/error:")
    elif status == "ready":
        st.success(detail, icon=":material/check_circle:")
    elif status == "waiting":
        st.warning(detail, icon=":material/hourglass_top:")
    elif status in ("validating", "generating"):
        st.info(detail, icon=":material/progress_activity:")
    else:
        st.info(detail, icon=":material/radio_button_unchecked:")


def meta_line(check: RunCheck | None, runs_as: str) -> None:
    """Under the status: the validated adapter path, base model and how the model runs."""
    if check is None or not check.ok:
        return
    st.caption(f"Adapter `{check.adapter_dir}` · base `{check.base_model}` · {runs_as}")


def warnings(messages) -> None:
    for message in messages:
        st.warning(message, icon=":material/warning:")


def status_badge(status: str) -> str:
    """A Markdown badge for a run status (a fixed set of words, never user text)."""
    return STATUS_BADGES.get(status, status)


def _message_body(message: ChatMessage, placeholder: str = "_(no text)_") -> None:
    if message.content:
        st.markdown(message.content)
    else:
        st.markdown(placeholder)
    if message.status == "interrupted":
        st.caption(interrupted_note(message.meta), help=INTERRUPTED_HELP)
    elif message.status == "error":
        st.caption(f"Failed: {message.meta.get('error', 'see the status line')}")
    elif message.status == "streaming":
        st.caption("Still being written (in another tab or session).")


INTERRUPTED_HELP = "The text generated until then is kept; send the prompt again for a full reply."


def interrupted_note(meta: dict) -> str:
    """The marker under a reply that did not finish: cut off by a restart, or stopped."""
    reason = meta.get("interrupted")
    if reason:
        return f":material/block: Interrupted: {reason}."
    return ":material/block: Interrupted: stopped before the end."


def figures_caption(meta: dict) -> None:
    """The reply's figures, and the engine's notice when turns were dropped to fit."""
    line = reply_figures(meta)
    if line:
        st.caption(line)
    if meta.get("notice"):
        st.caption(meta["notice"])


def _base_reply(meta: dict) -> None:
    base = meta.get("base_reply")
    if base:
        st.markdown("**Base model**")
        st.markdown(base.get("text") or "_(no text)_")
        figures_caption(base)


def turn_block(turn: Turn) -> None:
    """One Prompt / Response pair of the output list (side by side with the base answer)."""
    with st.container(border=True):
        if turn.prompt is not None:
            st.caption("Prompt")
            st.markdown(turn.prompt.content)
        if turn.reply is None:
            return
        st.caption("Response")
        if turn.reply.meta.get("base_reply"):
            left, right = st.columns(2)
            with left:
                st.markdown("**Fine-tuned**")
                _message_body(turn.reply)
                figures_caption(turn.reply.meta)
            with right:
                _base_reply(turn.reply.meta)
        else:
            _message_body(turn.reply)
            figures_caption(turn.reply.meta)


def recent(items: list, key: str, shown: int = RECENT_SHOWN) -> list:
    """The newest `shown` items, or all of them once the user asks (a long history would make
    every rerun slow to draw)."""
    hidden = len(items) - shown
    if hidden <= 0 or st.toggle(f"Show {hidden} earlier", key=key):
        return items
    return items[-shown:]


def output_list(messages: list[ChatMessage]) -> None:
    """Every Prompt / Response pair of the history, newest last; a quiet line when empty."""
    turns = pairs(messages)
    if not turns:
        st.caption(EMPTY_OUTPUT)
    for turn in recent(turns, key="inf_show_all_pairs"):
        turn_block(turn)


def bubbles(messages: list[ChatMessage], key: str) -> None:
    """The history as chat bubbles (a Generate shows up as a user / assistant pair)."""
    shown = [m for m in messages if m.role in ("user", "assistant")]
    if not shown:
        st.caption(EMPTY_CHAT)
    for m in recent(shown, key=f"{key}_show_all", shown=2 * RECENT_SHOWN):
        with st.chat_message(m.role):
            _message_body(m)
            if m.role == "assistant":
                figures_caption(m.meta)


def export_controls(messages: list[ChatMessage], conversation_id: str | None, key: str) -> None:
    """A format choice and the `Export chats` download button beside it."""
    fmt_col, button_col = st.columns([2, 1], vertical_alignment="bottom")
    with fmt_col:
        fmt = st.selectbox("Export format", list(EXPORT_FORMATS), key=key, persist_state="session")
    with button_col:
        snapshot = list(messages)
        st.download_button(
            "Export chats",
            # Made on click, not on every rerun: a long history's JSONL runs to megabytes.
            data=lambda: export_bytes(snapshot, fmt),
            file_name=export_filename(conversation_id, fmt),
            mime=EXPORT_FORMATS[fmt].mime,
            disabled=not messages,
            on_click="ignore",
            key=f"{key}_download",
            icon=":material/download:",
        )
