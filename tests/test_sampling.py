"""The row sampler: its warm-up leaves no trace on the reply that follows it; any temperature
the settings accept samples a real distribution."""

import torch

from ff_lib.inference.sampling import RowSampler
from ff_lib.inference.settings import GenerationSettings


def test_a_warmed_up_sampler_chooses_as_a_fresh_one():
    torch.manual_seed(0)
    logits = torch.randn(2, 50)
    settings = GenerationSettings(temperature=0.0, repetition_penalty=1.5)
    prompt = [int(logits[0].argmax()), 3, 7]  # the penalty changes row 0's choice

    def first_tokens(sampler):
        for row in (0, 1):
            sampler.start(row, prompt, settings, 0, None)
        return [c.token for c in sampler.choose(logits, [0, 1])]

    warmed = RowSampler(2, 50, "cpu")
    warmed.warm_up()
    assert first_tokens(warmed) == first_tokens(RowSampler(2, 50, "cpu"))
    assert warmed.penalty[0] == 1.5


def test_a_tiny_temperature_samples_the_most_likely_token():
    """Any temperature above 0 is accepted (the API's range is 0-2): at 1e-38 the logits
    divided by it overflowed to inf and every pick became token 0; it is near-greedy."""
    logits = torch.tensor([[1.0, 5.0, 2.0, -1.0, 0.5, 0.1, 0.2, 0.3]])
    sampler = RowSampler(1, 8, "cpu")
    for temperature in (1e-6, 1e-38, 1e-45):
        for top_p in (1.0, 0.9):
            settings = GenerationSettings(temperature=temperature, top_p=top_p, top_k=3)
            picks = []
            for seed in range(5):
                sampler.start(0, [0], settings, seed, None)
                picks.append(sampler.choose(logits, [0])[0].token)
            assert picks == [1] * 5, (temperature, top_p)
