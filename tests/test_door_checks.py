"""Requests built together check each adapter once; requests built apart check it each time."""

import pytest

from ff_lib.errors import AdapterInvalid
from ff_lib.inference import GenerationSettings, door
from tests.fixtures_models import CAPITAL_PAIRS
from tests.test_engine import _job

GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=4, repetition_penalty=1.0)


def _count_checks(monkeypatch) -> list:
    seen = []
    real = door.validate_adapter

    def counted(adapter_dir, base_model=None):
        seen.append(str(adapter_dir))
        return real(adapter_dir, base_model=base_model)

    monkeypatch.setattr(door, "validate_adapter", counted)
    return seen


def test_a_batch_checks_each_adapter_once(
    host, tiny_base, capitals_adapter, other_adapter, monkeypatch
):
    seen = _count_checks(monkeypatch)
    adapters = [capitals_adapter, other_adapter, None]
    jobs = [
        _job(tiny_base, q, adapters[i % 3], GREEDY) for i, (q, _) in enumerate(CAPITAL_PAIRS[:6])
    ]
    replies = host.generate_many(jobs)
    assert sorted(seen) == sorted([str(capitals_adapter), str(other_adapter)])
    assert [r.adapter for r in replies] == [None if a is None else str(a) for a in adapters * 2]


def test_requests_built_apart_check_again(tiny_base, capitals_adapter, monkeypatch):
    seen = _count_checks(monkeypatch)
    for _ in range(2):
        door.checked_adapter(capitals_adapter, str(tiny_base))
    with door.checks_shared():
        for _ in range(3):
            door.checked_adapter(capitals_adapter, str(tiny_base))
    door.checked_adapter(capitals_adapter, str(tiny_base))
    assert len(seen) == 4  # twice apart, once for the three built together, once after


def test_an_invalid_adapter_is_refused_every_time_even_together(tiny_base, tmp_path):
    with door.checks_shared():
        for _ in range(2):
            with pytest.raises(AdapterInvalid):
                door.checked_adapter(tmp_path, str(tiny_base))


def test_a_batch_tokenizes_its_prompts_in_one_call(host, tiny_base, monkeypatch):
    jobs = [_job(tiny_base, q, None, GREEDY) for q, _ in CAPITAL_PAIRS[:5]]
    alone = [host.generate(**job) for job in jobs]
    tokenizer = host.load_base(str(tiny_base)).tokenizer
    calls = []
    real = type(tokenizer).__call__
    monkeypatch.setattr(
        type(tokenizer),
        "__call__",
        lambda self, text, **kw: calls.append(text) or real(self, text, **kw),
    )
    replies = host.generate_many(jobs)
    monkeypatch.undo()
    prompts = [r.prompt_text for r in alone]
    # the first prompt while its stream loads the base, then the other four in one call
    assert calls == [prompts[0], prompts[1:]]
    assert [r.text for r in replies] == [r.text for r in alone]
    assert [r.prompt_text for r in replies] == prompts
