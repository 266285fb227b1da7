"""The sidebar's engine choice without a vLLM server: a bad or dead address is named, in red, and
a prompt sent then fails with that reason; no other engine answers in its place.
(The choice answering through a real vLLM: tests/test_remote_engine.py.)"""

import pytest

from ff_lib.ui import state
from tests.apptest_helpers import (
    FULL_CHAT,
    GOOD_RUN,
    INFERENCE,
    READY,
    by_label,
    deterministic,
    effect_captions,
    page_text,
    private_copy,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.fixtures_vllm import free_port

BLIND = "pages/3_Blind_Test.py"


@pytest.fixture(scope="module")
def app_workspace(demo_workspace, tmp_path_factory):  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "engine")


@pytest.fixture
def ws_env(app_workspace, monkeypatch):
    monkeypatch.setenv("FF_WORKSPACE", str(app_workspace))
    monkeypatch.delenv("FF_ENGINE_URL", raising=False)
    return app_workspace


def test_a_dead_vllm_address_is_named_and_nothing_answers_in_its_place(ws_env):
    at = deterministic(select_run(start(INFERENCE), ws_env, GOOD_RUN), max_new_tokens=8)
    by_label(at.text_area, "Prompt").input("What is the capital of France?").run()
    assert by_label(at.radio, "Engine").value == "this machine"
    assert "Replies come from this machine." in page_text(at)
    by_label(at.radio, "Engine").set_value("vLLM server").run()
    by_label(at.text_input, "vLLM server URL").input("gpu-box:8000").run()
    assert "is not an address like http://HOST:PORT/v1" in page_text(at)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    by_label(at.text_input, "vLLM server URL").input(dead).run()
    assert f"The vLLM server at 127.0.0.1:{dead.split(':')[2][:-3]} ({dead}) does not answer" in (
        page_text(at)
    )
    # Not "Ready": Generate is locked, and a click that gets through is refused with the reason.
    assert READY not in page_text(at)
    assert by_label(at.button, "Generate").disabled
    # A click made while the page still showed the engine answering (it died since):
    at.session_state[state.INF_PENDING_PROMPT] = "What is the capital of France?"
    at.run()
    errors = [str(e.value) for e in at.error]
    assert any(dead in e and "does not answer" in e for e in errors), errors
    assert any("the engine is not reachable" in e and dead in e for e in errors), errors
    assert not at.session_state[state.CHAT_MESSAGES]  # nothing sent, no answer from this machine


def test_ff_engine_url_sets_the_sessions_first_choice(ws_env, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("FF_ENGINE_URL", dead)
    at = start()
    assert by_label(at.radio, "Engine").value == "vLLM server"
    assert by_label(at.text_input, "vLLM server URL").value == dead
    text = page_text(at)
    assert "does not answer" in text  # the sidebar, in red
    assert "No model in this process: replies come from vLLM at 127.0.0.1:" in text  # Home


def test_the_engine_choice_and_url_survive_a_page_change(ws_env):
    at = start(INFERENCE)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    by_label(at.radio, "Engine").set_value("vLLM server").run()
    by_label(at.text_input, "vLLM server URL").input(dead).run()
    for page in (FULL_CHAT, BLIND, INFERENCE):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert by_label(at.radio, "Engine").value == "vLLM server", page
        assert by_label(at.text_input, "vLLM server URL").value == dead, page
        text = page_text(at)
        assert "Replies come from this machine" not in text, page
        assert "does not answer" in text, page


def test_vllm_without_a_url_says_one_is_needed_and_nothing_answers(ws_env):
    at = deterministic(select_run(start(INFERENCE), ws_env, GOOD_RUN), max_new_tokens=8)
    by_label(at.text_area, "Prompt").input("What is the capital of France?").run()
    by_label(at.radio, "Engine").set_value("vLLM server").run()
    assert by_label(at.text_input, "vLLM server URL").value == ""
    text = page_text(at)
    assert "Replies come from this machine" not in text
    assert "needs its URL" in text and "nothing answers until one is given" in text, text
    assert READY not in text
    assert by_label(at.button, "Generate").disabled
    assert not at.session_state[state.CHAT_MESSAGES]  # nothing went to this machine


def test_a_validated_adapter_is_not_ready_while_its_engine_does_not_answer(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    assert READY in page_text(at)  # this machine answers
    dead = f"http://127.0.0.1:{free_port()}/v1"
    by_label(at.radio, "Engine").set_value("vLLM server").run()
    by_label(at.text_input, "vLLM server URL").input(dead).run()
    text = page_text(at)
    assert READY not in text
    assert "Adapter validated, but the engine is not reachable: nothing answers now." in text
    assert by_label(at.button, "Generate").disabled
    at.switch_page(FULL_CHAT).run()
    assert READY not in page_text(at)
    assert "the engine is not reachable" in page_text(at)
    assert at.chat_input(key="full_chat_input").disabled
    at.switch_page(BLIND).run()
    assert "The engine is not reachable: nothing answers now." in page_text(at)
    assert by_label(at.button, "Generate").disabled


def test_the_adapter_effect_says_which_engine_measured_it(ws_env):
    at = select_run(start(INFERENCE), ws_env, GOOD_RUN)
    effect = effect_captions(at)
    assert effect and effect[0].endswith(", measured by this machine"), effect
    by_label(at.radio, "Engine").set_value("vLLM server").run()
    by_label(at.text_input, "vLLM server URL").input(f"http://127.0.0.1:{free_port()}/v1").run()
    effect = [c.value for c in at.caption if c.value.startswith("adapter changes")]
    assert effect and effect[0].endswith(", measured by this machine"), effect  # not vLLM's
