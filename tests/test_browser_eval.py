"""'Did it work?' in Debian's Chromium: Score a run on its dataset, then replay a conversation
against another run, on the demo workspace served by `streamlit run Home.py`."""

import re

import pytest
from playwright.sync_api import Page, expect

from ff_lib.data import Workspace
from ff_lib.evaluation import scorecard_means
from tests.browser_fixtures import (  # noqa: F401  (fixtures)
    app_server,
    browser_context_args,
    browser_type_launch_args,
    browser_workspace,
    screenshot,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.test_browser_journey import (
    READY,
    TIMEOUT_MS,
    choose,
    conversation_id,
    conversation_ids,
    settle,
    wait_stored,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def run_id(workspace, name: str) -> int:
    return next(r.id for r in Workspace.open(workspace).list_runs() if r.name == name)


def open_ready_run(page: Page, url: str, run_name: str) -> None:
    page.goto(f"{url}/Inference")
    expect(page.get_by_role("heading", name="Model & adapter")).to_be_visible(timeout=TIMEOUT_MS)
    choose(page, "inf_run", f"{run_name} · ")
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)


def test_score_puts_the_trained_run_far_above_the_base(page: Page, app_server):  # noqa: F811
    open_ready_run(page, app_server.url, "capitals-lora")
    page.locator(".st-key-score_panel").get_by_text("Score this run on a dataset").click()
    rows = page.locator(".st-key-score_rows input")
    rows.fill("5")
    rows.press("Enter")
    settle(page)
    page.locator(".st-key-score_button").get_by_role("button").click()

    results = page.locator(".st-key-score_results")
    expect(results).to_be_visible(timeout=TIMEOUT_MS)
    expect(results.get_by_text(re.compile(r"Scorecard \d+ · capitals · 5 rows"))).to_be_visible()
    screenshot(page, "scorecard")
    cards = Workspace.open(app_server.workspace).list_scorecards(
        run_id(app_server.workspace, "capitals-lora")
    )
    assert len(cards) == 1
    means = {m["Model"]: m for m in scorecard_means(cards[0])}
    assert means["capitals-lora"]["Exact match"] == 1.0
    assert means["base model"]["Exact match"] == 0.0


def test_replay_answers_a_saved_chat_with_another_run(page: Page, app_server):  # noqa: F811
    open_ready_run(page, app_server.url, "capitals-lora")
    page.locator(".st-key-inf_preset").get_by_text("Deterministic", exact=True).click()
    settle(page)
    page.locator(".st-key-inf_prompt textarea").fill("What is the capital of France?")
    known = conversation_ids(app_server.workspace)
    page.get_by_role("button", name="Generate").click()
    stored = wait_stored(app_server.workspace, 2, known)
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    cid = conversation_id(page)

    page.get_by_test_id("stSidebar").get_by_role("link", name="Full Chat").click()
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=TIMEOUT_MS)
    assert conversation_id(page) == cid
    page.locator(".st-key-replay_panel").get_by_text("Replay against another run").click()
    settle(page)
    choose(page, "replay_run", re.compile(r"^pirate-lora · "))
    page.locator(".st-key-replay_button").get_by_role("button").click()

    results = page.locator(".st-key-replay_results")
    expect(results).to_be_visible(timeout=TIMEOUT_MS)
    expect(results.get_by_text("0/1 answers unchanged")).to_be_visible()
    expect(results.get_by_text(re.compile(r"0 base model loads"))).to_be_visible()
    sides = results.locator(".ff-diff")
    expect(sides).to_have_count(2)
    assert sides.nth(0).inner_text().strip() == stored[1].content.strip()
    assert sides.nth(1).inner_text().strip().startswith("Arr")
    expect(results.locator("mark").first).to_be_visible()  # differences highlighted
    screenshot(page, "replay")


def test_the_server_log_has_no_traceback(app_server):  # noqa: F811
    assert "Traceback" not in app_server.log()
