"""GenerationSettings, the one shape of a reply's knobs, and the presets."""

import dataclasses
from dataclasses import dataclass

from ff_lib.errors import InvalidInput


@dataclass(frozen=True)
class GenerationSettings:
    """How one reply is sampled. Frozen and validated, so it can be a cache key."""

    temperature: float = 0.7  # 0 = greedy: the same prompt always gives the same answer
    max_new_tokens: int = 256
    repetition_penalty: float = 1.15
    top_p: float = 0.9
    top_k: int = 0  # 0 = off
    seed: int | None = None  # None with sampling: one is drawn and recorded in the reply
    system_prompt: str = ""

    def __post_init__(self) -> None:
        _number("Temperature", self.temperature, 0.0, 2.0)
        _integer("Max new tokens", self.max_new_tokens, 1, 4096)
        _number("Repetition penalty", self.repetition_penalty, 1.0, 2.0)
        _number("Top-p", self.top_p, 0.0, 1.0)
        if self.top_p == 0:
            raise InvalidInput("Top-p must be above 0 and at most 1 (got 0).")
        _integer("Top-k", self.top_k, 0, None)
        if self.seed is not None:
            _integer("Seed", self.seed, 0, 2**63 - 1)
        if not isinstance(self.system_prompt, str):
            raise InvalidInput("System prompt must be text.")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _number(name: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number (got {value!r}).")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low:g} and {high:g} (got {value:g}).")


def _integer(name: str, value, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number (got {value!r}).")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{name} must be {bound} (got {value}).")


PRESETS: dict[str, GenerationSettings] = {
    "Deterministic": GenerationSettings(
        temperature=0.0, max_new_tokens=128, repetition_penalty=1.2
    ),
    "Balanced": GenerationSettings(temperature=0.7, max_new_tokens=256, repetition_penalty=1.15),
    "Creative": GenerationSettings(temperature=1.0, max_new_tokens=512, repetition_penalty=1.1),
}
DEFAULT_PRESET = "Balanced"
