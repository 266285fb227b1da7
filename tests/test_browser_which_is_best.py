"""'Which one is best?' walked as a user would, in one Chromium session on the demo: Compare with
three models (the base, another run, a checkpoint) -> the checkpoint sweep and its chart, looked
at once drawn -> the token view of a reply -> a blind vote -> the DPO pairs downloaded and read.

The walk's wall time is printed (run with -s to see it); screenshots go to artifacts/screenshots.
"""

import json
import re
import time

import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from ff_lib.data import Workspace
from tests.browser_fixtures import (  # noqa: F401  (fixtures)
    SCREENSHOTS,
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
    conversation_ids,
    settle,
    wait_stored,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

RUN, OTHER = "capitals-lora", "pirate-lora"
CHECKPOINT = "checkpoint-50"
PROMPT = "What is the capital of France?"
SWEEP_ROWS = "4"


def pick_many(page: Page, key: str, labels: list[re.Pattern]) -> None:
    """Add each option (by label pattern) to the multiselect with widget key `key`, as a user
    clicks them one by one; a click lost to a rerun is tried again until its tag shows."""
    box = page.locator(f".st-key-{key}")
    combo = box.get_by_role("combobox")
    for label in labels:
        tag = box.locator("[data-tag]").filter(has_text=label)
        for _ in range(4):
            combo.click()
            if combo.get_attribute("aria-expanded") != "true":
                combo.press("ArrowDown")  # a click only focuses the box at times
            try:
                page.get_by_role("option", name=label).click(timeout=5000)
                page.keyboard.press("Escape")
                settle(page)
                expect(tag).to_have_count(1, timeout=5000)
                break
            except (AssertionError, PlaywrightTimeoutError):
                page.keyboard.press("Escape")
                settle(page)
        expect(tag).to_have_count(1)


def drawn_marks(chart: Locator) -> dict:
    """What a Vega-Lite chart drew in its SVG: the data's lines (non-empty paths), point
    symbols and rules (axes and legends left out), and every text."""
    return chart.evaluate(
        """root => {
            const svg = root.querySelector('svg.marks');
            if (!svg) return {svg: false};
            const drawn = sel => [...svg.querySelectorAll(sel)]
                .filter(p => p.tagName === 'line' || (p.getAttribute('d') || '').length > 4).length;
            return {
                svg: true,
                lines: drawn('g.mark-line.role-mark path'),
                points: drawn('g.mark-symbol.role-mark path'),
                rules: drawn('g.mark-rule.role-mark line'),
                texts: [...svg.querySelectorAll('text')].map(t => t.textContent),
            };
        }"""
    )


def wait_drawn(page: Page, chart: Locator, ready) -> dict:
    """The chart's marks once `ready(marks)` holds (Vega draws after the element shows)."""
    expect(chart.locator("svg.marks")).to_be_visible(timeout=TIMEOUT_MS)
    deadline = time.monotonic() + 30
    marks = drawn_marks(chart)
    while not ready(marks) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        marks = drawn_marks(chart)
    return marks


def region_screenshot(page: Page, name: str, *parts: Locator, pad: int = 12) -> None:
    """artifacts/screenshots/<name>.png: the region spanning `parts` (the whole page when none),
    taken in a viewport tall enough that nothing scrolls, the mouse out of the way (a hovered
    chart shows its toolbar over the text above it)."""
    size = page.viewport_size
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain] *')]"
        ".map(e => e.scrollHeight))"
    )
    tall = {"width": size["width"], "height": min(max(height, 900), 4000)}
    page.set_viewport_size(tall)
    page.mouse.move(tall["width"] - 2, tall["height"] - 2)  # over nothing: no toolbar, no tooltip
    page.wait_for_timeout(400)
    settle(page)
    path = str(SCREENSHOTS / f"{name}.png")
    if parts:
        boxes = [part.bounding_box() for part in parts]
        left, top = min(b["x"] for b in boxes) - pad, min(b["y"] for b in boxes) - pad
        right = max(b["x"] + b["width"] for b in boxes) + pad
        bottom = max(b["y"] + b["height"] for b in boxes) + pad
        page.screenshot(path=path, clip={"x": max(left, 0), "y": max(top, 0),
                                         "width": right - left, "height": bottom - top})  # fmt: skip
    else:
        page.screenshot(path=path, full_page=True)
    page.set_viewport_size(size)


