"""A first start in Debian's Chromium: nothing leaves the machine, a reload brings the setup
back, and no label is cut off. Screenshots land in artifacts/screenshots/first_start_*.png."""

from dataclasses import asdict
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, expect

from ff_lib.chat import ensure_conversation, record_message
from ff_lib.data import Workspace
from ff_lib.inference import PRESETS
from tests.browser_fixtures import (  # noqa: F401  (fixtures)
    app_server,
    browser_context_args,
    browser_type_launch_args,
    browser_workspace,
    screenshot,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

READY = "Adapter validated. Ready for inference."
TIMEOUT_MS = 120_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def settle(page: Page) -> None:
    page.wait_for_timeout(300)
    idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
    expect(idle).to_have_count(1, timeout=TIMEOUT_MS)


def stored_conversation(workspace) -> tuple[str, str]:
    """A conversation answered by capitals-lora at Deterministic with 48 new tokens, stored the
    way a page stores a turn; returns (conversation id, run name)."""
    ws = Workspace.open(workspace)
    run = next(r for r in ws.list_runs() if r.name == "capitals-lora")
    prompt = "What is the capital of France?"
    cid = ensure_conversation(ws, None, prompt, run.id)
    provenance = {"run": {"id": run.id, "name": run.name}}
    settings = {**asdict(PRESETS["Deterministic"]), "max_new_tokens": 48}
    record_message(ws, cid, "user", prompt, meta=provenance)
    meta = {**provenance, "base_model": run.base_model, "settings": settings}
    record_message(ws, cid, "assistant", "The capital of France is Paris.", meta=meta)
    return cid, run.name


def test_no_page_fetches_anything_from_outside(page: Page, app_server):  # noqa: F811
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(app_server.url)
    expect(page.get_by_text("Recent training runs")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Inference").click()
    page.get_by_role("button", name="Use latest completed run").click()
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Full Chat").click()
    expect(page.get_by_role("heading", name="Full Chat")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    page.goto(f"{app_server.url}/Full_Chat")  # a page opened directly (favicon, fonts again)
    expect(page.get_by_role("heading", name="Full Chat")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    assert any(urlparse(u).path.endswith("/_stcore/health") or "static" in u for u in requested)
    outside = [
        u for u in requested
        if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in LOCAL_HOSTS
    ]  # fmt: skip
    assert outside == [], outside


def test_a_reload_or_continue_restores_the_conversation_s_run(page: Page, app_server):  # noqa: F811
    cid, run_name = stored_conversation(app_server.workspace)
    page.goto(f"{app_server.url}/Inference?c={cid}")
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    page.reload()
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    run_box = page.locator(".st-key-inf_run").get_by_role("combobox")
    expect(run_box).to_have_value(f"{run_name} · completed")
    preset = page.locator(".st-key-inf_preset").get_by_role("radio", name="Deterministic")
    expect(preset).to_be_checked()
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()

    # Home's Continue, in a fresh session (a new browser page has no session state).
    fresh = page.context.new_page()
    fresh.goto(app_server.url)
    fresh.get_by_role("link", name="Continue").first.click()
    expect(fresh.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    expect(fresh.get_by_text("No validated adapter")).to_have_count(0)
    expect(fresh.get_by_text(f"Run {run_name}").first).to_be_visible()
    fresh.close()


def cut_labels(page: Page) -> list[str]:
    """Labels of buttons, page links and metrics whose text does not fit (cut with an ellipsis)
    or is broken inside a word (more lines than words)."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
              '.stButton, .stDownloadButton, [data-testid=stPageLink], [data-testid=stMetricLabel]')]
            .flatMap(b => [...b.querySelectorAll('.stMarkdownEllipsis, p')])
            .filter(e => {
              const range = document.createRange();
              range.selectNodeContents(e);
              const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
              const words = e.innerText.trim().split(/\\s+/).length;
              return e.scrollWidth > e.clientWidth + 1 || lines > words;
            })
            .map(e => e.innerText)"""
    )


@pytest.mark.parametrize("width", [1400, 1280])
def test_labels_are_never_cut_and_links_look_like_buttons(page: Page, app_server, width):  # noqa: F811
    stored_conversation(app_server.workspace)  # a row with Download, Continue, Inference, Delete
    page.set_viewport_size({"width": width, "height": 1400})
    page.goto(f"{app_server.url}/Inference")
    page.get_by_role("button", name="Use latest completed run").click()
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    screenshot(page, f"first_start_inference_{width}")
    assert cut_labels(page) == []

    page.goto(app_server.url)
    expect(page.get_by_text("Recent conversations")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    screenshot(page, f"first_start_home_{width}")
    assert cut_labels(page) == []
    download = page.get_by_test_id("stDownloadButton").first.get_by_role("button").bounding_box()
    for name in ("Continue", "Inference"):
        link = (
            page.get_by_role("link", name=name, exact=True)
            .and_(page.locator("a[href*='?c=']"))
            .first
        )
        box = link.bounding_box()
        assert abs(box["height"] - download["height"]) <= 2, (name, box, download)
        assert abs(box["y"] - download["y"]) <= 2, (name, box, download)
        border = link.evaluate("e => getComputedStyle(e).borderTopWidth")
        assert border == "1px", (name, border)
