"""The row sampler's warm-up leaves no trace on the reply that follows it."""

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
