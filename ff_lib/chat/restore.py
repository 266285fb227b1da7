"""What a stored conversation was answered with (run, base model, settings), to set it up again."""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from ff_lib.chat.history import ChatMessage
from ff_lib.errors import FFError
from ff_lib.inference import PRESETS, GenerationSettings

_SETTING_FIELDS = {f.name for f in dataclasses.fields(GenerationSettings)}


@dataclass(frozen=True)
class ConversationSetup:
    """The run and settings of a conversation's latest reply (as its messages' meta recorded)."""

    run_id: int
    run_name: str
    base_model: str | None  # None when no reply recorded it: the run's own base then
    settings: GenerationSettings | None  # None when no reply recorded valid settings
    preset: str | None  # the preset those settings are, None when they were tuned by hand


def conversation_setup(messages: Iterable[ChatMessage]) -> ConversationSetup | None:
    """The setup of the latest message that names a run; None when no message does.

    A reply records run, base model and settings; its prompt records the run only, so a
    conversation whose last reply never got stored still restores its run.
    """
    latest_run = None
    for message in reversed(list(messages)):
        run = (message.meta or {}).get("run")
        if not isinstance(run, dict) or not isinstance(run.get("id"), int):
            continue
        latest_run = latest_run or run
        if run["id"] != latest_run["id"] or "settings" not in message.meta:
            continue
        settings = _settings(message.meta["settings"])
        base = message.meta.get("base_model")
        return ConversationSetup(
            latest_run["id"],
            str(latest_run.get("name") or ""),
            str(base) if base else None,
            settings,
            _preset_of(settings),
        )
    if latest_run is None:
        return None
    return ConversationSetup(latest_run["id"], str(latest_run.get("name") or ""), None, None, None)


def _settings(stored) -> GenerationSettings | None:
    """The stored settings as GenerationSettings; None when they are not valid settings."""
    if not isinstance(stored, dict):
        return None
    try:
        return GenerationSettings(**{k: v for k, v in stored.items() if k in _SETTING_FIELDS})
    except FFError:
        return None


def _preset_of(settings: GenerationSettings | None) -> str | None:
    """The preset whose sampling these settings have (length, seed and system prompt aside:
    they are tuned after choosing a preset)."""
    if settings is None:
        return None
    knobs = ("temperature", "repetition_penalty", "top_p", "top_k")
    for name, preset in PRESETS.items():
        if all(getattr(settings, k) == getattr(preset, k) for k in knobs):
            return name
    return None
