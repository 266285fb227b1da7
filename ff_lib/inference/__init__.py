"""The inference engine: adapter validation, bases, adapter slots, batched generation.

Importing this package is cheap: torch and transformers load when a model is first used.
"""

from ff_lib.inference.adapters import AdapterCheck, validate_adapter
from ff_lib.inference.bases import QUANTIZATIONS
from ff_lib.inference.effect import AdapterEffect, measure_effect
from ff_lib.inference.host import Engine, LoadedInfo, ModelHost, get_host
from ff_lib.inference.prompts import EMPTY_PROMPT_MESSAGE, BuiltPrompt, build_prompt
from ff_lib.inference.replies import Reply, ReplyStats
from ff_lib.inference.settings import DEFAULT_PRESET, PRESETS, GenerationSettings
from ff_lib.inference.streams import ReplyStream

__all__ = [
    "DEFAULT_PRESET",
    "EMPTY_PROMPT_MESSAGE",
    "PRESETS",
    "QUANTIZATIONS",
    "AdapterCheck",
    "AdapterEffect",
    "BuiltPrompt",
    "Engine",
    "GenerationSettings",
    "LoadedInfo",
    "ModelHost",
    "Reply",
    "ReplyStats",
    "ReplyStream",
    "build_prompt",
    "get_host",
    "measure_effect",
    "validate_adapter",
]
