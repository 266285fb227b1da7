"""The engine under faults: files changed after their check, failures while admitting or
warming up, queues behind full rows, a batch being prepared while another tab switches base,
an engine shut down under a request. Each is said to the request it concerns, and the engine
answers on."""

import dataclasses
import json
import os
import shutil
import threading
import time

import pytest

from ff_lib.errors import AdapterInvalid, GenerationError
from ff_lib.inference import ModelHost
from tests.test_engine import GREEDY, QUESTIONS, _job


def _copy(adapter, tmp_path):
    return shutil.copytree(adapter, tmp_path / "adapter")


def _answers_on(host, base) -> None:
    """The engine's worker is alive and serves the next request; nothing is left live."""
    engine = host.load_base(str(base))
    assert host.generate(**_job(base, QUESTIONS[1], None)).text
    assert engine.scheduler._thread.is_alive()
    assert engine.scheduler.wait_idle(5)


def _config_removed(folder):
    (folder / "adapter_config.json").unlink()


def _weights_cut_short(folder):
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("change", "said"),
    [(_config_removed, "changed since it was checked"), (_weights_cut_short, "could not be read")],
)
def test_an_adapter_changed_since_its_check_is_refused_alone(
    tiny_base, capitals_adapter, tmp_path, change, said
):
    """A trainer rotating checkpoints, or a file half rewritten, between the request's check
    and its admission: that request is told so, and the worker answers on (before, an
    unexpected error here ended the worker's thread and every later reply 'stalled')."""
    host = ModelHost(stream_timeout_s=20)
    folder = _copy(capitals_adapter, tmp_path)
    stream = host.stream_reply(**_job(tiny_base, QUESTIONS[0], folder))  # checked here
    change(folder)
    with pytest.raises(AdapterInvalid, match=said):
        stream.text()
    _answers_on(host, tiny_base)
    host.release()


def test_an_edited_adapter_config_is_applied_to_the_next_request(
    host, tiny_base, capitals_adapter, tmp_path
):
    """The slot of a loaded adapter is not reused once its config changed: an edited scaling
    (here lora_alpha to almost 0, so the adapter is almost the base) answers as edited."""
    folder = _copy(capitals_adapter, tmp_path)
    question = QUESTIONS[0]
    tuned = host.generate(**_job(tiny_base, question, folder)).text
    base = host.generate(**_job(tiny_base, question, None)).text
    assert tuned != base  # the adapter changes this answer
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["lora_alpha"] = 1e-6
    config_file.write_text(json.dumps(config))
    stamp = config_file.stat().st_mtime_ns + 1_000_000_000  # a coarse clock: a later mtime
    os.utime(config_file, ns=(stamp, stamp))
    assert host.generate(**_job(tiny_base, question, folder)).text == base


def test_an_unexpected_failure_while_admitting_leaves_the_worker_serving(tiny_base, monkeypatch):
    host = ModelHost()
    engine = host.load_base(str(tiny_base))
    real, calls = engine.scheduler._prefill, []

    def broken_once(batch):
        calls.append(batch)
        if len(calls) == 1:
            raise KeyError("a bug in placement")  # not one of the errors _prefill expects
        return real(batch)

    monkeypatch.setattr(engine.scheduler, "_prefill", broken_once)
    with pytest.raises(GenerationError, match="a bug in placement"):
        host.generate(**_job(tiny_base, QUESTIONS[0], None))
    _answers_on(host, tiny_base)
    host.release()


def test_a_failed_warm_up_leaves_no_worker_holding_the_model(tiny_base, monkeypatch):
    """A warm-up that fails (out of GPU memory while capturing graphs) stops its engine's
    worker: a retry does not find the first attempt's model, cache and slots still held."""
    from ff_lib.inference.decode import BatchedLM

    def out_of_memory(self):
        raise RuntimeError("out of memory while capturing a graph (simulated)")

    monkeypatch.setattr(BatchedLM, "warm_up", out_of_memory)
    before = {t for t in threading.enumerate() if t.name == "ff-engine"}
    host = ModelHost()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="out of memory"):
            host.load_base(str(tiny_base))
    left = {t for t in threading.enumerate() if t.name == "ff-engine" and t.is_alive()}
    assert left <= before
    assert host.info() is None