def compare_step(page: Page, server) -> dict:
    """Inference: the run, three models beside it, Generate; every column with its figures."""
    page.goto(f"{server.url}/Inference")
    expect(page.get_by_role("heading", name="Model & adapter")).to_be_visible(timeout=TIMEOUT_MS)
    choose(page, "inf_run", f"{RUN} · ")
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    page.locator(".st-key-inf_preset").get_by_text("Deterministic", exact=True).click()
    settle(page)
    ids = {r.name: r.id for r in Workspace.open(server.workspace).list_runs()}
    beside = [r"^base model · ", rf"^{OTHER} \(run {ids[OTHER]}\)$", rf"^{RUN} · {CHECKPOINT}$"]
    pick_many(page, "inf_compare_with", [re.compile(b) for b in beside])
    page.locator(".st-key-inf_prompt textarea").fill(PROMPT)
    settle(page)
    known = conversation_ids(server.workspace)
    page.get_by_role("button", name="Generate").click()
    cid = wait_stored(server.workspace, 2, known)[0].conversation_id
    expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_role("button", name="Generate")).to_be_enabled(timeout=TIMEOUT_MS)
    settle(page)

    reply = Workspace.open(server.workspace).messages(cid)[1]  # every side stored by now
    sides = reply.meta["compare_replies"]
    names = ["base model", OTHER, f"{RUN}-{CHECKPOINT}"]
    assert [s["label"] for s in sides] == names and all(s["status"] == "complete" for s in sides)
    turn = page.locator(f".st-key-inf_out_turn_{reply.id}")
    for label in [RUN, *names]:  # one column per model, titled with who answered
        expect(turn.get_by_text(label, exact=True)).to_be_visible()
    expect(turn.get_by_text("tokens/s")).to_have_count(4)  # each column's figures
    expect(turn.locator("mark").first).to_be_visible()  # the pirate's words differ
    expect(turn.get_by_text(reply.content.strip()[:30]).first).to_be_visible()
    region_screenshot(page, "compare", page.locator(".st-key-inf_compare_with"), turn)
    return {"reply": reply, "turn": turn}


def token_view_step(page: Page, reply, turn: Locator) -> None:
    """ "Why this answer?" under the run's reply: coloured tokens and the summary line."""
    turn.locator(f".st-key-inf_out_why_{reply.id}").get_by_role("button").click()
    view = page.locator(f".st-key-inf_out_explain_{reply.id}")
    expect(view).to_be_visible(timeout=TIMEOUT_MS)
    tokens = view.locator(".ff-explain span")
    expect(tokens.first).to_be_visible()
    assert tokens.count() >= 3
    coloured = view.evaluate(
        """v => [...v.querySelectorAll('.ff-explain span')].filter(s => {
            const m = getComputedStyle(s).backgroundColor.match(/rgba?\\(([^)]*)\\)/);
            const alpha = m ? m[1].split(',').map(Number)[3] : 0;
            return alpha > 0.05; }).length"""
    )
    assert coloured >= 1, "no token is coloured: the adapter changed nothing?"
    shown = "".join(tokens.all_inner_texts()).strip()
    # The reply's tokens, then the end of turn it chose (the demo's Llama-3 template).
    assert shown in (reply.content.strip(), reply.content.strip() + "<|eot_id|>"), shown
    summary = r"^The base would have picked another token at \d+ of \d+ positions"
    expect(view.get_by_text(re.compile(summary))).to_be_visible()
    box, turn_box = view.bounding_box(), turn.bounding_box()
    assert box["width"] > 0.9 * turn_box["width"] - 40, "the token view is squeezed into a column"
    region_screenshot(page, "token_view", turn)


def sweep_step(page: Page) -> None:
    """The sweep on 4 rows of the capitals dataset; the chart drawn, its best marked."""
    page.locator(".st-key-sweep_panel").get_by_text("Sweep checkpoints on a dataset").click()
    rows = page.locator(".st-key-sweep_rows input")
    expect(rows).to_be_visible()
    rows.fill(SWEEP_ROWS)
    rows.press("Enter")
    settle(page)
    page.locator(".st-key-sweep_button").get_by_role("button").click()
    best = page.get_by_text(re.compile(rf"Best: \S+ \(step \d+\) of run \S+ on {SWEEP_ROWS} rows"))
    expect(best).to_be_visible(timeout=TIMEOUT_MS)
    best_name = re.search(r"Best: (\S+)", best.inner_text()).group(1)
    panel = page.locator(".st-key-sweep_panel")
    charts = panel.get_by_test_id("stVegaLiteChart")
    expect(charts).to_have_count(2, timeout=TIMEOUT_MS)  # the scores, the logged loss beside
    label = f"best: {best_name}"
    scores = wait_drawn(page, charts.nth(0), lambda m: label in m.get("texts", []))
    assert scores["svg"], "the scores chart has no SVG"
    assert scores["lines"] == 3, scores  # exact match, token F1, ROUGE-L
    assert scores["points"] == 3 * 4, scores  # three checkpoints and the final adapter
    assert scores["rules"] == 1, scores  # the dashed rule at the best step
    assert label in scores["texts"], scores
    assert {"Scores by checkpoint", "training step", "score", "token F1"} <= set(scores["texts"])
    loss = wait_drawn(page, charts.nth(1), lambda m: m.get("lines", 0) >= 1)
    assert loss["lines"] >= 1 and loss["points"] >= 10, loss  # logged every 10 of 200 steps
    assert {"Logged loss", "logged loss", "train loss"} <= set(loss["texts"]), loss
    for chart in (charts.nth(0), charts.nth(1)):  # neither is cut off at its right edge
        svg = chart.locator("svg.marks").bounding_box()
        frame = chart.bounding_box()
        assert svg["x"] + svg["width"] <= frame["x"] + frame["width"] + 1, (svg, frame)
    region_screenshot(page, "sweep", panel)


