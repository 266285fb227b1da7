"""The sidebar's engine choice without a vLLM server: a bad or dead address is named, in red, and
a prompt sent then fails with that reason; no other engine answers in its place.
(The choice answering through a real vLLM: tests/test_remote_engine.py.)"""

import pytest

from ff_lib.ui import state
from tests.apptest_helpers import (
    GOOD_RUN,
    INFERENCE,
    by_label,
    deterministic,
    generate,
    page_text,
    private_copy,
    select_run,
    start,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.fixtures_vllm import free_port


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
    generate(at, "What is the capital of France?")
    errors = [str(e.value) for e in at.error]
    assert any(dead in e and "does not answer" in e for e in errors), errors
    reply = at.session_state[state.CHAT_MESSAGES][-1]
    assert reply.role == "assistant" and not reply.content  # no answer from this machine


def test_ff_engine_url_sets_the_sessions_first_choice(ws_env, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("FF_ENGINE_URL", dead)
    at = start()
    assert by_label(at.radio, "Engine").value == "vLLM server"
    assert by_label(at.text_input, "vLLM server URL").value == dead
    text = page_text(at)
    assert "does not answer" in text  # the sidebar, in red
    assert "No model in this process: replies come from vLLM at 127.0.0.1:" in text  # Home