def _slowed(engine, seconds: float):
    """Every step of `engine` (sampled or logprobs, and greedy chains) takes `seconds` more."""
    batched = engine.batched
    for name in ("decode", "chain_read"):
        real = getattr(batched, name)

        def slow(*args, _real=real):
            time.sleep(seconds)
            return _real(*args)

        setattr(batched, name, slow)


def test_a_request_waiting_for_a_row_is_not_a_stall(tiny_base, monkeypatch):
    """With every row taken (one row here, as a big base on a CPU may get), a request waits
    while the others decode: longer than the stall timeout is not a stall, read either way."""
    monkeypatch.setattr("ff_lib.inference.host.MAX_ROWS", 1)
    host = ModelHost(stream_timeout_s=1.0)
    engine = host.load_base(str(tiny_base))
    assert engine.batched.max_rows == 1
    _slowed(engine, 0.02)
    long = dataclasses.replace(GREEDY, max_new_tokens=150)
    first = host.stream_reply(**_job(tiny_base, QUESTIONS[0], None, long)).start()
    waiting = host.stream_reply(**_job(tiny_base, QUESTIONS[1], None)).start()
    iterated = host.stream_reply(**_job(tiny_base, QUESTIONS[2], None)).start()
    started = time.monotonic()
    assert waiting.text()
    assert "".join(iterated)
    assert time.monotonic() - started > 1.5  # they did wait beyond the timeout
    first.text()
    assert {s.reply.finish_reason for s in (waiting, iterated)} <= {"eos", "length"}
    host.release()


def test_an_engine_that_does_nothing_is_still_a_stall(tiny_base):
    host = ModelHost(stream_timeout_s=1.0)
    engine = host.load_base(str(tiny_base))
    _slowed(engine, 3.0)
    stream = host.stream_reply(**_job(tiny_base, QUESTIONS[0], None))
    with pytest.raises(GenerationError, match="generation stalled"):
        stream.text()
    host.release()


def test_a_batch_being_prepared_and_a_base_switch_do_not_wait_for_each_other(
    tiny_base, short_context_base, monkeypatch
):
    """Another tab asks for another base while a batch is being prepared (its first request
    already holds the engine): the batch is answered and the switch then happens, instead of
    each waiting for the other until the switch timed out."""
    from ff_lib.inference.streams import ReplyStream

    monkeypatch.setattr("ff_lib.inference.host.SWITCH_TIMEOUT_S", 20.0)
    host = ModelHost()
    host.load_base(str(tiny_base))
    switched: list = []
    real = ReplyStream.prepare_others

    def with_a_switch(self, others):
        def switch():
            switched.append(host.load_base(str(short_context_base)))

        thread = threading.Thread(target=switch)
        thread.start()
        time.sleep(0.3)  # the switch holds the host's lock and waits for this batch
        real(self, others)
        switched.append(thread)

    monkeypatch.setattr(ReplyStream, "prepare_others", with_a_switch)
    started = time.monotonic()
    replies = host.generate_many([_job(tiny_base, q, None) for q in QUESTIONS[:3]])
    assert all(r.text for r in replies)
    switched[-1].join(20)
    assert time.monotonic() - started < 15
    assert host.info().base_model == str(short_context_base)
    host.release()


def test_an_engine_shut_down_refuses_requests_and_jobs_at_once(tiny_base):
    from ff_lib.inference.scheduler import Request

    host = ModelHost()
    scheduler = host.load_base(str(tiny_base)).scheduler
    host.release()
    started = time.monotonic()
    with pytest.raises(GenerationError, match="shut down"):
        scheduler.run_exclusive(lambda: None)
    with pytest.raises(GenerationError, match="shut down"):
        scheduler.submit(Request([1], GREEDY, None, None, 1, frozenset()))
    assert time.monotonic() - started < 1
