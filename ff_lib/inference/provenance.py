"""Which weights answered: stable adapter names and SHA-256 of adapter files (cached)."""

import hashlib
import threading
from pathlib import Path

from ff_lib.inference.adapters import CONFIG_FILE, WEIGHT_FILES


def adapter_name(adapter_dir: Path) -> str:
    """Stable name for an adapter: its resolved folder + its weights' and config's mtime and
    size, so a retrained adapter, or an edited scaling (lora_alpha...), loads afresh."""
    adapter_dir = Path(adapter_dir).resolve()
    weights = adapter_weights_file(adapter_dir)
    stamps = [_stamp(f) for f in (weights, adapter_dir / CONFIG_FILE) if f is not None]
    digest = hashlib.sha1("|".join([str(adapter_dir), *stamps]).encode()).hexdigest()[:12]
    return f"a{digest}"


def _stamp(file: Path) -> str:
    try:
        stat = file.stat()
    except OSError:  # gone: the load that follows says so
        return "-"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}
_SHA256_LOCK = threading.Lock()


def adapter_weights_file(adapter_dir: Path) -> Path | None:
    """The adapter's weights file (safetensors first), None when it has none."""
    for name in WEIGHT_FILES:
        if (Path(adapter_dir) / name).is_file():
            return Path(adapter_dir) / name
    return None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached by (resolved path, mtime_ns, size): a rewrite is hashed again."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _SHA256_LOCK:
        if key in _SHA256_CACHE:
            return _SHA256_CACHE[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    with _SHA256_LOCK:
        _SHA256_CACHE[key] = digest.hexdigest()
    return _SHA256_CACHE[key]


def adapter_sha256(adapter_dir: Path) -> tuple[str | None, str | None]:
    """(weights file, its SHA-256) of an adapter folder; (None, None) when it has no weights."""
    weights = adapter_weights_file(adapter_dir)
    if weights is None:
        return None, None
    return str(weights.resolve()), file_sha256(weights)
