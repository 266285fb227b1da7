"""Shared AppTest helpers: start the app from Home.py and find elements the way a user does."""

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ff_lib.data import Workspace

ROOT = Path(__file__).resolve().parent.parent
HOME = str(ROOT / "Home.py")
INFERENCE = "pages/1_Inference.py"
FULL_CHAT = "pages/2_Full_Chat.py"
READY = "Adapter validated. Ready for inference."
GOOD_RUN = "capitals-lora"
TIMEOUT = 90  # a model load on a busy 2-core machine


def by_label(elements, label):
    found = [e for e in elements if e.label == label]
    assert found, f"no element labelled {label!r}: {[e.label for e in elements]}"
    return found[0]


def texts(at) -> list[str]:
    """Every bit of text on the page (markdown, captions, text, alerts)."""
    out = []
    for kind in ("markdown", "caption", "text", "success", "error", "warning", "info"):
        out += [str(e.value) for e in getattr(at, kind)]
    return out


def page_text(at) -> str:
    return "\n".join(texts(at))


def private_copy(demo_workspace: Path, tmp_path_factory, name: str) -> Path:
    """A copy of the built demo for one module: its tests write conversations and scorecards."""
    target = tmp_path_factory.mktemp(name) / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


def run_named(folder: Path, name: str):
    return next(r for r in Workspace.open(folder).list_runs() if r.name == name)


def run_id(folder: Path, name: str) -> int:
    return run_named(folder, name).id


def start(page: str | None = None, query: dict | None = None) -> AppTest:
    """The app from Home.py (as a multipage test must), then `page` if given."""
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    if query:
        at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def select_run(at, folder: Path, name: str) -> AppTest:
    by_label(at.selectbox, "Training run").select(run_id(folder, name)).run()
    assert not at.exception, at.exception
    return at


def deterministic(at, max_new_tokens: int = 32) -> AppTest:
    by_label(at.radio, "Preset").set_value("Deterministic").run()
    by_label(at.slider, "Max new tokens").set_value(max_new_tokens).run()
    return at


def generate(at, prompt: str) -> AppTest:
    by_label(at.text_area, "Prompt").input(prompt).run()
    by_label(at.button, "Generate").click().run()
    assert not at.exception, at.exception
    return at


def effect_captions(at) -> list[str]:
    """The Inference page's 'adapter changes ...' line, measuring the effect first when this
    process has not measured it yet (its button is shown then)."""
    measure = [b for b in at.button if b.key == "effect_button"]
    if measure:
        measure[0].click().run()
    assert not at.exception, at.exception
    return [c.value for c in at.caption if c.value.startswith("adapter changes")]
