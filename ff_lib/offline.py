"""Nothing leaves the machine unless the user asks: Hugging Face offline mode by default."""

import os
from collections.abc import MutableMapping

# Set to 1 to let transformers / huggingface_hub download a base model that is not cached.
ALLOW_DOWNLOADS_VAR = "FF_ALLOW_DOWNLOADS"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def downloads_allowed(environ: MutableMapping[str, str] = os.environ) -> bool:
    """True when the user opted in to downloads with FF_ALLOW_DOWNLOADS=1."""
    return environ.get(ALLOW_DOWNLOADS_VAR, "").strip().lower() in _TRUE


def default_to_offline(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Turn Hugging Face offline mode on unless downloads were allowed; True when it is on.

    huggingface_hub reads HF_HUB_OFFLINE once, when it is imported, so this runs before any
    import of transformers (ff_lib's package import calls it). Without it, a mistyped model id
    spends ~50 s retrying a hub that cannot be reached before it fails.
    """
    if downloads_allowed(environ):
        return False
    for name in OFFLINE_VARS:
        environ[name] = "1"
    return True
