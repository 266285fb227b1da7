"""Where the workspace folder is: --workspace, else FF_WORKSPACE, else ./workspace."""

import os
from pathlib import Path

DEFAULT_WORKSPACE = "workspace"


def resolve_workspace(explicit: str | os.PathLike | None = None) -> Path:
    """Return the workspace folder to use (not created here)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("FF_WORKSPACE")
    if env:
        return Path(env).expanduser().resolve()
    return Path(DEFAULT_WORKSPACE).resolve()
