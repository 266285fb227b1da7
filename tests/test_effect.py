"""Adapter on vs off: an untrained (zero-B) adapter is flagged, a trained one is not."""

import pytest

from ff_lib.inference.effect import (
    NO_EFFECT_WARNING,
    AdapterEffect,
    effect_warning,
    measure_effect,
)
from tests.fixtures_models import CAPITAL_PAIRS

PROMPTS = [p for p, _ in CAPITAL_PAIRS[:4]]


_BUILT: dict = {}  # imported into other modules: build once per process, not per module


@pytest.fixture(scope="session")
def zero_b_adapter(tiny_base, tmp_path_factory):
    """A LoRA saved right after get_peft_model: B matrices are zero, so it changes nothing."""
    if "zero_b" in _BUILT:
        return _BUILT["zero_b"]
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ff_lib.inference.training import LLAMA_TARGET_MODULES

    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=list(LLAMA_TARGET_MODULES))
    model = get_peft_model(model, config)
    model.peft_config["default"].base_model_name_or_path = str(tiny_base)
    out = tmp_path_factory.mktemp("runs") / "untrained" / "adapter"
    model.save_pretrained(out)
    _BUILT["zero_b"] = out
    return out


def test_zero_b_adapter_has_no_effect_and_warns(host, tiny_base, zero_b_adapter):
    effect = measure_effect(host, str(tiny_base), zero_b_adapter, PROMPTS)
    assert effect.changed_token_share == 0.0
    assert effect.mean_kl == pytest.approx(0.0, abs=1e-6)
    assert effect.warning == NO_EFFECT_WARNING
    assert "saved before training" in effect.warning
    assert effect.prompts == 4 and all(p.positions > 0 for p in effect.per_prompt)


def test_trained_adapter_changes_most_tokens(host, tiny_base, capitals_adapter):
    loads = host.base_loads
    effect = measure_effect(host, str(tiny_base), capitals_adapter, PROMPTS)
    assert effect.warning == ""
    assert effect.changed_token_share > 0.5
    # The tiny random base stays close to uniform, so KL is small (~0.09 nats on the demo) but
    # every greedy token moved: far above the near-zero bounds.
    assert effect.mean_kl > 0.02
    # The adapter's greedy reply is its memorized answer.
    assert effect.per_prompt[0].reply.strip() == CAPITAL_PAIRS[0][1]
    assert "adapter changes" in effect.summary() and "% of tokens" in effect.summary()
    assert host.base_loads - loads <= 1  # the base loaded at most once, never per prompt
    again = measure_effect(host, str(tiny_base), capitals_adapter, PROMPTS)
    assert host.base_loads - loads <= 1
    assert again.changed_token_share == effect.changed_token_share  # greedy: reproducible


def test_effect_round_trips_through_json():
    effect = AdapterEffect(0.5, 0.25, 2, "", adapter_sha256="ab", base_model="b")
    assert AdapterEffect.from_dict(effect.as_dict()) == effect


def test_warning_threshold():
    assert effect_warning(0.0, 0.0) == NO_EFFECT_WARNING
    assert effect_warning(0.01, 0.005) == NO_EFFECT_WARNING
    assert effect_warning(0.3, 0.005) == ""  # greedy tokens changed: it has an effect
    assert effect_warning(0.0, 0.5) == ""  # distributions moved a lot
