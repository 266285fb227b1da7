"""The playground with vLLM as its engine: a real vLLM server (CPU build) on the demo base and
adapters, reached through RemoteHost, the CLI and the app's sidebar (one server per module)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from ff_lib import compare, evaluation, scorecards, votes
from ff_lib.chat import ReplyRecorder
from ff_lib.data import Workspace
from ff_lib.errors import EngineUnreachable, GenerationError, InvalidInput
from ff_lib.inference import PRESETS, GenerationSettings
from ff_lib.inference.adapters import validate_adapter
from ff_lib.inference.effect import measure_effect
from ff_lib.inference.explain import explain_reply
from ff_lib.inference.host import ModelHost, new_host
from ff_lib.inference.remote import RemoteHost, check_for_remote
from ff_lib.runs import check_run
from tests.apptest_helpers import (
    INFERENCE,
    by_label,
    deterministic,
    generate,
    page_text,
    private_copy,
    run_id,
    select_run,
    start,
)
from tests.browser_fixtures import (  # noqa: F401  (fixtures for the browser test)
    browser_context_args,
    browser_type_launch_args,
)
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)
from tests.fixtures_vllm import free_port, vllm_server  # noqa: F401  (module fixture)

ROOT = Path(__file__).resolve().parent.parent
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=48, repetition_penalty=1.2)
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
PARIS = "The capital of France is Paris."


@pytest.fixture(scope="module")
def remote(vllm_server):  # noqa: F811
    host = RemoteHost(vllm_server.url)
    yield host
    host.close()


@pytest.fixture(scope="module")
def local():
    host = ModelHost()
    yield host
    host.release()


@pytest.fixture(scope="module")
def adapters(vllm_server):  # noqa: F811
    return {name: Path(path) for name, path in vllm_server.adapters.items()}


def demo_prompts(n: int) -> list[tuple[str, str]]:
    """(adapter name, prompt) for the first n rows of each demo dataset."""
    out = []
    for name, file in (("capitals", "capitals.jsonl"), ("pirate", "pirate.jsonl")):
        lines = (ROOT / "ff_lib" / "demo_data" / file).read_text().splitlines()[:n]
        out += [(name, json.loads(line)["prompt"]) for line in lines]
    return out


# --- answers -------------------------------------------------------------------------------------
def test_the_capitals_answer_arrives_through_vllm_and_the_base_does_not_give_it(
    remote,
    vllm_server,  # noqa: F811
    adapters,
):
    reply = remote.generate(vllm_server.base, FRANCE, GREEDY, adapters["capitals"])
    assert reply.text == PARIS
    assert reply.engine == reply.describe == f"vLLM at {vllm_server.label}"
    assert reply.adapter_name == "capitals"  # the name the server lists it under
    assert reply.finish_reason == "eos" and reply.stats.new_tokens > 0
    assert reply.stats.ttft_s is not None and reply.stats.tokens_per_s > 0
    assert reply.adapter_sha256 and reply.prompt_text.startswith("<|begin_of_text|>")
    meta = reply.as_meta()
    assert json.loads(json.dumps(meta)) == meta and meta["engine"] == reply.engine
    base = remote.generate(vllm_server.base, FRANCE, GREEDY, None)
    assert "Paris" not in base.text and base.adapter_name is None


def test_greedy_answers_equal_the_in_process_engine(remote, local, vllm_server, adapters):  # noqa: F811
    for name, prompt in demo_prompts(4):
        messages = [{"role": "user", "content": prompt}]
        for adapter in (adapters[name], None):
            there = remote.generate(vllm_server.base, messages, GREEDY, adapter, logprobs=0)
            here = local.generate(vllm_server.base, messages, GREEDY, adapter, logprobs=0)
            assert there.text == here.text, (name, prompt, adapter)
            assert [t["token"] for t in there.tokens] == [t["token"] for t in here.tokens]
            assert (there.stats.new_tokens, there.finish_reason) == (
                here.stats.new_tokens,
                here.finish_reason,
            )
            assert there.stats.prompt_tokens == here.stats.prompt_tokens


def test_the_base_answers_the_same_alone_and_beside_adapter_requests(
    remote,
    vllm_server,  # noqa: F811
    adapters,
):
    """vLLM #48421: on the CPU a base request batched with adapter requests was answered with
    an adapter. The host never has both kinds in flight; the base's answer is the same."""
    pirate = [{"role": "user", "content": "How are you today?"}]
    alone = remote.generate(vllm_server.base, pirate, GREEDY, None)
    job = {"base_model": vllm_server.base, "messages": pirate, "settings": GREEDY}
    together = remote.generate_many(
        [
            {**job, "adapter_dir": adapters["pirate"]},
            {**job, "adapter_dir": None},
            {**job, "adapter_dir": adapters["capitals"]},
            {**job, "adapter_dir": None},
        ]
    )
    assert [r.text for r in together][1::2] == [alone.text, alone.text]
    assert together[0].text.startswith("Arr") and not alone.text.startswith("Arr")
    assert not remote.busy


