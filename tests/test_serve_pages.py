"""AppTest: a conversation served over the API shows as such on Home and in Full Chat."""

import pytest

from ff_lib.data import Workspace
from ff_lib.inference.settings import GenerationSettings
from ff_lib.serve.catalog import ServedModel
from ff_lib.serve.parsing import ChatCall
from ff_lib.serve.recording import start_recording
from tests.apptest_helpers import FULL_CHAT, page_text, private_copy, start

QUESTION = "Which conversation came over the API?"


@pytest.fixture(scope="module")
def api_workspace(demo_workspace, tmp_path_factory):
    """The demo with one conversation recorded as `serve` records a request."""
    folder = private_copy(demo_workspace, tmp_path_factory, "serve-pages")
    ws = Workspace.open(folder)
    run = next(r for r in ws.list_runs() if r.name == "capitals-lora")
    model = ServedModel("capitals-lora", run.base_model, str(run.adapter_path), 0, run.id, run.name)
    call = ChatCall(
        model="capitals-lora",
        messages=[{"role": "user", "content": QUESTION}],
        settings=GenerationSettings(temperature=0),
        stops=(),
        logprobs=None,
        stream=False,
        include_usage=False,
    )
    recorder = start_recording(ws, call, model, "chatcmpl-test")
    assert "".join(recorder.pieces(iter(["This ", "one."]))) == "This one."
    (conversation,) = [c for c in ws.list_conversations() if c.source == "api"]
    return folder, conversation.id


def test_home_marks_api_conversations(api_workspace, monkeypatch):
    folder, _ = api_workspace
    monkeypatch.setenv("FF_WORKSPACE", str(folder))
    at = start()
    assert QUESTION in [t.value for t in at.text]
    badges = [m.value for m in at.markdown if "badge[" in m.value]
    assert len(badges) == 1 and "API" in badges[0]


def test_full_chat_says_the_conversation_was_served_over_the_api(api_workspace, monkeypatch):
    folder, conversation_id = api_workspace
    monkeypatch.setenv("FF_WORKSPACE", str(folder))
    at = start(FULL_CHAT, query={"c": conversation_id})
    text = page_text(at)
    assert "served over the API" in text and "This one." in text
