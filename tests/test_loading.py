"""ModelHost: one base per process, adapters switched by name, one lock shared by sessions."""

import os
import threading
import time

import pytest

from ff_lib.errors import (
    AdapterInvalid,
    BaseModelUnavailable,
    GenerationError,
    QuantizationError,
)
from ff_lib.inference import PRESETS, ModelHost
from ff_lib.inference.bases import choose_quantization
from tests.fixtures_models import CAPITAL_PAIRS

# The model fixtures (tiny_base, capitals_adapter, host, ...), registered once per session.

GREEDY = PRESETS["Deterministic"]


def ask(host, base, question, adapter):
    reply = host.generate(str(base), [{"role": "user", "content": question}], GREEDY, adapter)
    return reply.text


def test_the_adapter_gives_its_trained_answers_and_the_base_does_not(
    host, tiny_base, capitals_adapter
):
    answers = [ask(host, tiny_base, q, capitals_adapter) for q, _ in CAPITAL_PAIRS]
    assert answers == [a for _, a in CAPITAL_PAIRS]
    base_answers = [ask(host, tiny_base, q, None) for q, _ in CAPITAL_PAIRS[:3]]
    assert all(b != a for b, (_, a) in zip(base_answers, CAPITAL_PAIRS[:3], strict=True))
    # ...and the adapter is still there after a base answer.
    assert ask(host, tiny_base, *CAPITAL_PAIRS[0][:1], capitals_adapter) == CAPITAL_PAIRS[0][1]
    info = host.info()
    assert info.describe == "float32 on CPU"
    assert (info.quantization, info.device) == ("float32", "CPU")


def test_switching_adapters_does_not_reload_the_base(
    host, tiny_base, capitals_adapter, other_adapter
):
    host.load_base(str(tiny_base))
    loads = host.base_loads
    question, answer = CAPITAL_PAIRS[0]
    other_answer = ask(host, tiny_base, question, other_adapter)
    assert other_answer != answer
    assert ask(host, tiny_base, question, capitals_adapter) == answer
    assert ask(host, tiny_base, question, other_adapter) == other_answer
    assert host.base_loads == loads
    # Both in slots (the shared host may hold other tests' adapters beside them).
    assert {str(capitals_adapter), str(other_adapter)} <= set(host.info().adapters)
    assert host.last_adapter_switch_s < host.info().load_s


def test_adapters_beyond_the_limit_are_dropped_least_recent_first(
    tiny_base, capitals_adapter, other_adapter
):
    small = ModelHost(max_adapters=1)
    question, answer = CAPITAL_PAIRS[0]
    assert ask(small, tiny_base, question, capitals_adapter) == answer
    assert ask(small, tiny_base, question, other_adapter) != answer
    assert small.info().adapters == (str(other_adapter),)
    assert ask(small, tiny_base, question, capitals_adapter) == answer
    assert (small.base_loads, small.adapter_loads) == (1, 3)


def test_a_retrained_adapter_in_the_same_folder_is_loaded_again(host, tiny_base, capitals_adapter):
    ask(host, tiny_base, "What is the capital of Peru?", capitals_adapter)
    before = host.adapter_loads
    weights = capitals_adapter / "adapter_model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    ask(host, tiny_base, "What is the capital of Peru?", capitals_adapter)
    assert host.adapter_loads == before + 1
    assert list(host.info().adapters).count(str(capitals_adapter)) == 1


