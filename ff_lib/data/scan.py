"""Finding adapter folders (any folder holding adapter_config.json) under a directory."""

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import InvalidInput

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class FoundAdapter:
    """An adapter folder: its resolved path, a run name, its base model and when it was saved."""

    path: Path
    name: str
    base_model: str
    saved_at: dt.datetime


def _read_base_model(config_file: Path) -> tuple[str | None, str | None]:
    """(base model, None) or (None, why the config cannot be used)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable {ADAPTER_CONFIG} ({exc})"
    if not isinstance(config, dict):
        return None, f"{ADAPTER_CONFIG} is not a JSON object"
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        return None, (
            f"{ADAPTER_CONFIG} names no base_model_name_or_path (scan again with --base-model BASE)"
        )
    return base.strip(), None


def find_adapters(
    folder: str | os.PathLike, base_model: str | None = None
) -> tuple[list[FoundAdapter], list[str]]:
    """Every adapter folder under `folder` (itself included), and '<path>: <reason>' for the
    ones left out. A nested adapter is named by its path from `folder`: run/checkpoint-100.

    `base_model`, when given, is the base of every adapter found (over what each declares)."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InvalidInput(f"cannot scan {root}: not a folder")
    found: list[FoundAdapter] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if ADAPTER_CONFIG not in filenames:
            continue
        here = Path(dirpath)
        config_file = here / ADAPTER_CONFIG
        declared, problem = _read_base_model(config_file)
        if problem is not None and base_model is None:
            skipped.append(f"{here}: {problem}")
            continue
        rel = here.relative_to(root).as_posix()
        saved_at = dt.datetime.fromtimestamp(config_file.stat().st_mtime, dt.UTC)
        found.append(
            FoundAdapter(
                path=here,
                name=root.name if rel == "." else rel,
                base_model=base_model or declared,
                saved_at=saved_at,
            )
        )
    return found, skipped
