"""AppTest: "Why this answer?" under a reply shows its token view and the summary line."""

from pathlib import Path

import pytest

from ff_lib.data import Workspace
from ff_lib.ui import state
from ff_lib.ui.explain import BASE_ONLY_NOTE, WHY_LABEL
from tests.apptest_helpers import (
    FULL_CHAT,
    GOOD_RUN,
    INFERENCE,
    page_text,
    private_copy,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_explain import store_explained_conversation

pytestmark = pytest.mark.slow

SUMMARY_START = "The base would have picked another token at "


@pytest.fixture(scope="module")
def explain_app(demo_workspace, tmp_path_factory) -> tuple[Path, str]:  # noqa: F811
    folder = private_copy(demo_workspace, tmp_path_factory, "app-explain")
    return folder, store_explained_conversation(folder)


@pytest.fixture
def conversation(explain_app, monkeypatch) -> str:
    folder, cid = explain_app
    monkeypatch.setenv("FF_WORKSPACE", str(folder))
    return cid


def why_buttons(at):
    return [b for b in at.button if b.label == WHY_LABEL]


def html_blocks(at) -> list[str]:
    return [str(e.proto.body) for e in at.get("html")]


@pytest.mark.parametrize("page", [INFERENCE, FULL_CHAT])
def test_why_this_answer_shows_the_token_view(conversation, page):
    at = start(page, query={"c": conversation})
    buttons = why_buttons(at)
    assert len(buttons) == 1  # the adapter's reply; the base-only reply has none
    assert BASE_ONLY_NOTE in page_text(at)  # and says why
    assert SUMMARY_START not in page_text(at)  # nothing computed before the click
    buttons[0].click().run()
    assert not at.exception, at.exception
    summary = next(line for line in page_text(at).splitlines() if line.startswith(SUMMARY_START))
    assert " of " in summary and "positions" in summary
    view = next(b for b in html_blocks(at) if "ff-explain" in b)
    assert "title=" in view and "adapter top:" in view and "base top:" in view
    assert "&lt;|eot_id|&gt;" in view  # model text escaped, the end of turn shown


def test_the_token_view_is_computed_once_per_message(conversation):
    at = start(FULL_CHAT, query={"c": conversation})
    why_buttons(at)[0].click().run()
    cache = at.session_state[state.EXPLAIN_CACHE]
    reply = at.session_state[state.CHAT_MESSAGES][1]
    assert list(cache) == [reply.id]
    first = cache[reply.id]
    why_buttons(at)[0].click().run()  # hidden again
    assert SUMMARY_START not in page_text(at)
    why_buttons(at)[0].click().run()  # shown again, from the cache
    assert SUMMARY_START in page_text(at)
    assert at.session_state[state.EXPLAIN_CACHE][reply.id] is first


def test_a_fresh_chat_reply_can_be_explained_at_once(explain_app, monkeypatch):
    """The chat view does not rerun after a reply: its control is drawn with the reply."""
    folder, _ = explain_app
    monkeypatch.setenv("FF_WORKSPACE", str(folder))
    at = select_run(start(INFERENCE), folder, GOOD_RUN)
    at.switch_page(FULL_CHAT).run()
    at.chat_input[0].set_value("Capital of Spain?").run()
    assert not at.exception, at.exception
    buttons = why_buttons(at)
    assert len(buttons) == 1
    buttons[0].click().run()
    assert not at.exception, at.exception
    assert SUMMARY_START in page_text(at)


def test_an_adapter_gone_since_says_so(explain_app, monkeypatch, tmp_path):
    folder, cid = explain_app
    monkeypatch.setenv("FF_WORKSPACE", str(folder))
    ws = Workspace.open(folder)
    reply = ws.messages(cid)[1]
    gone = tmp_path / "deleted-run" / "adapter"
    conv = ws.create_conversation(title="adapter gone")
    ws.add_message(conv.id, "user", ws.messages(cid)[0].content)
    ws.add_message(conv.id, "assistant", reply.content, meta={**reply.meta, "adapter": str(gone)})
    at = start(FULL_CHAT, query={"c": conv.id})
    why_buttons(at)[0].click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(str(gone) in e for e in errors), errors
    assert SUMMARY_START not in page_text(at)
    at.run()  # the error is kept, not tried again on every rerun
    assert any(str(gone) in e.value for e in at.error)