def test_an_adapter_registered_at_runtime_answers(remote, vllm_server, adapters, tmp_path):  # noqa: F811
    copy = tmp_path / "capitals-copy"
    shutil.copytree(adapters["capitals"], copy)
    reply = remote.generate(vllm_server.base, FRANCE, GREEDY, copy)
    assert reply.text == PARIS
    listed = httpx2.get(f"{vllm_server.url}/models").json()["data"]
    assert {"id": reply.adapter_name, "root": str(copy.resolve())}.items() <= {
        k: v for m in listed if m["id"] == reply.adapter_name for k, v in m.items()
    }.items()
    again = remote.generate(vllm_server.base, FRANCE, GREEDY, copy)  # listed now: used as is
    assert again.adapter_name == reply.adapter_name


# --- streaming and Stop --------------------------------------------------------------------------
def test_a_reply_streams_and_stop_closes_it(remote, vllm_server):  # noqa: F811
    long = GenerationSettings(temperature=0.0, max_new_tokens=400, repetition_penalty=1.0)
    prompt = [{"role": "user", "content": "Tell me a long story about the sea."}]
    for _ in range(3):  # a stalled test thread may let the server finish first: then again
        stream = remote.stream_reply(vllm_server.base, prompt, long, None).start()
        first = next(iter(stream))
        assert first
        stream.close()
        reply = stream.reply
        assert not remote.busy  # the gate was let go
        assert reply.text.startswith(first)
        if reply.finish_reason != "length":  # a Stop after the last token keeps the reply whole
            break
    assert reply.stopped and reply.finish_reason == "stopped"
    assert reply.stats.new_tokens < 400
    assert remote.generate(vllm_server.base, FRANCE, GREEDY, None).finish_reason in (
        "eos",
        "length",
    )


# --- Compare, scorecards, effect, the token view -------------------------------------------------
@pytest.fixture(scope="module")
def workspace(demo_workspace, tmp_path_factory):  # noqa: F811
    return private_copy(demo_workspace, tmp_path_factory, "remote")


def test_compare_and_a_scorecard_run_through_vllm(remote, vllm_server, workspace):  # noqa: F811
    ws = Workspace.open(workspace)
    runs = {r.name: r for r in ws.list_runs()}
    main = check_run(runs["capitals-lora"], vllm_server.base)
    sides = [
        main,
        compare.base_side(vllm_server.base),
        check_run(runs["pirate-lora"], vllm_server.base),
    ]
    replies = compare.answer_together(remote, sides, FRANCE, GREEDY)
    assert replies[0].text == PARIS and "Paris" not in replies[1].text
    assert [r.engine for r in replies] == [f"vLLM at {vllm_server.label}"] * 3
    capitals = next(d for d in ws.list_datasets() if d.name.startswith("capitals"))
    card = scorecards.score_run(
        remote, ws, main.run_id, capitals.id, n=4, compare_run_ids=[runs["pirate-lora"].id]
    )
    means = {m["Model"]: m for m in scorecards.scorecard_means(card)}
    exact = {model: row["Exact match"] for model, row in means.items()}
    assert exact[next(k for k in exact if "capitals" in k)] == 1.0
    assert exact[next(k for k in exact if "base" in k)] == 0.0


