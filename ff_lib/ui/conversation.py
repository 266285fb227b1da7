"""The shared history in st.session_state, restored from and mirrored to the URL's ?c= id."""

import streamlit as st

from ff_lib.chat import ChatMessage, ChatTurn, load_history, stop_turn
from ff_lib.errors import NotFound
from ff_lib.ui import selection, state
from ff_lib.ui.restore import restore_setup

QUERY_KEY = "c"
# How long a new run of the page waits for a cut-off reply to be stored before showing it as it
# stands (the old run ends it within one token, unless it is still loading a model).
STOP_WAIT_S = 2.0


def init_history(ws) -> None:
    """Set up the history; load the conversation named by ?c= when it is not the one held,
    with the run, base model and settings it was answered with (validated again)."""
    ss = st.session_state
    ss.setdefault(state.CHAT_MESSAGES, [])
    ss.setdefault(state.CHAT_CONVERSATION_ID, None)
    settle_cut_off_turn(ws)
    # Nothing of this session streams once its cut-off turn is settled: a "generating" status
    # is the old run's, which resets it only as it unwinds (after this run drew it, or never).
    if selection.status()[0] in ("generating", "waiting"):
        selection.reset_status()
    wanted = st.query_params.get(QUERY_KEY)
    held = ss[state.CHAT_CONVERSATION_ID]
    if wanted and wanted != held:
        try:
            messages = load_history(ws, wanted)
        except NotFound:
            ss[state.CHAT_NOTICE] = (
                f"Conversation {wanted} is not in this workspace: starting a new one."
            )
            del st.query_params[QUERY_KEY]
        else:
            ss[state.CHAT_MESSAGES] = messages
            ss[state.CHAT_CONVERSATION_ID] = wanted
            restore_setup(ws, messages)
    elif held and not wanted:
        # A page switch drops the query string: put the id back so a reload restores it.
        st.query_params[QUERY_KEY] = held


def history() -> list[ChatMessage]:
    """The shared history, oldest first."""
    return st.session_state.get(state.CHAT_MESSAGES, [])


def served_over_api() -> bool:
    """Whether the history held was served over the API (`serve` records it so)."""
    return any("api" in (m.meta or {}) for m in history() if m.role == "assistant")


def conversation_id() -> str | None:
    return st.session_state.get(state.CHAT_CONVERSATION_ID)


def set_conversation(conversation_id: str) -> None:
    """Hold `conversation_id` and name it in the URL."""
    st.session_state[state.CHAT_CONVERSATION_ID] = conversation_id
    st.query_params[QUERY_KEY] = conversation_id


def append(message: ChatMessage) -> None:
    st.session_state[state.CHAT_MESSAGES] = [*history(), message]


def replace(message: ChatMessage) -> None:
    """Put `message` in place of the held message with the same stored id."""
    st.session_state[state.CHAT_MESSAGES] = [
        message if m.id is not None and m.id == message.id else m for m in history()
    ]


def clear_history() -> None:
    """Empty the history and start a new conversation; the stored one stays (listed on Home)."""
    st.session_state[state.CHAT_MESSAGES] = []
    st.session_state[state.CHAT_CONVERSATION_ID] = None
    if QUERY_KEY in st.query_params:
        del st.query_params[QUERY_KEY]


def pop_notice() -> str | None:
    """A one-time notice about the history (e.g. an unknown ?c= id), then forgotten."""
    return st.session_state.pop(state.CHAT_NOTICE, None)


def start_turn(ws, prompt: str, **turn_args) -> ChatTurn:
    """Store the prompt (creating the conversation at its first turn) and open its reply; both
    join the history, and the reply is marked in flight until `end_turn`."""
    turn = ChatTurn(ws, conversation_id(), prompt, **turn_args)
    set_conversation(turn.conversation_id)
    append(turn.prompt)
    append(turn.message)
    st.session_state[state.CHAT_TURN_IN_FLIGHT] = turn.reply_id
    return turn


def end_turn(message: ChatMessage) -> None:
    """The reply as it ended takes its place in the history."""
    replace(message)
    st.session_state.pop(state.CHAT_TURN_IN_FLIGHT, None)


def settle_cut_off_turn(ws) -> None:
    """A reply this session was streaming when the page reran (Stop, or any click meanwhile):
    end it and show it as it ended, before anything draws the history."""
    reply_id = st.session_state.pop(state.CHAT_TURN_IN_FLIGHT, None)
    if reply_id is None:
        return
    message = stop_turn(reply_id, wait_s=STOP_WAIT_S)
    if message is not None:
        replace(message)
    elif conversation_id():  # it ended before this run looked: read it back
        st.session_state[state.CHAT_MESSAGES] = load_history(ws, conversation_id())
