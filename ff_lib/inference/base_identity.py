"""Which base a name points at, whether it is here, and whether two names are the same model."""

import json
import os
from pathlib import Path

FULL_MODEL_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def has_full_weights(folder: Path) -> bool:
    if any((folder / name).is_file() for name in FULL_MODEL_WEIGHTS):
        return True
    return any(folder.glob("model-*.safetensors")) or any(folder.glob("pytorch_model-*.bin"))


_QUANT_SUFFIXES = ("-unsloth-bnb-4bit", "-bnb-4bit", "-bnb-8bit", "-4bit", "-8bit")


def _family(name: str) -> str:
    leaf = name.rstrip("/").split("/")[-1].lower()
    for suffix in _QUANT_SUFFIXES:
        if leaf.endswith(suffix):
            return leaf[: -len(suffix)]
    return leaf


# Two bases are the same model when their config.json agree on everything but these (where a
# copy was saved, by which version, in which dtype): compared instead of paths, so a base moved
# to another folder is the same base, while a base and its instruct variant (other eos ids) or a
# copy with another context length are not.
IGNORED_CONFIG_KEYS = frozenset(
    {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache"}
)


def base_identity(config: dict) -> dict:
    """The parts of a base's config.json that say which model it is."""
    return {k: v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS}


def same_base(a: str, b: str) -> bool:
    """Whether two bases are the same model: by config when both are here, else by name."""
    ca, cb = local_base_config(a), local_base_config(b)
    if ca is not None and cb is not None:
        return base_identity(ca) == base_identity(cb)
    if ca is not None or cb is not None:
        # One is here, the other is not (moved, or never downloaded): names are all we have.
        return _family(a) == _family(b)
    return a.strip().lower() == b.strip().lower() or _family(a) == _family(b)


def other_base_warning(declared: str, chosen: str) -> str | None:
    """A warning when the adapter's declared base is not the chosen one, else None.

    Compared by config. When the declared base is no longer here (moved, another machine) but
    the chosen one is, the shapes check against the chosen base is the comparison: no warning.
    """
    cd, cc = local_base_config(declared), local_base_config(chosen)
    if cd is not None and cc is not None:
        ic, ib = base_identity(cd), base_identity(cc)
        differ = [
            f"{key} {ic.get(key)} vs {ib.get(key)}"
            for key in sorted(set(ic) | set(ib))
            if ic.get(key) != ib.get(key)
        ]
        if not differ:
            return None
        return (
            f"Adapter was trained for {declared}, not {chosen} (their configs differ: "
            f"{'; '.join(differ)}): answers may be poor."
        )
    if cd is None and cc is not None:
        return None
    if same_base(declared, chosen):
        return None
    return f"Adapter was trained for {declared}, not {chosen}: answers may be poor."


def local_base_config(base_model: str) -> dict | None:
    """The base's config.json when it is a local folder or in the local HF cache; else None."""
    file = _config_file(base_model)
    if file is None:
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(config, dict):
        return None
    # Multimodal configs keep the language model's sizes in text_config.
    return config.get("text_config") or config


def _cached(base_model: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(base_model, filename)
    except HFValidationError:
        return None
    return Path(cached) if isinstance(cached, str) else None


def _config_file(base_model: str) -> Path | None:
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        file = folder / "config.json"
        return file if file.is_file() else None
    if _looks_like_path(base_model):
        return None
    file = _cached(base_model, "config.json")
    return file if file is not None and file.is_file() else None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.sep + os.sep in name


def base_availability(base_model: str) -> tuple[dict | None, str | None]:
    """(config, None) when the base can be loaded here without a download, else (None, why).

    Here means a folder with config.json and weights, or a Hugging Face id whose config and
    weights are in the local cache.
    """
    name = str(base_model).strip()
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            return None, f"Base model folder {folder} has no config.json."
        if not has_full_weights(folder):
            return None, f"Base model folder {folder} has no weights (model*.safetensors)."
    elif _looks_like_path(name):
        return None, f"Base model folder not found: {folder}."
    elif _config_file(name) is None or not any(_cached(name, w) for w in FULL_MODEL_WEIGHTS):
        return None, (
            f"Base model {name} is not available offline: not a local folder, and not in the "
            "local Hugging Face cache (download it first, or use a local folder)."
        )
    config = local_base_config(name)
    if config is None:
        return None, f"Base model {name} has an unreadable config.json."
    return config, None
