"""Engine v2: mixed-adapter batches equal lone rows and the PEFT reference, the base stays exact,
streams join and leave a running batch, and the whole context works."""

import threading
import time
from pathlib import Path

import pytest
import torch

from ff_lib.errors import AdapterInvalid, GenerationError
from ff_lib.inference import GenerationSettings, ModelHost
from tests.fixtures_models import CAPITAL_PAIRS

GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0)
QUESTIONS = [q for q, _ in CAPITAL_PAIRS[:4]]


def _job(base, question, adapter, settings=GREEDY):
    return {
        "base_model": str(base),
        "messages": [{"role": "user", "content": question}],
        "settings": settings,
        "adapter_dir": adapter,
        "logprobs": 0,
    }


def _mixed_jobs(base, capitals, other):
    adapters = [capitals, other, None]
    return [_job(base, q, adapters[i % 3]) for i, q in enumerate(QUESTIONS * 2)]


def _peft_reference(base, adapter, prompt_ids, n):
    """Greedy tokens from transformers + peft (unmerged), the reference the engine must equal."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=n,
            repetition_penalty=1.0,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        logits = model(input_ids=out).logits[0].float()
    return out[0, len(prompt_ids) :].tolist(), logits


def test_a_mixed_adapter_batch_equals_each_row_alone(
    host, tiny_base, capitals_adapter, other_adapter
):
    jobs = _mixed_jobs(tiny_base, capitals_adapter, other_adapter)
    together = host.generate_many(jobs)
    assert host._engine.scheduler.max_batch_seen >= len(jobs)
    alone = [host.generate(**job) for job in jobs]
    for a, b in zip(together, alone, strict=True):
        assert [t["token"] for t in a.tokens] == [t["token"] for t in b.tokens]
        assert a.text == b.text
    # The adapters really answer: capitals gives its trained answers, the base does not.
    assert together[0].text == CAPITAL_PAIRS[0][1]
    assert together[2].text != CAPITAL_PAIRS[2][1]


@pytest.mark.parametrize("which", ["capitals", "other", "base"])
def test_batched_rows_equal_the_peft_reference(
    host, tiny_base, capitals_adapter, other_adapter, which
):
    adapter = {"capitals": capitals_adapter, "other": other_adapter, "base": None}[which]
    jobs = _mixed_jobs(tiny_base, capitals_adapter, other_adapter)
    replies = host.generate_many(jobs)
    row = [i for i, j in enumerate(jobs) if j["adapter_dir"] == adapter][0]
    reply = replies[row]
    tokens = [t["token"] for t in reply.tokens]
    engine = host.load_base(str(tiny_base))
    prompt_ids = engine.tokenizer(reply.prompt_text, add_special_tokens=False)["input_ids"]
    expected, ref_logits = _peft_reference(tiny_base, adapter, prompt_ids, len(tokens) + 1)
    assert tokens == expected[: len(tokens)]
    # Logits of the whole sequence, teacher-forced in one batched forward, within 1e-5.
    full = prompt_ids + expected
    ours = host.score(str(tiny_base), full, [adapter])[0]
    assert torch.allclose(ours, ref_logits, atol=1e-5, rtol=0)


def test_the_base_stays_bit_exact_after_1000_switches(tiny_base, capitals_adapter, other_adapter):
    host = ModelHost(max_adapters=1)  # every switch evicts and rewrites the one slot
    engine = host.load_base(str(tiny_base))
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    ids = engine.tokenizer("What is the capital of France?")["input_ids"]
    logits_before = host.score(str(tiny_base), ids, [None])
    slots = engine.batched.slots
    for i in range(1000):
        slots.ensure(str(capitals_adapter if i % 2 else other_adapter), set())
    assert slots.loads >= 1000
    after = engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(host.score(str(tiny_base), ids, [None]), logits_before)


def test_streams_join_a_running_batch_and_a_stop_frees_its_row_at_once(
    host, tiny_base, capitals_adapter, other_adapter
):
    long = GenerationSettings(temperature=0.0, max_new_tokens=400, repetition_penalty=1.0)
    first = host.stream_reply(str(tiny_base), [{"role": "user", "content": "Hi"}], long, None)
    pieces = iter(first)
    next(pieces)  # the first reply is decoding
    scheduler = host._engine.scheduler
    second = host.stream_reply(
        str(tiny_base), [{"role": "user", "content": QUESTIONS[0]}], GREEDY, capitals_adapter
    )
    assert second.text() == CAPITAL_PAIRS[0][1]  # joined while the first one streamed
    assert scheduler.max_batch_seen >= 2
    steps = scheduler.steps
    first.close()
    assert first.reply.finish_reason == "stopped"
    assert scheduler.steps - steps <= 2  # left within a step
    deadline = time.monotonic() + 5
    while scheduler.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduler.live == 0


def test_concurrent_sessions_each_get_their_adapters_answer(
    host, tiny_base, capitals_adapter, other_adapter
):
    results = {}

    def session(name, adapter):
        results[name] = host.generate(**_job(tiny_base, QUESTIONS[1], adapter)).text

    threads = [
        threading.Thread(target=session, args=(n, a))
        for n, a in (("capitals", capitals_adapter), ("other", other_adapter), ("base", None))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["capitals"] == CAPITAL_PAIRS[1][1]
    assert results["other"] != results["capitals"]
    assert results["base"] != results["capitals"]


def test_a_prompt_at_the_context_boundary_fills_the_context(host, tiny_base):
    engine = host.load_base(str(tiny_base))
    n = engine.context_length
    word = "capital "
    long_prompt = word * (n * 2)  # far past the context: cut from the left to fit
    settings = GenerationSettings(temperature=0.0, max_new_tokens=8, repetition_penalty=1.0)
    reply = host.generate(
        str(tiny_base), [{"role": "user", "content": long_prompt}], settings, None
    )
    assert reply.truncated_tokens > 0
    assert reply.stats.prompt_tokens + reply.max_new_tokens <= n
    assert reply.stats.prompt_tokens >= n - 8 - 4  # the context is used, not a fixed smaller cache


def test_seeded_sampling_does_not_depend_on_the_neighbours(host, tiny_base, capitals_adapter):
    sampled = GenerationSettings(temperature=1.0, max_new_tokens=16, top_k=20, seed=7)
    alone = host.generate(**_job(tiny_base, "Tell me a story", None, sampled)).text
    jobs = [_job(tiny_base, "Tell me a story", None, sampled)]
    jobs += [_job(tiny_base, q, capitals_adapter) for q in QUESTIONS]
    assert host.generate_many(jobs)[0].text == alone


def test_logprobs_come_with_top_alternatives(host, tiny_base, capitals_adapter):
    job = _job(tiny_base, QUESTIONS[0], capitals_adapter)
    job["logprobs"] = 3
    reply = host.generate(**job)
    assert reply.tokens and all(len(t["top"]) == 3 for t in reply.tokens)
    for t in reply.tokens:  # greedy: the chosen token is the most likely one
        assert t["top"][0][1] == pytest.approx(t["logprob"])
        assert t["logprob"] <= 0


def test_prompts_prefilled_together_equal_each_prefilled_alone(
    host, tiny_base, capitals_adapter, other_adapter
):
    engine = host.load_base(str(tiny_base))
    batched, tok = engine.batched, engine.tokenizer
    prompts = [tok(q)["input_ids"] for q in ("Hi", QUESTIONS[0], QUESTIONS[1] + " Tell me more.")]
    assert len({len(p) for p in prompts}) == 3  # padding is exercised

    def run():
        names = [batched.slots.ensure(str(a), set()) for a in (capitals_adapter, other_adapter)]
        slots = [batched.slots.slot_of(names[0]), batched.slots.none_slot]
        slots.append(batched.slots.slot_of(names[1]))
        together = batched.prefill_many(0, prompts, slots)
        caches = [batched.k_cache[0][r, :, : len(p)].clone() for r, p in enumerate(prompts)]
        alone = [batched.prefill(0, p, s) for p, s in zip(prompts, slots, strict=True)]
        for j, p in enumerate(prompts):
            batched.prefill(j, p, slots[j])
            assert torch.allclose(batched.k_cache[0][j, :, : len(p)], caches[j], atol=1e-5)
        return together, torch.stack(alone)

    together, alone = engine.scheduler.run_exclusive(run)
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.equal(together.argmax(-1), alone.argmax(-1))


def test_reading_a_whole_reply_equals_streaming_it(host, tiny_base, capitals_adapter):
    job = _job(tiny_base, QUESTIONS[1], capitals_adapter)
    streamed = host.stream_reply(**job)
    pieces = list(streamed)
    whole = host.stream_reply(**job)
    assert whole.text() == "".join(pieces) == streamed.reply.text
    assert whole.reply.tokens == streamed.reply.tokens
    assert whole.reply.stats.new_tokens == streamed.reply.stats.new_tokens > 3
    partly = host.stream_reply(**job)
    first = next(partly)  # a page may stream a little, then read the rest at once
    assert first and partly.text() == whole.reply.text


def test_a_stop_after_the_last_token_keeps_the_reply_whole(host, tiny_base, capitals_adapter):
    stream = host.stream_reply(**_job(tiny_base, QUESTIONS[0], capitals_adapter)).start()
    assert stream.request.ended.wait(60)  # the engine has finished; nothing was read yet
    stream.close()  # the user's Stop arrives after the end
    whole = host.generate(**_job(tiny_base, QUESTIONS[0], capitals_adapter))
    assert stream.reply.finish_reason in ("eos", "length") and not stream.reply.stopped
    assert stream.reply.text == whole.text


def test_an_adapter_with_dora_is_refused_by_name(host, tiny_base, capitals_adapter, tmp_path):
    import json
    import shutil

    folder = tmp_path / "dora"
    shutil.copytree(capitals_adapter, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["use_dora"] = True
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterInvalid, match="DoRA"):
        host.generate(**_job(tiny_base, QUESTIONS[0], Path(folder)))


def test_an_adapter_slot_holds_only_the_adapters_own_factors(tiny_base, capitals_adapter):
    """B is stored per module, not block-diagonal: a rank-16 slot is A and B of every module."""
    host = ModelHost(max_adapters=2)
    engine = host.load_base(str(tiny_base))
    slots = engine.batched.slots
    slots.ensure(str(capitals_adapter), set())
    assert slots.rank == 16
    per_layer = sum(
        slots.rank * (fan_in + out) for fan_in, outs in slots.dims.values() for out in outs
    )
    size = slots.B[0]["o"].element_size()
    assert slots.bytes_per_adapter() == per_layer * slots.n_layers * size


def test_chained_greedy_steps_equal_steps_taken_one_at_a_time(
    host, tiny_base, capitals_adapter, other_adapter
):
    """Greedy rows without log-probabilities run as a chain (tokens fed back on the device, the
    repetition penalty applied there); asking for log-probabilities takes one step at a time on
    the host. Both give the same tokens, with the default preset's repetition penalty."""
    penalized = GenerationSettings(temperature=0.0, max_new_tokens=40, repetition_penalty=1.15)
    jobs = [
        {**job, "settings": penalized}
        for job in _mixed_jobs(tiny_base, capitals_adapter, other_adapter)
    ]
    chained = host.generate_many([{**job, "logprobs": None} for job in jobs])
    scheduler = host._engine.scheduler
    assert scheduler.chained_steps >= 20
    before = scheduler.chained_steps
    stepped = host.generate_many(jobs)
    assert scheduler.chained_steps == before  # log-probabilities: one step at a time
    assert scheduler.max_batch_seen >= len(jobs)
    for a, b in zip(chained, stepped, strict=True):
        assert (a.text, a.stats.new_tokens, a.finish_reason) == (
            b.text,
            b.stats.new_tokens,
            b.finish_reason,
        )
        assert b.stats.new_tokens == len(b.tokens)


