"""Stop while "Compare with" holds the base model, in Debian's Chromium against `streamlit run`.

Stop is a button that reruns the page while the old run is still streaming (Streamlit starts the
new run at once and stops the old one at its next element): only a real browser shows what the
user sees then. Replies are long and random here (temperature 2, seed 2) so Stop lands mid-text.
"""

import os
import re
import time

import pytest
from playwright.sync_api import Page, expect

from ff_lib.chat import fold_blank_lines
from ff_lib.data import Workspace
from ff_lib.runs import latest_usable_run
from ff_lib.ui.selection import GENERATING_MESSAGE
from tests.browser_fixtures import (  # noqa: F401  (fixtures)
    ROOT,
    browser_context_args,
    browser_type_launch_args,
    browser_workspace,
    require_chromium,
    screenshot,
    start_app,
    stop_app,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_browser_journey import READY, TIMEOUT_MS, choose, settle

pytestmark = [pytest.mark.slow, pytest.mark.browser]

STILL_WRITING = "Still being written"


@pytest.fixture(scope="module")
def app_server(browser_workspace, tmp_path_factory):  # noqa: F811
    """The app with each decode step slowed a little (tests/slow_engine), so that a reply is
    still being written when the test's Stop arrives after a rerun."""
    require_chromium()
    slow = str(ROOT / "tests" / "slow_engine")
    path = os.pathsep.join(p for p in (slow, str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    log = tmp_path_factory.mktemp("logs") / "streamlit.log"
    server = start_app(browser_workspace, log, extra_env={"PYTHONPATH": path})
    yield server
    stop_app(server)


SHOWN_WITHIN_MS = 6_000  # the stopped reply shows this fast, without a reload


def ready_to_compare(page: Page, url: str) -> None:
    """Inference with the latest run, sampling hot (long replies), raw text, compare on."""
    page.goto(f"{url}/Inference")
    page.get_by_role("button", name="Use latest completed run").click()
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    if not page.get_by_text("adapter changes").count():
        # Load the model and measure the adapter's effect first (the rerun after the first reply
        # does it), so Stop below meets a page that redraws at once.
        page.locator(".st-key-inf_prompt textarea").fill("Ahoy?")
        page.get_by_role("button", name="Generate").click()
        expect(page.get_by_text("adapter changes")).to_be_visible(timeout=TIMEOUT_MS)
        settle(page)
    page.locator(".st-key-inf_temperature").get_by_role("slider").press("End")  # 2.0
    settle(page)
    page.get_by_text("Advanced", exact=True).click()
    seed = page.locator(".st-key-inf_seed input")
    seed.fill("2")
    seed.press("Enter")
    settle(page)
    choose(page, "inf_compare_with", re.compile(r"^base model"))
    page.keyboard.press("Escape")  # a multiselect stays open after a choice
    settle(page)
    page.get_by_text("Raw text", exact=True).click()
    settle(page)


def first_title(workspace) -> str:
    """The first column's title: the run "Use latest completed run" chose."""
    return latest_usable_run(Workspace.open(workspace).list_runs()).name


def column(page: Page, title: str):
    """The newest turn's column headed `title` (the run's name or "base model")."""
    heading = page.get_by_test_id("stMarkdownContainer").get_by_text(title, exact=True)
    return page.get_by_test_id("stColumn").filter(has=heading).last


def streamed_text(col) -> str:
    """What a streaming column shows under its title so far (its spinner left out)."""
    reply = '[data-testid="stMarkdownContainer"]:not([data-testid="stSpinner"] *)'
    shown = col.locator(reply).all_inner_texts()
    return " ".join(t for t in shown[1:] if t.strip())


def wait_for_text(col, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if streamed_text(col).strip():
            return
        time.sleep(0.05)
    raise AssertionError("no text streamed in time")


def stored_reply(workspace):
    ws = Workspace.open(workspace)
    newest = ws.list_conversations(limit=1)[0]
    return ws.messages(newest.id)[-1]


def shown_reply(col) -> str:
    """The reply as the Raw text view shows it (st.text, or a compared side's marked text),
    whitespace-normalized."""
    shown = col.locator('[data-testid="stText"], .ff-diff').all_inner_texts()
    return " ".join(" ".join(shown).split())


def test_stop_during_the_fine_tuned_reply_shows_it_interrupted_at_once(page: Page, app_server):  # noqa: F811
    ready_to_compare(page, app_server.url)
    page.locator(".st-key-inf_prompt textarea").fill("Tell me a long story about dragons")
    page.get_by_role("button", name="Generate").click()
    fine_tuned = column(page, first_title(app_server.workspace))
    wait_for_text(fine_tuned)
    page.get_by_role("button", name="Stop").click()

    expect(fine_tuned.get_by_text("Interrupted")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.get_by_text(READY)).to_be_visible(timeout=SHOWN_WITHIN_MS)  # the status too
    expect(page.get_by_text(GENERATING_MESSAGE)).to_have_count(0)
    base = column(page, "base model")
    expect(base.get_by_text("Not answered")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.get_by_text(STILL_WRITING)).to_have_count(0)
    settle(page)
    screenshot(page, "stop_compare_fine_tuned")

    stored = stored_reply(app_server.workspace)
    assert stored.status == "interrupted" and stored.content.strip()
    assert stored.meta["compare_replies"][0]["status"] == "not answered"
    assert shown_reply(fine_tuned) == " ".join(fold_blank_lines(stored.content).split())
    page.reload()  # and it stays so
    expect(
        column(page, first_title(app_server.workspace)).get_by_text("Interrupted")
    ).to_be_visible(timeout=TIMEOUT_MS)


def test_stop_during_the_base_reply_keeps_both_sides(page: Page, app_server):  # noqa: F811
    ready_to_compare(page, app_server.url)
    page.locator(".st-key-inf_prompt textarea").fill("Once upon a time, far away")
    page.get_by_role("button", name="Generate").click()
    base = column(page, "base model")
    wait_for_text(base)
    page.get_by_role("button", name="Stop").click()

    expect(base.get_by_text("Interrupted")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.get_by_text(STILL_WRITING)).to_have_count(0)
    expect(page.get_by_text(READY)).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.get_by_text(GENERATING_MESSAGE)).to_have_count(0)
    fine_tuned = column(page, first_title(app_server.workspace))
    expect(fine_tuned.get_by_text("tokens/s")).to_be_visible()  # it ended first, whole
    settle(page)
    screenshot(page, "stop_compare_base")

    stored = stored_reply(app_server.workspace)
    assert stored.status == "complete"
    (base_reply,) = stored.meta["compare_replies"]
    assert base_reply["status"] == "interrupted" and base_reply["text"].strip()
    assert shown_reply(base) == " ".join(fold_blank_lines(base_reply["text"]).split())


def test_the_server_log_has_no_traceback(app_server):  # noqa: F811
    log = app_server.log()
    assert "Traceback" not in log, log[-4000:]