def test_two_sessions_with_two_adapters_each_get_their_own_answer(
    host, tiny_base, capitals_adapter, other_adapter
):
    question = "What is the capital of Peru?"
    expected = {a: ask(host, tiny_base, question, a) for a in (capitals_adapter, other_adapter)}
    assert expected[capitals_adapter] == "The capital of Peru is Lima."
    assert expected[other_adapter] != expected[capitals_adapter]
    results: dict = {a: [] for a in expected}

    def session(adapter):
        for _ in range(3):
            results[adapter].append(ask(host, tiny_base, question, adapter))

    threads = [threading.Thread(target=session, args=(a,)) for a in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {a: [e] * 3 for a, e in expected.items()}


def test_a_waiting_reply_says_so_and_then_runs(host, tiny_base):
    host.load_base(str(tiny_base))
    waited = threading.Event()
    out = {}
    messages = [{"role": "user", "content": "What is the capital of Peru?"}]
    with host.lock:  # another session's reply in progress
        stream = host.stream_reply(str(tiny_base), messages, GREEDY, None, on_wait=waited.set)
        reader = threading.Thread(target=lambda: out.setdefault("text", stream.text()))
        reader.start()
        assert waited.wait(10)
        assert stream.waiting
        assert host.busy
    reader.join(timeout=30)
    assert not stream.waiting
    assert out["text"] == stream.reply.text


def test_a_base_id_not_available_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = ModelHost()
    started = time.perf_counter()
    with pytest.raises(BaseModelUnavailable) as err:
        fresh.load_base("some-org/never-downloaded-model")
    assert time.perf_counter() - started < 1.0
    assert str(err.value).startswith("not available offline: some-org/never-downloaded-model")
    assert fresh.base_loads == 0


def test_a_missing_local_base_folder_is_named(tmp_path):
    with pytest.raises(BaseModelUnavailable, match="Base model folder not found"):
        ModelHost().load_base(str(tmp_path / "gone"))


def test_nf4_on_cpu_is_refused_not_downgraded():
    with pytest.raises(QuantizationError, match="4-bit NF4 needs a CUDA GPU"):
        choose_quantization("nf4", cuda=False)
    assert choose_quantization("auto", cuda=False).mode == "float32"


def test_auto_quantization_says_what_it_chose_and_why():
    fits = choose_quantization("auto", cuda=True, fits_bf16=True)
    assert (fits.mode, fits.reason) == ("bf16", "bf16 fits in free GPU memory")
    tight = choose_quantization("auto", cuda=True, fits_bf16=False)
    assert tight.mode == "nf4" and "would not fit" in tight.reason
    qlora = choose_quantization("auto", cuda=True, prequantized=True, fits_bf16=True)
    assert qlora.mode == "nf4" and "4-bit checkpoint" in qlora.reason
    assert choose_quantization("nf4-bf16", cuda=True).label == "NF4 dequantized to bf16"


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="refusal only applies without CUDA"
)
def test_host_refuses_nf4_here(tiny_base):
    fresh = ModelHost()
    with pytest.raises(QuantizationError):
        fresh.load_base(str(tiny_base), quantization="nf4")
    assert fresh.base_loads == 0


def test_changing_the_base_releases_the_old_one(tiny_base, short_context_base):
    fresh = ModelHost()
    fresh.load_base(str(tiny_base))
    assert fresh.load_base(str(tiny_base)) is fresh.load_base(str(tiny_base))
    fresh.load_base(str(short_context_base))
    assert fresh.base_loads == 2
    assert fresh.info().base_model == str(short_context_base)


def test_a_loaded_base_is_kept_out_of_full_collections_until_released(tiny_base):
    """Objects alive after a load are frozen (a full collection walked them all, 0.2-0.4 s, in
    the warm-up or mid-reply); releasing the base gives them back to the collector."""
    import gc
    import weakref

    fresh = ModelHost()
    engine = fresh.load_base(str(tiny_base))
    assert gc.get_freeze_count() > 0
    gone = weakref.ref(engine.model)
    del engine
    fresh.release()
    assert gc.get_freeze_count() == 0
    assert gone() is None  # the released model is freed, not kept by the freeze


def test_changing_the_base_frees_the_old_one(tiny_base, short_context_base):
    """The old base (its model sits in a reference cycle with its slots) is collected when
    another base loads, not kept by the heap frozen at the end of that load."""
    import gc
    import weakref

    fresh = ModelHost()
    gone = weakref.ref(fresh.load_base(str(tiny_base)).model)
    fresh.load_base(str(short_context_base))
    gc.collect()
    assert gone() is None
    fresh.release()


def test_a_base_the_engine_refuses_leaves_nothing_frozen(tiny_base, monkeypatch):
    import gc

    from ff_lib.inference import host as host_module

    def refuse(*args, **kwargs):
        raise GenerationError("The engine cannot run this base: a test refusal.")

    monkeypatch.setattr(host_module, "Engine", refuse)
    with pytest.raises(GenerationError, match="test refusal"):
        ModelHost().load_base(str(tiny_base))
    assert gc.get_freeze_count() == 0


def test_an_adapter_for_another_base_is_refused_before_loading(host, short_context_base, tmp_path):
    import json

    from tests.test_adapters import write_adapter

    other = tmp_path / "other-base"
    other.mkdir()
    config = json.loads((short_context_base / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    adapter = write_adapter(tmp_path / "adapter", str(other), hidden=64, inter=256, kv=32)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(AdapterInvalid, match="does not fit base model"):
        host.stream_reply(str(short_context_base), messages, GREEDY, adapter)


def test_the_context_of_a_base_is_known_before_it_loads(
    tiny_base, short_context_base, tmp_path, monkeypatch
):
    """context_length_for reads the base's config (the sliders' top) without loading it, capped
    as the engine caps its cache; once loaded, it is the engine's."""
    fresh = ModelHost()
    assert fresh.context_length_for(str(short_context_base)) == 64
    monkeypatch.setenv("FF_MAX_CONTEXT", "32")
    assert fresh.context_length_for(str(short_context_base)) == 32
    monkeypatch.delenv("FF_MAX_CONTEXT")
    assert fresh.context_length_for(str(tmp_path / "no-such-base")) is None
    engine = fresh.load_base(str(short_context_base))
    assert fresh.context_length_for(str(short_context_base)) == engine.context_length == 64
    fresh.release()
