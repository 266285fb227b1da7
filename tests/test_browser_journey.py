"""The journey a person takes, in Debian's Chromium against `streamlit run Home.py` on the demo.

One server for the module; the tests run in order and share its workspace: Home -> Inference ->
validated run -> sample prompt -> streamed reply -> Full Chat View -> export -> reload -> clear.
"""

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from ff_lib.data import Workspace
from tests.browser_fixtures import (  # noqa: F401  (fixtures)
    app_server,
    browser_context_args,
    browser_type_launch_args,
    browser_workspace,
    screenshot,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

READY = "Adapter validated. Ready for inference."
UNICODE_MESSAGE = "Ça va? Größe · Ελλάδα · naïve café 🌍🚀"
TIMEOUT_MS = 120_000

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# What the tests learn along the way (they run in file order).
journey: dict = {}


def wait_ready(page: Page, scope=None) -> None:
    """Streaming is over when the status line is back to ready (green)."""
    expect((scope or page).get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)


def conversation_ids(workspace) -> set[str]:
    return {c.id for c in Workspace.open(workspace).list_conversations(limit=1000)}


def wait_stored(workspace, count: int, cid: str | set, timeout_s: float = 120) -> list:
    """The stored messages once conversation `cid` (or the one not in the set `cid`) holds
    `count` and none is still streaming: the server's own record that a reply is over."""
    ws = Workspace.open(workspace)
    deadline = time.monotonic() + timeout_s
    messages: list = []
    while time.monotonic() < deadline:
        ids = [cid] if isinstance(cid, str) else sorted(conversation_ids(workspace) - cid)
        messages = ws.messages(ids[0]) if ids else []
        if len(messages) >= count and all(m.status != "streaming" for m in messages):
            return messages
        time.sleep(0.3)
    raise AssertionError(f"no {count} finished messages after {timeout_s} s: {messages}")


def whole_page_screenshot(page: Page, name: str) -> None:
    """A screenshot of the whole page once it is at rest: Streamlit scrolls inside its main
    block, so the viewport is made tall enough for everything rather than full_page."""
    settle(page)
    size = page.viewport_size
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain] *')]"
        ".map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": size["width"], "height": min(max(height, 900), 3000)})
    page.wait_for_timeout(300)
    screenshot(page, name)
    page.set_viewport_size(size)


def conversation_id(page: Page) -> str:
    match = re.search(r"[?&]c=([0-9a-f-]+)", page.url)
    assert match, f"no ?c= in {page.url}"
    return match.group(1)


def settle(page: Page) -> None:
    """Wait for the rerun an action started to finish (the app marks its script state)."""
    page.wait_for_timeout(300)
    idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
    expect(idle).to_have_count(1, timeout=TIMEOUT_MS)


def choose(page: Page, key: str, option) -> None:
    """Pick `option` (text or pattern) in the select box with widget key `key`, and let the page
    rerun. A click that lands while the page is still settling is lost, so the box is opened
    again until the option shows."""
    wanted = page.get_by_role("option", name=option).first
    for _ in range(4):
        page.locator(f".st-key-{key}").get_by_role("combobox").click()
        try:
            expect(wanted).to_be_visible(timeout=3000)
            wanted.click(timeout=5000)  # a rerun may redraw the list under the click: again
            settle(page)
            return
        except (AssertionError, PlaywrightTimeoutError):
            page.keyboard.press("Escape")
            settle(page)
    page.locator(f".st-key-{key}").get_by_role("combobox").click()
    wanted.click()
    settle(page)


def replies(scope) -> list[str]:
    """Reply text of the assistant bubbles in `scope` (avatar and figures left out)."""
    page = scope if isinstance(scope, Page) else scope.page
    bubbles = scope.get_by_test_id("stChatMessage").filter(
        has=page.get_by_test_id("stChatMessageAvatarAssistant")
    )
    content = [b.get_by_test_id("stChatMessageContent") for b in bubbles.all()]
    return [c.get_by_test_id("stMarkdownContainer").first.inner_text() for c in content]