def test_a_graphs_rows_never_exceed_the_cache():
    from ff_lib.inference.decode_step import row_bucket

    assert [row_bucket(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]
    # A host short of memory holds 5 rows: 5 decoding rows fit a graph of 5, not of 8.
    assert [row_bucket(n, 5) for n in (1, 3, 5)] == [1, 4, 5]


def test_capturing_a_graph_mid_reply_leaves_the_live_rows_cache_alone(tiny_base):
    """A graph's warm-up runs write dummy keys at positions 0 and 1 of its cache rows; graphs
    are captured while rows decode, so those positions are put back."""
    host = ModelHost()
    batched = host.load_base(str(tiny_base)).batched
    with torch.inference_mode():
        batched.prefill(0, list(range(5, 25)), batched.slots.none_slot)
        before = [(k[:2].clone(), v[:2].clone()) for k, v in batched._caches()]
        ids = torch.zeros(4, 2, dtype=torch.long)
        ids[2] = batched.slots.none_slot
        batched._warm_runs(ids, 32, False)
    for (k, v), (k0, v0) in zip(batched._caches(), before, strict=True):
        assert torch.equal(k[:2], k0) and torch.equal(v[:2], v0)
    host.release()


def test_a_row_without_an_adapter_stays_the_base_when_the_slots_grow(
    tiny_base, capitals_adapter, other_adapter
):
    """'No adapter' is the slot count: when a job between steps (here scoring) grows the
    slots, a live base row must not start reading the slot that just got filled."""
    host = ModelHost(max_adapters=4)
    engine = host.load_base(str(tiny_base))
    long = GenerationSettings(temperature=0.0, max_new_tokens=200, repetition_penalty=1.0)
    messages = [{"role": "user", "content": QUESTIONS[1]}]
    alone = host.generate(str(tiny_base), messages, long, None).text
    capacity = engine.batched.slots.capacity
    stream = host.stream_reply(str(tiny_base), messages, long, None)
    pieces = iter(stream)
    next(pieces)
    ids = engine.tokenizer("What is the capital of France?")["input_ids"]
    host.score(str(tiny_base), ids, [str(capitals_adapter), str(other_adapter)])
    assert engine.batched.slots.capacity > capacity  # the slots grew ...
    assert not stream.request.ended.is_set()  # ... while the base reply was decoding
    assert stream.text() == alone
    host.release()


def test_a_failed_slot_growth_refuses_adapters_out_loud_and_keeps_the_base(
    tiny_base, capitals_adapter, other_adapter
):
    host = ModelHost(max_adapters=4)
    engine = host.load_base(str(tiny_base))
    slots = engine.batched.slots
    turn = [{"role": "user", "content": "Hi"}]
    alone = host.generate(str(tiny_base), turn, GREEDY, None).text
    host.generate(str(tiny_base), turn, GREEDY, str(capitals_adapter))  # fills the one slot
    real = slots.a_storage

    def out_of_memory(layer, group, k):
        if layer >= 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(layer, group, k)

    slots.a_storage = out_of_memory
    with pytest.raises(GenerationError, match="failed part-way"):  # a second slot is needed
        host.generate(str(tiny_base), turn, GREEDY, str(other_adapter))
    for folder in (capitals_adapter, other_adapter):  # refused from then on, with the reason
        with pytest.raises(GenerationError, match="load the base anew"):
            host.generate(str(tiny_base), turn, GREEDY, str(folder))
    assert host.generate(str(tiny_base), turn, GREEDY, None).text == alone  # the base answers
    host.release()


def test_many_requests_are_all_prepared_before_the_first_is_submitted(
    host, tiny_base, capitals_adapter, other_adapter, monkeypatch
):
    """generate_many builds every prompt first, so the requests reach the worker together and
    are prefilled as one batch, not one by one as each prompt is built."""
    from ff_lib.inference.streams import ReplyStream

    engine = host.load_base(str(tiny_base))
    prepared, ready_at_submit = set(), []
    real_prepare, real_submit = ReplyStream.prepare, engine.scheduler.submit

    def prepare(stream, *args):
        prepared.add(stream)
        return real_prepare(stream, *args)

    def submit(request):
        ready_at_submit.append(sum(s.request is not None for s in prepared))
        return real_submit(request)

    monkeypatch.setattr(ReplyStream, "prepare", prepare)
    monkeypatch.setattr(engine.scheduler, "submit", submit)
    jobs = _mixed_jobs(tiny_base, capitals_adapter, other_adapter)
    replies = host.generate_many(jobs)
    assert ready_at_submit == [len(jobs)] * len(jobs)
    assert all(r.finish_reason for r in replies)


def test_a_request_failing_to_prepare_leaves_none_waiting(host, tiny_base, monkeypatch):
    """When one of many requests cannot be prepared, the others (prepared, never sent) are
    closed at once: nothing waits for an answer that cannot come."""
    from ff_lib.inference.streams import ReplyStream

    real_prepare, calls = ReplyStream.prepare, []

    def prepare(stream, *args):
        calls.append(stream)
        if len(calls) == 2:
            raise GenerationError("the second request cannot be prepared")
        return real_prepare(stream, *args)

    monkeypatch.setattr(ReplyStream, "prepare", prepare)
    started = time.monotonic()
    with pytest.raises(GenerationError, match="second request"):
        host.generate_many([_job(tiny_base, q, None) for q in QUESTIONS[:3]])
    assert time.monotonic() - started < 10  # not the stream timeout
    assert host.load_base(str(tiny_base)).scheduler.live == 0


def test_a_request_refused_at_submission_leaves_none_waiting(host, tiny_base, monkeypatch):
    """Requests are prepared, then submitted; when a submission is refused (the engine shut
    down meanwhile), the error is said at once and no prepared request waits for an answer."""
    engine = host.load_base(str(tiny_base))
    real_submit, sent = engine.scheduler.submit, []

    def submit(request):
        if len(sent) == 1:
            raise GenerationError("The engine was shut down: send the request again.")
        sent.append(request)
        return real_submit(request)

    monkeypatch.setattr(engine.scheduler, "submit", submit)
    started = time.monotonic()
    with pytest.raises(GenerationError, match="shut down"):
        host.generate_many([_job(tiny_base, q, None) for q in QUESTIONS[:3]])
    assert time.monotonic() - started < 10  # not the stream timeout
    assert engine.scheduler.wait_idle(10)  # nothing held, the one sent has ended


def test_a_closed_stream_never_sends_its_request(host, tiny_base):
    stream = host.stream_reply(
        str(tiny_base), [{"role": "user", "content": QUESTIONS[0]}], GREEDY, None
    )
    scheduler = stream.prepare()._engine.scheduler
    assert scheduler.live == 1  # prepared: held, so the base is not switched away under it
    stream.close()
    assert scheduler.live == 0
    stream.start()  # after close: nothing is sent
    assert scheduler.live == 0 and stream.request.new_tokens == 0


def test_many_requests_on_two_bases_are_answered_by_their_own_base(tiny_base, short_context_base):
    """Consecutive requests on one base go together; the next base waits for them (a held
    request would otherwise keep the first base from ever being switched away)."""
    host = ModelHost(max_adapters=2)
    bases = [tiny_base, short_context_base, tiny_base]
    jobs = [_job(b, q, None) for b, q in zip(bases, QUESTIONS, strict=False)]
    started = time.monotonic()
    replies = host.generate_many(jobs)
    assert time.monotonic() - started < 120
    assert [Path(r.base_source) for r in replies] == [Path(b) for b in bases]
    assert all(r.finish_reason in ("eos", "length") for r in replies)
    host.release()


def test_a_prefill_failing_unexpectedly_tells_its_requests_and_frees_the_engine(
    tiny_base, monkeypatch
):
    host = ModelHost(max_adapters=1)
    engine = host.load_base(str(tiny_base))

    def broken(batch):
        raise KeyError("a bug in placement")  # not one of the errors _prefill expects

    monkeypatch.setattr(engine.scheduler, "_prefill", broken)
    with pytest.raises(GenerationError, match="a bug in placement"):
        host.generate(**_job(tiny_base, QUESTIONS[0], None))
    assert engine.scheduler.wait_idle(5)  # nothing counted live: a base switch would not wait
    host.release()


def test_a_cuda_engine_turns_cudnn_attention_off_for_the_process(caplog):
    """cuDNN's attention builds a plan for every new prompt length (0.6-1.2 s the first times
    on the H200): a CUDA engine turns it off once, process-wide, and says so."""
    from ff_lib.inference import decode

    was = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        with caplog.at_level("INFO", logger="ff_lib.inference.decode"):
            decode._without_cudnn_attention()
            decode._without_cudnn_attention()  # said once
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
        assert "cuDNN attention turned off" in caplog.records[0].message
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)
