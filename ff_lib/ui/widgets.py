"""Small shared widgets: the status line, run labels, bubbles, the output list, export controls.

Prompts are shown exactly as typed (st.text: no Markdown, no HTML); replies render as Markdown
(st.markdown escapes HTML) unless the view's "Raw text" switch is on.
"""

import streamlit as st

from ff_lib.chat import (
    EXPORT_FORMATS,
    ChatMessage,
    Turn,
    blank_text_note,
    export_bytes,
    export_filename,
    fold_blank_lines,
    pairs,
    reply_figures,
)
from ff_lib.chat.compared import NOT_ANSWERED, PENDING, compared_sides, first_label
from ff_lib.evaluation import word_diff
from ff_lib.runs import RunCheck
from ff_lib.ui.evaluation import diff_html
from ff_lib.ui.explain import why_button, why_control, why_view

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
PROMPT_FOLD_LINES = 30  # a longer prompt shows its first lines until "Show all"
RAW_TEXT_LABEL = "Raw text"
RAW_TEXT_HELP = "Show replies exactly as generated instead of rendering their Markdown."


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


def prompt_text(text: str, key: str) -> None:
    """A prompt exactly as typed; past PROMPT_FOLD_LINES lines, folded until "Show all"."""
    lines = text.split("\n")
    if len(lines) <= PROMPT_FOLD_LINES:
        st.text(text)
        return
    body = st.empty()  # drawn above its switch, once the switch says how much to show
    if st.toggle(f"Show all {len(lines)} lines", key=f"{key}_show_all"):
        body.text(text)
    else:
        with body.container():
            st.text("\n".join(lines[:PROMPT_FOLD_LINES]))
            st.caption(f"… {len(lines) - PROMPT_FOLD_LINES} more lines")


def prompt_view(text: str, key: str, chat: bool) -> None:
    """The prompt of a turn being answered: a user bubble, or the Prompt part of a block."""
    with st.chat_message("user") if chat else st.container(border=True):
        if not chat:
            st.caption("Prompt")
        prompt_text(text, key)


def reply_text(text: str, raw: bool = False, placeholder: str = "_(no text)_") -> None:
    """A reply rendered as Markdown (as is when `raw`); blank replies say what they hold."""
    if not text:
        st.markdown(placeholder)
    elif note := blank_text_note(text):
        st.markdown(f"_({note})_")
    elif raw:
        st.text(fold_blank_lines(text))
    else:
        st.markdown(fold_blank_lines(text))


def raw_text_toggle(key: str) -> bool:
    """The view's "Raw text" switch: True shows replies without rendering their Markdown."""
    return st.toggle(RAW_TEXT_LABEL, key=key, help=RAW_TEXT_HELP, persist_state="session")


def _message_body(message: ChatMessage, raw: bool = False, key: str = "msg") -> None:
    if message.role == "user":
        prompt_text(message.content, key=f"{key}_{message.id}")
    else:
        reply_text(message.content, raw)
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


def side_figures_caption(side: dict) -> None:
    """A compared side's figures, naming its model as its column does (not by a folder path)."""
    named = {"run": {"id": side.get("run_id"), "name": side.get("label")}}
    figures_caption({**named, **(side.get("meta") or {})})


def side_view(side: dict, first_text: str, raw: bool) -> None:
    """One compared side: its label, its answer with the words that differ from the first
    column marked, how it ended, its figures."""
    st.markdown(f"**{side.get('label') or 'other model'}**")
    status = side.get("status", "complete")
    if status == NOT_ANSWERED:
        st.caption(f":material/block: Not answered: {side.get('note', 'the turn ended first')}.")
        return
    if status == PENDING:
        st.caption("Still being written (in another tab or session).")
        return
    text = side.get("text") or ""
    if text and not blank_text_note(text) and first_text.strip():
        st.markdown(diff_html(word_diff(first_text, text)[1]), unsafe_allow_html=True)
    else:
        reply_text(text, raw)
    if status == "interrupted":
        st.caption(interrupted_note(side), help=INTERRUPTED_HELP)
    elif status == "error":
        st.caption(f"Failed: {side.get('error', 'see the status line')}")
    side_figures_caption(side)


def reply_columns(reply: ChatMessage, raw: bool, key: str) -> None:
    """A reply, and beside it each model it was compared with (words that differ marked)."""
    sides = compared_sides(reply.meta)
    if not sides:
        _message_body(reply, raw, key=key)
        figures_caption(reply.meta)
        why_control(reply, key)
        return
    columns = st.columns(1 + len(sides))
    with columns[0]:
        st.markdown(f"**{first_label(reply.meta)}**")
        _message_body(reply, raw, key=key)
        figures_caption(reply.meta)
        explain = why_button(reply, key)
    for column, side in zip(columns[1:], sides, strict=True):
        with column:
            side_view(side, reply.content, raw)
    if explain:
        why_view(reply, key)  # under all the columns: one is too narrow for the token view


def turn_block(turn: Turn, raw: bool = False, key: str = "turn") -> None:
    """One Prompt / Response pair of the output list (side by side with compared answers); its
    box is keyed `<key>_turn_<reply id>` (else the prompt's id) once stored."""
    stored = next((m.id for m in (turn.reply, turn.prompt) if m is not None and m.id), None)
    with st.container(border=True, key=None if stored is None else f"{key}_turn_{stored}"):
        if turn.prompt is not None:
            st.caption("Prompt")
            prompt_text(turn.prompt.content, key=f"{key}_{turn.prompt.id}")
        if turn.reply is None:
            return
        st.caption("Response")
        reply_columns(turn.reply, raw, key)


def recent(items: list, key: str, shown: int = RECENT_SHOWN) -> list:
    """The newest `shown` items, or all of them once the user asks (a long history would make
    every rerun slow to draw)."""
    hidden = len(items) - shown
    if hidden <= 0 or st.toggle(f"Show {hidden} earlier", key=key):
        return items
    return items[-shown:]


def output_list(messages: list[ChatMessage], raw: bool = False) -> None:
    """Every Prompt / Response pair of the history, newest last; a quiet line when empty."""
    turns = pairs(messages)
    if not turns:
        st.caption(EMPTY_OUTPUT)
    for turn in recent(turns, key="inf_show_all_pairs"):
        turn_block(turn, raw, key="inf_out")


def bubbles(messages: list[ChatMessage], key: str, raw: bool = False) -> None:
    """The history as chat bubbles (a Generate shows up as a user / assistant pair; a compared
    turn's other answers show beside the reply, in columns)."""
    shown = [m for m in messages if m.role in ("user", "assistant")]
    if not shown:
        st.caption(EMPTY_CHAT)
    for m in recent(shown, key=f"{key}_show_all", shown=2 * RECENT_SHOWN):
        with st.chat_message(m.role):
            if m.role == "assistant":
                reply_columns(m, raw, key)
            else:
                _message_body(m, raw, key=key)


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


def say_notes(notes: list[str]) -> None:
    """What was done on the way, out loud (e.g. a checkpoint registered as a run): a toast each."""
    for note in notes:
        st.toast(note, icon=":material/add_circle:")
