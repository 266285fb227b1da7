"""How much an adapter changes the model: adapter on vs off on the one loaded base.

Method (teacher forcing): for each prompt, the adapter's greedy reply is decoded (plain argmax,
no repetition penalty, at most `max_new_tokens`, end-of-turn included). That reply is then fed
once through the model with the adapter on and once with it off. At every reply position we
compare the two next-token distributions:

- changed token: the base's argmax differs from the adapter's (which is the reply's token);
- KL(adapter || base) in nats, from the full softmax over the vocabulary.

`changed_token_share` is changed positions / all reply positions over every prompt (token
weighted); `mean_kl` is the mean KL over the same positions. Both are exactly 0 for an adapter
whose LoRA B matrices are still zero (saved right after get_peft_model, before training).
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ff_lib.errors import InvalidInput
from ff_lib.inference.host import ModelHost
from ff_lib.inference.prompts import encode
from ff_lib.inference.settings import GenerationSettings

# Below both, the adapter counts as having almost no effect (a trained LoRA is far above:
# see the demo figures in tests/test_effect.py).
NEAR_ZERO_SHARE = 0.02
NEAR_ZERO_KL = 0.01
EFFECT_MAX_NEW_TOKENS = 32
EFFECT_PROMPTS = 4
NO_EFFECT_WARNING = (
    "This adapter has almost no effect: was it trained, or saved before training? "
    "Its answers are the base model's."
)
# Used when a run has no dataset of its own.
BUILT_IN_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Explain what a language model does, briefly.",
    "Hello! How are you today?",
)


@dataclass(frozen=True)
class PromptEffect:
    """One prompt: the adapter's greedy reply and how the base disagreed with it."""

    prompt: str
    reply: str
    positions: int  # reply tokens scored (end-of-turn included)
    changed: int  # positions where the base's argmax differs
    mean_kl: float  # nats, over this prompt's positions


@dataclass(frozen=True)
class AdapterEffect:
    """Adapter on vs off over a few prompts; `warning` is '' unless the effect is near zero."""

    changed_token_share: float  # 0..1
    mean_kl: float  # nats, KL(adapter || base) per reply position, averaged
    prompts: int
    warning: str
    adapter_sha256: str | None = None
    base_model: str = ""
    max_new_tokens: int = EFFECT_MAX_NEW_TOKENS
    per_prompt: tuple[PromptEffect, ...] = field(default_factory=tuple)

    @property
    def near_zero(self) -> bool:
        return bool(self.warning)

    def summary(self) -> str:
        """'adapter changes 63% of tokens (mean KL 0.84 nats over 4 prompts)'."""
        return (
            f"adapter changes {self.changed_token_share:.0%} of tokens "
            f"(mean KL {self.mean_kl:.3g} nats over {self.prompts} prompts)"
        )

    def as_dict(self) -> dict:
        """Plain JSON values, as stored in the run's metrics under 'effect'."""
        data = asdict(self)
        data["per_prompt"] = [asdict(p) for p in self.per_prompt]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AdapterEffect":
        per_prompt = tuple(PromptEffect(**p) for p in data.get("per_prompt") or ())
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "per_prompt": per_prompt})


def effect_warning(changed_token_share: float, mean_kl: float) -> str:
    """NO_EFFECT_WARNING when both figures are near zero, else ''."""
    near_zero = changed_token_share < NEAR_ZERO_SHARE and mean_kl < NEAR_ZERO_KL
    return NO_EFFECT_WARNING if near_zero else ""


def measure_effect(
    host: ModelHost,
    base_model: str,
    adapter_dir: Path,
    prompts: list[str],
    *,
    quantization: str = "auto",
    max_new_tokens: int = EFFECT_MAX_NEW_TOKENS,
) -> AdapterEffect:
    """Adapter on vs off: each prompt's greedy reply (adapter on, all prompts in one batch),
    then the reply teacher-forced under the adapter and the base in one batched forward."""
    prompts = [p for p in prompts if p and p.strip()]
    if not prompts:
        raise InvalidInput("No prompts to measure the adapter's effect on.")
    if adapter_dir is None:
        raise InvalidInput("No adapter: the effect is measured for an adapter against its base.")
    settings = GenerationSettings(
        temperature=0.0, max_new_tokens=max_new_tokens, repetition_penalty=1.0
    )
    replies = host.generate_many(
        [
            {
                "base_model": base_model,
                "messages": [{"role": "user", "content": p}],
                "settings": settings,
                "adapter_dir": Path(adapter_dir),
                "quantization": quantization,
                "logprobs": 0,  # records the reply's token ids
            }
            for p in prompts
        ]
    )
    engine = host.load_base(base_model, quantization)
    per_prompt = [
        _prompt_effect(host, engine, base_model, quantization, prompt, reply)
        for prompt, reply in zip(prompts, replies, strict=True)
    ]
    positions = sum(p.positions for p in per_prompt)
    changed = sum(p.changed for p in per_prompt)
    share = changed / positions if positions else 0.0
    kl = sum(p.mean_kl * p.positions for p in per_prompt) / positions if positions else 0.0
    return AdapterEffect(
        changed_token_share=round(share, 4),
        mean_kl=round(kl, 6),
        prompts=len(per_prompt),
        warning=effect_warning(share, kl),
        adapter_sha256=replies[0].adapter_sha256,
        base_model=str(base_model),
        max_new_tokens=max_new_tokens,
        per_prompt=tuple(per_prompt),
    )


def _prompt_effect(host, engine, base_model, quantization, prompt, reply) -> PromptEffect:
    import torch

    prompt_ids = encode(engine.tokenizer, reply.prompt_text)
    reply_ids = [t["token"] for t in reply.tokens]
    if reply.finish_reason == "eos" and engine.eos_token_ids:
        reply_ids.append(engine.eos_token_ids[0])  # the end of turn counts, as it was chosen
    full = prompt_ids + reply_ids
    # Logits at position t predict token t+1: the reply is predicted from prompt_len-1 on.
    start, stop = len(prompt_ids) - 1, len(full) - 1
    logits = host.score(base_model, full, [Path(reply.adapter), None], quantization)
    with_adapter, without = logits[0, start:stop], logits[1, start:stop]
    log_p = torch.log_softmax(with_adapter, dim=-1)
    log_q = torch.log_softmax(without, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1).clamp_min(0.0)
    changed = int((with_adapter.argmax(dim=-1) != without.argmax(dim=-1)).sum())
    positions = int(kl.numel())
    return PromptEffect(
        prompt=prompt,
        reply=reply.text,
        positions=positions,
        changed=changed,
        mean_kl=round(float(kl.mean()) if positions else 0.0, 6),
    )
