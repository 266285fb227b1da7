"""The inference engine: adapter validation, model loading, prompts, streamed generation.

Importing this package is cheap: torch and transformers load when a model is first used.
"""

from ff_lib.inference.adapters import AdapterCheck, validate_adapter
from ff_lib.inference.effect import AdapterEffect, measure_effect
from ff_lib.inference.generation import (
    DEFAULT_PRESET,
    PRESETS,
    GenerationSettings,
    Reply,
    ReplyStats,
)
from ff_lib.inference.loading import (
    QUANTIZATIONS,
    LoadedInfo,
    LoadedModel,
    ModelHost,
    ReplyStream,
    get_host,
)
from ff_lib.inference.prompts import EMPTY_PROMPT_MESSAGE, BuiltPrompt, build_prompt

__all__ = [
    "DEFAULT_PRESET",
    "EMPTY_PROMPT_MESSAGE",
    "PRESETS",
    "QUANTIZATIONS",
    "AdapterCheck",
    "AdapterEffect",
    "BuiltPrompt",
    "GenerationSettings",
    "LoadedInfo",
    "LoadedModel",
    "ModelHost",
    "Reply",
    "ReplyStats",
    "ReplyStream",
    "build_prompt",
    "get_host",
    "measure_effect",
    "validate_adapter",
]