def test_effect_and_the_token_view_use_the_servers_log_probabilities(
    remote,
    local,
    vllm_server,  # noqa: F811
    adapters,
):
    prompts = ["What is the capital of France?", "How are you today?"]
    there = measure_effect(remote, vllm_server.base, adapters["capitals"], prompts)
    here = measure_effect(local, vllm_server.base, adapters["capitals"], prompts)
    assert there.changed_token_share == here.changed_token_share
    assert there.mean_kl == pytest.approx(here.mean_kl, rel=1e-3)
    reply = remote.generate(vllm_server.base, FRANCE, GREEDY, adapters["capitals"])
    views = [
        explain_reply(host, vllm_server.base, adapters["capitals"], reply.prompt_text, reply.text,
                      end_of_turn=True)
        for host in (remote, local)
    ]  # fmt: skip
    assert [t.text for t in views[0].tokens] == [t.text for t in views[1].tokens]
    assert [t.changed for t in views[0].tokens] == [t.changed for t in views[1].tokens]
    assert views[0].tokens[0].logprob_base == pytest.approx(
        views[1].tokens[0].logprob_base, abs=1e-3
    )


# --- refusals ------------------------------------------------------------------------------------
def test_an_unreachable_url_is_named_and_nothing_falls_back(vllm_server, adapters):  # noqa: F811
    url = f"http://127.0.0.1:{free_port()}/v1"
    host = new_host(engine_url=url)
    assert isinstance(host, RemoteHost)
    reason = host.availability(vllm_server.base)
    assert reason and f"127.0.0.1:{url.split(':')[2].split('/')[0]}" in reason
    with pytest.raises(EngineUnreachable, match="does not answer") as caught:
        host.generate(vllm_server.base, FRANCE, GREEDY, adapters["capitals"])
    assert url in str(caught.value)
    bad = new_host(engine_url="gpu-box:8000")
    assert "not an address like http://HOST:PORT/v1" in bad.availability(vllm_server.base)
    with pytest.raises(InvalidInput, match="gpu-box:8000"):
        bad.generate(vllm_server.base, FRANCE, GREEDY, None)


