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
