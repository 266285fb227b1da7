"""The "Why this answer?" control under a reply: its tokens coloured by what the adapter changed.

Green: the adapter made the token likelier than the base would have (log p adapter - log p base
> 0); red: less likely. A dotted underline marks where the base's own first choice was another
token. Hovering a token shows both sides' top 5. Model text reaches HTML only through
`tokens_html`, which escapes it first. Computed once per message id (session state).
"""

import html

import streamlit as st

from ff_lib.chat import ChatMessage
from ff_lib.errors import FFError
from ff_lib.inference.explain import BASE_ONLY, ReplyExplanation, explain_stored
from ff_lib.ui import resources
from ff_lib.ui.state import EXPLAIN_CACHE, EXPLAIN_SHOWN

WHY_LABEL = "Why this answer?"
WHY_HELP = (
    "Score this reply under its adapter and under the base alone (one batched forward): each "
    "token coloured by how much the adapter changed its probability."
)
BASE_ONLY_NOTE = "Base model reply (no adapter): nothing to explain in a token view."
LEGEND = (
    "Green: the adapter made the token likelier than the base; red: less likely (log p adapter "
    "− log p base). Underlined: the base would have picked another token. Hover a token for "
    "both sides' top 5."
)
SCALE_NATS = 5.0  # a difference of this many nats or more gets the strongest colour
GREEN, RED = "46, 160, 67", "218, 54, 51"


def _alternatives(top: list) -> str:
    return " · ".join(f"{text!r} {lp:.2f}" for text, lp in top)


def _token_span(t) -> str:
    strength = min(abs(t.delta) / SCALE_NATS, 1.0)
    rgb = GREEN if t.delta > 0 else RED
    alpha = 0.0 if abs(t.delta) < 0.05 else 0.12 + 0.6 * strength
    # The inset edge marks where one token ends, without moving the text.
    style = f"background: rgba({rgb}, {alpha:.2f}); box-shadow: inset -1px 0 #8887;"
    if t.changed:
        style += " text-decoration: underline dotted;"
    title = (
        f"log p adapter {t.logprob_adapter:.3f} · base {t.logprob_base:.3f} "
        f"(Δ {t.delta:+.3f})\nadapter top: {_alternatives(t.top_adapter)}\n"
        f"base top: {_alternatives(t.top_base)}"
    )
    title = html.escape(title, quote=True).replace("\n", "&#10;")
    return f'<span style="{style}" title="{title}">{html.escape(t.text)}</span>'


def tokens_html(explanation: ReplyExplanation) -> str:
    """The reply's tokens as escaped HTML spans, coloured, with both sides' top-k as titles."""
    body = "".join(_token_span(t) for t in explanation.tokens) or "<em>(no tokens)</em>"
    return f'<div class="ff-explain" style="white-space: pre-wrap; line-height: 1.8">{body}</div>'


def _toggle(message_id: int) -> None:
    shown = st.session_state.setdefault(EXPLAIN_SHOWN, set())
    shown.symmetric_difference_update({message_id})
    cache = st.session_state.setdefault(EXPLAIN_CACHE, {})
    if message_id in shown and isinstance(cache.get(message_id), str):
        del cache[message_id]  # shown again after an error: try again


def _explanation(message: ChatMessage) -> ReplyExplanation | str:
    """The token view, or the error that stopped it; computed once per message id (an error
    is kept too, so that every rerun does not try again until the button is clicked)."""
    cache = st.session_state.setdefault(EXPLAIN_CACHE, {})
    if message.id not in cache:
        base = message.meta.get("base_model")
        info = resources.host().info()
        loaded = info is not None and str(info.base_model) == str(base)
        what = "Scoring" if loaded else f"Loading the base `{base}`, then scoring"
        with st.spinner(f"{what} the reply under the adapter and under the base..."):
            try:
                cache[message.id] = explain_stored(
                    resources.host(), message.role, message.content, message.status, message.meta
                )
            except FFError as exc:
                cache[message.id] = str(exc)
    return cache[message.id]


def why_button(message: ChatMessage, key: str) -> bool:
    """Under an assistant reply: the "Why this answer?" button (or why there is none); whether
    its token view is open."""
    if message.role != "assistant" or message.id is None or not message.content:
        return False
    if message.status == "streaming":
        return False
    if not message.meta.get("adapter"):
        st.caption(BASE_ONLY_NOTE, help=BASE_ONLY)
        return False
    st.button(
        WHY_LABEL,
        key=f"{key}_why_{message.id}",
        help=WHY_HELP,
        icon=":material/insights:",
        type="tertiary",
        on_click=_toggle,
        args=(message.id,),
    )
    return message.id in st.session_state.get(EXPLAIN_SHOWN, set())


def why_view(message: ChatMessage, key: str) -> None:
    """The reply's token view (computed on first show), where the caller puts it: under the
    reply, or under all the columns of a compared reply (a column is too narrow to read it)."""
    explanation = _explanation(message)
    if isinstance(explanation, str):
        st.error(explanation)
        return
    with st.container(border=True, key=f"{key}_explain_{message.id}"):
        summary = explanation.summary()
        st.caption(summary[0].upper() + summary[1:])
        st.html(tokens_html(explanation))
        st.caption(LEGEND)
        if explanation.note:
            st.caption(explanation.note)
        if not explanation.round_trip:
            st.caption(
                "The reply's text does not re-encode to itself exactly: tokens are approximate."
            )


def why_control(message: ChatMessage, key: str) -> None:
    """Under an assistant reply: the "Why this answer?" button and, once clicked, its token view."""
    if why_button(message, key):
        why_view(message, key)