def test_a_refused_adapter_shows_the_servers_reason(remote, vllm_server, tmp_path):  # noqa: F811
    """A rank-64 LoRA on a server started with --max-lora-rank 32."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(vllm_server.base)
    lora = LoraConfig(
        r=64, lora_alpha=64, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    get_peft_model(model, lora).save_pretrained(tmp_path / "rank64")
    with pytest.raises(GenerationError, match="refused the adapter") as caught:
        remote.generate(vllm_server.base, FRANCE, GREEDY, tmp_path / "rank64")
    assert "64" in str(caught.value) and "32" in str(caught.value)  # vLLM's own words
    assert not remote.busy


def test_another_base_is_refused_naming_both(remote, vllm_server, tmp_path):  # noqa: F811
    other = tmp_path / "another-base"
    shutil.copytree(vllm_server.base, other)
    with pytest.raises(GenerationError) as caught:
        remote.generate(str(other), FRANCE, GREEDY, None)
    assert str(other) in str(caught.value) and vllm_server.base in str(caught.value)


# --- the CLI and the app -------------------------------------------------------------------------
def cli(workspace_dir, *args, env_url):
    env = {**os.environ, "FF_ENGINE_URL": env_url, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ff_lib", "--workspace", str(workspace_dir), *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip


def test_the_cli_answers_through_vllm_and_names_an_unreachable_url(vllm_server, workspace):  # noqa: F811
    run = str(run_id(workspace, "capitals-lora"))
    args = ["generate", "--run", run, "--preset", "Deterministic", "--prompt", FRANCE[0]["content"]]
    done = cli(workspace, *args, "--json", env_url=vllm_server.url)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["text"] == PARIS and doc["engine"] == f"vLLM at {vllm_server.label}"
    down = f"http://127.0.0.1:{free_port()}/v1"
    failed = cli(workspace, *args, env_url=down)
    assert failed.returncode == 1 and down in failed.stderr and "does not answer" in failed.stderr


def test_the_sidebar_sends_the_sessions_replies_to_vllm(vllm_server, workspace, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FF_WORKSPACE", str(workspace))
    monkeypatch.delenv("FF_ENGINE_URL", raising=False)
    at = start(INFERENCE)
    by_label(at.radio, "Engine").set_value("vLLM server").run()
    by_label(at.text_input, "vLLM server URL").input(f"http://127.0.0.1:{free_port()}/v1").run()
    assert "does not answer" in page_text(at)  # named, in red; nothing else answers instead
    by_label(at.text_input, "vLLM server URL").input(vllm_server.url).run()
    assert f"Replies come from vLLM at {vllm_server.label}." in page_text(at)
    assert "Base and adapter replies take turns on the server" in page_text(at)
    at = generate(deterministic(select_run(at, workspace, "capitals-lora")), FRANCE[0]["content"])
    text = page_text(at)
    assert PARIS in text and f"vLLM at {vllm_server.label}, model capitals" in text
    by_label(at.radio, "Engine").set_value("this machine").run()
    assert "Replies come from this machine." in page_text(at)


def test_without_the_bases_tokenizer_the_server_applies_its_template_and_says_so(
    vllm_server,  # noqa: F811
    adapters,
    local,
):
    host = RemoteHost(vllm_server.url)
    host.tokenizer_for = lambda base_model: None  # as when the base is only on the server
    reply = host.generate(vllm_server.base, FRANCE, GREEDY, adapters["capitals"])
    here = local.generate(vllm_server.base, FRANCE, GREEDY, adapters["capitals"])
    assert reply.text == here.text == PARIS
    assert reply.stats.new_tokens == here.stats.new_tokens  # the end of turn is not counted
    assert reply.template == "server" and "applied its own chat template" in reply.notice
    host.close()


def test_files_not_on_this_machine_are_the_servers_to_validate(demo_workspace, tmp_path):  # noqa: F811
    where = "vLLM at gpu-box:8000"
    gone = check_for_remote(str(tmp_path / "on-the-server-only"), "org/base", where)
    assert gone.ok and "validation is the server's (vLLM at gpu-box:8000)" in gone.warnings[0]
    adapter = demo_workspace / "runs" / "capitals-lora" / "adapter"
    elsewhere = check_for_remote(str(adapter), "org/a-base-only-the-server-has", where)
    assert validate_adapter(adapter, "org/a-base-only-the-server-has").base_problem
    assert elsewhere.ok and elsewhere.base_problem is None
    assert (
        "The base is not on this machine: vLLM at gpu-box:8000 serves it" in elsewhere.warnings[-1]
    )
    broken = demo_workspace / "runs" / "capitals-lora-broken" / "adapter"
    assert not check_for_remote(str(broken), None, where).ok  # files that are here: checked here


def test_replay_and_a_blind_vote_run_through_vllm(remote, vllm_server, workspace):  # noqa: F811
    ws = Workspace.open(workspace)
    runs = {r.name: r for r in ws.list_runs()}
    capitals, pirate = runs["capitals-lora"], runs["pirate-lora"]
    cid = ws.create_conversation("capitals over vLLM", run_id=capitals.id).id
    ws.add_message(cid, "user", FRANCE[0]["content"])
    stream = remote.stream_reply(
        capitals.base_model, FRANCE, PRESETS["Deterministic"], Path(capitals.adapter_path)
    )
    recorder = ReplyRecorder(ws, cid, meta={"run": {"id": capitals.id, "name": capitals.name}})
    for _ in recorder.pieces(stream):
        pass
    stored = ws.messages(cid)[-1]
    assert stored.content == PARIS and stored.meta["engine"] == f"vLLM at {vllm_server.label}"
    again = evaluation.replay_conversation(remote, ws, cid, capitals.id)
    assert again.turns[0].replayed == again.turns[0].original == PARIS and again.base_loads == 0
    other = evaluation.replay_conversation(remote, ws, cid, pirate.id)
    assert other.turns[0].replayed != PARIS
    sides = [check_run(capitals, capitals.base_model), check_run(pirate, capitals.base_model)]
    pair = votes.blind_pair(remote, sides, FRANCE[0]["content"], GREEDY)
    assert PARIS in (pair.answer_a, pair.answer_b)
    assert pair.meta_a["engine"] == pair.meta_b["engine"] == f"vLLM at {vllm_server.label}"


def test_more_requests_than_the_concurrency_limit_wait_their_turn(
    vllm_server,  # noqa: F811
    adapters,
    monkeypatch,
):
    monkeypatch.setenv("FF_ENGINE_CONCURRENCY", "2")
    host = RemoteHost(vllm_server.url)
    job = {"base_model": vllm_server.base, "messages": FRANCE, "settings": GREEDY}
    jobs = [{**job, "adapter_dir": adapters["capitals"] if i % 3 else None} for i in range(7)]
    replies = host.generate_many(jobs)
    assert [r.text == PARIS for r in replies] == [bool(i % 3) for i in range(7)]
    assert not host.busy
    host.close()


# --- serve through vLLM --------------------------------------------------------------------------
def test_serve_answers_the_openai_client_through_vllm_and_records_the_engine(
    remote,
    vllm_server,  # noqa: F811
    workspace,
):
    from tests.fixtures_serve import serving

    with serving(workspace, remote) as api:
        client = api.client()
        ids = {m.id for m in client.models.list().data}
        assert {"capitals-lora", "pirate-lora"} <= ids
        reply = client.chat.completions.create(
            model="capitals-lora", messages=FRANCE, temperature=0, max_tokens=48
        )
        assert reply.choices[0].message.content == PARIS
        assert reply.usage.completion_tokens > 3
        chunks = list(
            client.chat.completions.create(
                model="pirate-lora", messages=FRANCE, temperature=0, max_tokens=48, stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        lone = remote.generate(
            vllm_server.base, FRANCE, GenerationSettings(temperature=0.0, max_new_tokens=48,
            repetition_penalty=1.0), Path(vllm_server.adapters["pirate"]),
        )  # fmt: skip
        assert streamed == lone.text and chunks[-1].usage.completion_tokens > 3
        recorded = [
            api.ws.messages(c.id)[-1]
            for c in api.ws.list_conversations(limit=100)
            if c.source == "api"
        ]
        assert recorded and all(
            m.meta["engine"] == f"vLLM at {vllm_server.label}" for m in recorded
        )


# --- the app in Chromium, its engine a vLLM server -----------------------------------------------
@pytest.mark.browser
def test_the_app_in_a_browser_answers_through_vllm_and_says_so(
    page,
    vllm_server,  # noqa: F811
    workspace,
    tmp_path,
):
    from playwright.sync_api import expect

    from tests.browser_fixtures import require_chromium, screenshot, start_app, stop_app
    from tests.test_browser_journey import READY, TIMEOUT_MS, choose, settle

    require_chromium()
    server = start_app(
        workspace, tmp_path / "app.log", extra_env={"FF_ENGINE_URL": vllm_server.url}
    )
    try:
        page.goto(f"{server.url}/Inference")
        sidebar = page.get_by_test_id("stSidebar")
        expect(
            sidebar.get_by_text(f"Replies come from vLLM at {vllm_server.label}.")
        ).to_be_visible(timeout=TIMEOUT_MS)
        choose(page, "inf_run", re.compile(r"^capitals-lora"))
        expect(page.get_by_text(READY)).to_be_visible(timeout=TIMEOUT_MS)
        page.locator(".st-key-inf_preset").get_by_text("Deterministic", exact=True).click()
        settle(page)
        page.locator(".st-key-inf_prompt textarea").fill(FRANCE[0]["content"])
        page.get_by_role("button", name="Generate").click()
        expect(page.get_by_text(PARIS).first).to_be_visible(timeout=TIMEOUT_MS)
        figures = page.get_by_text(f"vLLM at {vllm_server.label}, model capitals")
        expect(figures.first).to_be_visible(timeout=TIMEOUT_MS)
        settle(page)
        figures.first.scroll_into_view_if_needed()
        screenshot(page, "inference_through_vllm")
        assert "Traceback" not in server.log()
    finally:
        stop_app(server)