def test_home_shows_the_workspace_and_leads_to_inference(page: Page, app_server):  # noqa: F811
    page.goto(app_server.url)
    expect(page.get_by_role("heading", name="FF Playground")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Recent training runs")).to_be_visible()
    screenshot(page, "home")
    page.get_by_role("link", name="Inference").first.click()
    expect(page.get_by_role("heading", name="Model & adapter")).to_be_visible(timeout=TIMEOUT_MS)
    assert page.url.rstrip("/").endswith("/Inference")


def test_generate_with_the_latest_run_streams_a_reply(page: Page, app_server):  # noqa: F811
    page.goto(f"{app_server.url}/Inference")
    generate = page.get_by_role("button", name="Generate")
    expect(generate).to_be_disabled(timeout=TIMEOUT_MS)  # locked until a run validates
    page.get_by_role("button", name="Use latest completed run").click()
    wait_ready(page)
    expect(page.get_by_test_id("stToast").filter(has_text="adapter validated")).to_be_visible()
    expect(generate).to_be_enabled()
    page.locator(".st-key-inf_preset").get_by_text("Deterministic", exact=True).click()
    settle(page)

    choose(page, "inf_sample", "")  # the first sample prompt
    prompt = page.locator(".st-key-inf_prompt textarea")
    expect(prompt).not_to_have_value("")
    sample = prompt.input_value()
    expect(page.get_by_text("Expected answer")).to_be_visible()

    known = conversation_ids(app_server.workspace)
    generate.click()
    stored = wait_stored(app_server.workspace, 2, known)
    wait_ready(page)
    expect(generate).to_be_enabled(timeout=TIMEOUT_MS)
    expect(page.get_by_text("tokens/s")).to_have_count(1, timeout=TIMEOUT_MS)  # its figures
    journey["cid"] = conversation_id(page)
    assert stored[0].conversation_id == journey["cid"]
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[0].content == sample
    journey["first_prompt"], journey["first_reply"] = sample, stored[1].content
    expect(page.get_by_text(stored[1].content.strip()[:40]).first).to_be_visible()

    # --- the Full Chat View dialog: the same history, one more turn ---
    page.get_by_role("button", name="Full Chat View").click()
    dialog = page.get_by_test_id("stDialog")
    expect(dialog.get_by_test_id("stChatMessage")).to_have_count(2, timeout=TIMEOUT_MS)
    dialog.get_by_test_id("stChatInputTextArea").fill(UNICODE_MESSAGE)
    dialog.get_by_test_id("stChatInputTextArea").press("Enter")
    wait_stored(app_server.workspace, 4, journey["cid"])
    expect(dialog.get_by_test_id("stChatMessage")).to_have_count(4, timeout=TIMEOUT_MS)
    expect(dialog.get_by_role("button", name="Stop")).to_have_count(0, timeout=TIMEOUT_MS)
    wait_ready(page, dialog)
    in_dialog = replies(dialog)
    screenshot(page, "full_chat_view_dialog")
    dialog.locator(".st-key-inf_dialog_close").get_by_role("button").click()
    expect(dialog).to_have_count(0)

    stored = Workspace.open(app_server.workspace).messages(journey["cid"])
    assert [m.role for m in stored] == ["user", "assistant"] * 2
    assert stored[2].content == UNICODE_MESSAGE
    assert [r.strip() for r in in_dialog] == [m.content.strip() for m in stored[1::2]]
    expect(page.get_by_text(UNICODE_MESSAGE)).to_be_visible()  # the page's list agrees
    whole_page_screenshot(page, "inference")

    # The Full Chat page in the same session: same history, same run.
    page.get_by_test_id("stSidebar").get_by_role("link", name="Full Chat").click()
    expect(page.get_by_test_id("stChatMessage")).to_have_count(4, timeout=TIMEOUT_MS)
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    assert [r.strip() for r in replies(page)] == [m.content.strip() for m in stored[1::2]]
    whole_page_screenshot(page, "full_chat")


def test_the_conversation_link_opens_it_in_a_fresh_session(page: Page, app_server):  # noqa: F811
    page.goto(f"{app_server.url}/Full_Chat?c={journey['cid']}")
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(4, timeout=TIMEOUT_MS)
    expect(messages.nth(2)).to_contain_text(UNICODE_MESSAGE)
    stored = Workspace.open(app_server.workspace).messages(journey["cid"])
    assert [r.strip() for r in replies(page)] == [m.content.strip() for m in stored[1::2]]
    screenshot(page, "full_chat_restored")


def test_export_downloads_the_conversation_as_shown(page: Page, app_server):  # noqa: F811
    page.goto(f"{app_server.url}/Full_Chat?c={journey['cid']}")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(4, timeout=TIMEOUT_MS)
    choose(page, "full_export_format", "JSONL")
    with page.expect_download() as info:
        page.get_by_test_id("stDownloadButton").get_by_role("button").click()
    download = info.value
    assert download.suggested_filename == f"ff-chat-{journey['cid'][:8]}.jsonl"
    text = Path(download.path()).read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    stored = Workspace.open(app_server.workspace).messages(journey["cid"])
    assert [(r["role"], r["content"]) for r in lines] == [(m.role, m.content) for m in stored]
    assert lines[2]["content"] == UNICODE_MESSAGE  # unicode and emoji round-trip
    assert lines[1]["run"]["name"] and lines[1]["stats"]["new_tokens"] > 0

    choose(page, "full_export_format", "Markdown")
    with page.expect_download() as info:
        page.get_by_test_id("stDownloadButton").get_by_role("button").click()
    markdown = Path(info.value.path()).read_text(encoding="utf-8")
    assert UNICODE_MESSAGE in markdown and journey["first_prompt"] in markdown


def test_reload_restores_the_conversation_then_clear_keeps_it_stored(page: Page, app_server):  # noqa: F811
    page.goto(f"{app_server.url}/Inference?c={journey['cid']}")
    expect(page.get_by_text(UNICODE_MESSAGE)).to_be_visible(timeout=TIMEOUT_MS)
    page.reload()
    expect(page.get_by_text(UNICODE_MESSAGE)).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(journey["first_prompt"]).first).to_be_visible()
    assert conversation_id(page) == journey["cid"]

    page.locator(".st-key-inf_clear").get_by_role("button").click()
    expect(page.get_by_text("No prompts yet")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(UNICODE_MESSAGE)).to_have_count(0)
    assert "c=" not in page.url
    assert len(Workspace.open(app_server.workspace).messages(journey["cid"])) == 4

    # A fresh tab starts a new conversation; Home lists the old one with Continue.
    other = page.context.new_page()
    other.goto(f"{app_server.url}/Full_Chat")
    expect(other.get_by_text("No messages yet")).to_be_visible(timeout=TIMEOUT_MS)
    other.goto(app_server.url)
    continue_link = other.locator(f'a[href*="c={journey["cid"]}"]').filter(has_text="Continue")
    expect(continue_link).to_be_visible(timeout=TIMEOUT_MS)
    continue_link.click()
    expect(other.get_by_test_id("stChatMessage")).to_have_count(4, timeout=TIMEOUT_MS)
    other.close()


def test_the_server_log_has_no_traceback(app_server):  # noqa: F811
    log = app_server.log()
    assert "Traceback" not in log, log[-4000:]
