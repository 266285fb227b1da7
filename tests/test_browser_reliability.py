"""Reliability in a real browser: broken runs, two users on one model, hostile text, a server
killed mid-reply, a locked workspace. One server for the module (the restart test starts and
kills its own)."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ff_lib.data import Workspace
from ff_lib.demo import BROKEN_RUN
from tests.browser_fixtures import (  # noqa: F401  (fixtures)
    app_server,
    browser_context_args,
    browser_type_launch_args,
    browser_workspace,
    screenshot,
    start_app,
    stop_app,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_browser_journey import (
    READY,
    TIMEOUT_MS,
    choose,
    conversation_ids,
    replies,
    settle,
    wait_stored,
)
from tests.test_reliability import hold_workspace_lock

DATA = Path(__file__).resolve().parent.parent / "ff_lib" / "demo_data"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def first_pair(dataset: str) -> dict:
    with (DATA / f"{dataset}.jsonl").open(encoding="utf-8") as lines:
        return json.loads(next(lines))


def open_run(page: Page, url: str, run_name: str) -> None:
    page.goto(f"{url}/Inference")
    expect(page.get_by_role("heading", name="Model & adapter")).to_be_visible(timeout=TIMEOUT_MS)
    choose(page, "inf_run", f"{run_name} · ")


def test_broken_runs_turn_red_and_lock_the_controls(page: Page, app_server):  # noqa: F811
    # A second broken layout, registered by another process while the app runs.
    good = next(
        r for r in Workspace.open(app_server.workspace).list_runs() if r.status == "completed"
    )
    broken = app_server.workspace / "bad-json-adapter"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA", "r": ')
    (broken / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    Workspace.open(app_server.workspace).add_run("bad-json-lora", good.base_model, broken)

    generate = page.get_by_role("button", name="Generate")
    for run_name, says in ((BROKEN_RUN, "safetensors"), ("bad-json-lora", "is not valid JSON")):
        open_run(page, app_server.url, run_name)
        alert = page.get_by_test_id("stAlertContentError").first
        expect(alert).to_contain_text("Error: ", timeout=TIMEOUT_MS)
        expect(alert).to_contain_text(says)
        expect(generate).to_be_disabled()
        expect(page.locator(".st-key-inf_prompt textarea")).to_be_disabled()
        expect(page.locator(".st-key-inf_sample").get_by_role("combobox")).to_be_disabled()
    screenshot(page, "broken_run")
    page.get_by_role("button", name="Use latest completed run").click()  # and it recovers
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    expect(generate).to_be_enabled()


def test_two_sessions_on_one_base_get_their_own_adapters_answers(
    browser,
    browser_context_args,  # noqa: F811
    app_server,  # noqa: F811
):
    users = {"capitals-lora": first_pair("capitals"), "pirate-lora": first_pair("pirate")}
    contexts, pages = [], {}
    try:
        for run_name, pair in users.items():
            context = browser.new_context(**browser_context_args)
            contexts.append(context)
            page = context.new_page()
            open_run(page, app_server.url, run_name)
            expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
            page.locator(".st-key-inf_preset").get_by_text("Deterministic", exact=True).click()
            settle(page)
            page.locator(".st-key-inf_prompt textarea").fill(pair["prompt"])
            page.locator(".st-key-inf_prompt textarea").blur()
            settle(page)
            pages[run_name] = page
        known = conversation_ids(app_server.workspace)
        for page in pages.values():  # both at once: the second queues behind the first
            page.get_by_role("button", name="Generate").click()
        for page in pages.values():
            expect(page.get_by_text("tokens/s")).to_have_count(1, timeout=TIMEOUT_MS)
            expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
        new = conversation_ids(app_server.workspace) - known
        assert len(new) == 2, new
        ws = Workspace.open(app_server.workspace)
        for cid in new:
            prompt, reply = wait_stored(app_server.workspace, 2, cid)
            run_name = reply.meta["run"]["name"]
            assert prompt.content == users[run_name]["prompt"]
            assert reply.status == "complete"
            assert reply.content.strip() == users[run_name]["response"], run_name
            page_text = pages[run_name].locator("[data-testid='stMain']").inner_text()
            assert users[run_name]["response"] in page_text
            assert len(ws.messages(cid)) == 2
    finally:
        for context in contexts:
            context.close()


HOSTILE_REPLY = (
    "**bold** and `code`\n\n"
    "<script>window.__ffPwned = 'script'</script>\n\n"
    '<img src="x" onerror="window.__ffPwned = \'img\'">\n\n'
    "<b>not bold</b>"
)


def test_html_and_script_in_replies_show_as_text_and_never_run(page: Page, app_server):  # noqa: F811
    ws = Workspace.open(app_server.workspace)
    conv = ws.create_conversation(title="hostile")
    ws.add_message(conv.id, "user", "<script>window.__ffPwned = 'prompt'</script> hi")
    ws.add_message(conv.id, "assistant", HOSTILE_REPLY)
    page.goto(f"{app_server.url}/Full_Chat?c={conv.id}")
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(2, timeout=TIMEOUT_MS)
    settle(page)
    assert page.evaluate("window.__ffPwned") is None
    assert page.locator("[data-testid='stMain'] script").count() == 0
    assert page.locator("[data-testid='stMain'] img[src='x']").count() == 0
    expect(messages.nth(1).locator("strong")).to_have_text("bold")  # markdown still renders
    expect(messages.nth(0)).to_contain_text("<script>window.__ffPwned")  # literal, visible
    expect(messages.nth(1)).to_contain_text("<b>not bold</b>")
    expect(messages.nth(1)).to_contain_text('onerror="window.__ffPwned')
    screenshot(page, "hostile_text")


def test_a_workspace_locked_by_another_process_says_busy_then_works(page: Page, app_server):  # noqa: F811
    page.goto(f"{app_server.url}/Inference")
    expect(page.get_by_role("heading", name="Model & adapter")).to_be_visible(timeout=TIMEOUT_MS)
    child = hold_workspace_lock(app_server.workspace / "ff.duckdb", 8)  # past the 5 s of retries
    try:
        page.reload()
        busy = page.get_by_test_id("stAlertContentError").filter(has_text="workspace is busy")
        expect(busy).to_be_visible(timeout=TIMEOUT_MS)
        screenshot(page, "workspace_busy")
    finally:
        child.wait(timeout=30)
    page.reload()
    expect(page.get_by_role("heading", name="Model & adapter")).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Use latest completed run").click()
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)


def test_the_server_log_has_no_traceback(app_server):  # noqa: F811
    log = app_server.log()
    assert "Traceback" not in log, log[-4000:]


def test_a_server_killed_mid_reply_brings_the_conversation_back(
    page: Page,
    browser_workspace,  # noqa: F811
    tmp_path,
):
    first = start_app(browser_workspace, tmp_path / "first.log")
    try:
        open_run(page, first.url, "pirate-lora")
        expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
        page.locator(".st-key-inf_preset").get_by_text("Creative", exact=True).click()
        settle(page)
        # Hottest sampling (Creative's 512 tokens is the demo's whole context): the tiny model
        # then rarely ends before the first save of its text.
        page.locator(".st-key-inf_temperature").get_by_role("slider").press("End")
        settle(page)
        # The demo adapters end their trained answers quickly even when hot; the strongest
        # repetition penalty pushes the reply off them, so it runs for hundreds of tokens.
        page.get_by_text("Advanced", exact=True).click()
        settle(page)
        page.locator(".st-key-inf_repetition_penalty").get_by_role("slider").press("End")
        settle(page)
        page.locator(".st-key-inf_prompt textarea").fill(
            "Tell me a very long story about the sea, the stars, the ships and every sailor."
        )
        page.locator(".st-key-inf_prompt textarea").blur()
        settle(page)
        found = None
        for _attempt in range(5):  # a reply that ends before its first save: try again
            known = conversation_ids(browser_workspace)
            page.get_by_role("button", name="Generate").click()
            found = wait_partial_reply(browser_workspace, known)
            if found:
                break
            settle(page)
            page.locator(".st-key-inf_clear").get_by_role("button").click()
            settle(page)
        assert found, "every reply ended before its text was first saved"
        assert page.locator(".st-key-inf_temperature").get_by_text("2.00").count() >= 1
        cid, partial = found
    finally:
        os.kill(first.process.pid, signal.SIGKILL)  # no clean shutdown: as a crash
        first.process.wait(timeout=15)

    second = start_app(browser_workspace, tmp_path / "second.log")
    try:
        page.goto(f"{second.url}/Full_Chat?c={cid}")
        messages = page.get_by_test_id("stChatMessage")
        expect(messages).to_have_count(2, timeout=TIMEOUT_MS)
        expect(page.get_by_text("Interrupted: the app stopped")).to_be_visible()
        # The browser folds runs of white space (hot sampling writes tabs and newlines): compare
        # the words as shown.
        shown = " ".join(replies(page)[0].split())
        assert shown and " ".join(partial.split()).startswith(shown[:20])
        stored = Workspace.open(browser_workspace).messages(cid)
        assert [m.status for m in stored] == ["complete", "interrupted"]
        assert stored[1].content.startswith(partial)
        screenshot(page, "restored_after_kill")
        assert "Traceback" not in second.log()
    finally:
        stop_app(second)


def wait_partial_reply(workspace: Path, known: set, timeout_s: float = 120) -> tuple | None:
    """(conversation id, text) once a new reply is stored mid-stream with some text; None
    when the reply ended first."""
    ws = Workspace.open(workspace)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for cid in conversation_ids(workspace) - known:
            messages = ws.messages(cid)  # empty for a moment: created, prompt not yet stored
            if not messages:
                continue
            reply = messages[-1]
            # Words, not only white space: the check after the restart compares words.
            if reply.role == "assistant" and reply.status == "streaming" and reply.content.split():
                return cid, reply.content
            if reply.role == "assistant" and reply.status != "streaming":
                return None
        time.sleep(0.1)
    raise AssertionError("no reply was stored")