def blind_step(page: Page, server) -> dict:
    """Blind test: the run against the base, a vote, the reveal, the tally."""
    page.get_by_test_id("stSidebar").get_by_role("link", name="Blind test").click()
    expect(page.get_by_role("heading", name="Blind test")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    choose(page, "blind_first", f"{RUN} · completed")
    choose(page, "blind_second", re.compile(r"^base model · "))
    page.locator(".st-key-blind_preset").get_by_text("Deterministic", exact=True).click()
    settle(page)
    page.locator(".st-key-blind_prompt textarea").fill(PROMPT)
    settle(page)
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="A better")).to_be_enabled(timeout=TIMEOUT_MS)
    expect(page.get_by_text("A was")).to_have_count(0)  # still blind
    answers = page.locator("[data-testid=stText]")
    expect(answers).to_have_count(2)
    a_text, b_text = answers.nth(0).inner_text(), answers.nth(1).inner_text()
    assert ("Paris" in a_text) != ("Paris" in b_text), (a_text, b_text)
    better = "A" if "Paris" in a_text else "B"  # as a user would: the one that knows
    page.get_by_role("button", name=f"{better} better").click()
    revealed = page.get_by_text(re.compile(rf"Vote stored: {better} better\. A was .* B was "))
    expect(revealed).to_be_visible(timeout=TIMEOUT_MS)
    who = re.search(r"A was (.*) · B was (.*)\.$", revealed.inner_text().strip())
    assert f"{RUN} (run " in who.group(1 if better == "A" else 2)  # the fine-tune won
    assert "base model" in who.group(2 if better == "A" else 1)
    expect(page.get_by_text(re.compile(r"vs .*: 1 vote\(s\)"))).to_be_visible()
    for label in ("A better", "B better", "Tie", "Both bad"):  # one vote per pair
        expect(page.get_by_role("button", name=label)).to_be_disabled()
    tally = page.get_by_test_id("stDataFrame")
    expect(tally).to_be_visible()
    region_screenshot(page, "blind_test")
    votes = Workspace.open(server.workspace).list_votes()
    assert len(votes) == 1 and votes[0].verdict == better.lower()
    return {"vote": votes[0]}


def dpo_step(page: Page, vote, tmp_path) -> None:
    """The DPO download: one pair, chosen = the answer voted better."""
    with page.expect_download() as info:
        page.get_by_role("button", name="Download DPO pairs (JSONL)").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    chosen, rejected = (vote.answer_a, vote.answer_b)[:: 1 if vote.verdict == "a" else -1]
    assert lines == [{"prompt": PROMPT, "chosen": chosen, "rejected": rejected}]
    assert "Paris" in lines[0]["chosen"] and "Paris" not in lines[0]["rejected"]
    assert info.value.suggested_filename.endswith(".jsonl")


def test_which_is_best_walk(page: Page, app_server, tmp_path):  # noqa: F811
    started = time.monotonic()
    marks = {}
    seen = compare_step(page, app_server)
    marks["compare"] = time.monotonic() - started
    sweep_step(page)
    marks["sweep"] = time.monotonic() - started
    token_view_step(page, seen["reply"], seen["turn"])
    marks["token view"] = time.monotonic() - started
    voted = blind_step(page, app_server)
    marks["blind vote"] = time.monotonic() - started
    dpo_step(page, voted["vote"], tmp_path)
    marks["DPO export"] = time.monotonic() - started
    print("\nwhich-is-best walk, seconds from the start: "
          + ", ".join(f"{k} {v:.1f}" for k, v in marks.items()))  # fmt: skip


def test_the_server_log_has_no_traceback(app_server):  # noqa: F811
    assert "Traceback" not in app_server.log()
