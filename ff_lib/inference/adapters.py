"""Adapter validation: is this folder a LoRA adapter we can load on this base, and if not, why."""

import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ff_lib.errors import AdapterInvalid
from ff_lib.inference.base_identity import (
    base_availability,
    has_full_weights,
    local_base_config,
    other_base_warning,
)

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# Folders of a training run that may hold the adapter one level down, in the order tried.
NESTED_FOLDERS = ("adapter", "outputs/adapter", "output/adapter", "final_adapter")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# A sane bound: a safetensors header is JSON metadata, never hundreds of megabytes.
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class AdapterCheck:
    """The outcome of validating an adapter folder, ready to show as is."""

    ok: bool
    reason: str  # one line: what is wrong, or a summary when ok
    requested_path: str
    adapter_dir: str | None = None  # the folder really holding the adapter (resolved)
    resolved_from: str | None = None  # the run folder it was found in, when one level down
    files: tuple[str, ...] = ()
    base_model: str | None = None  # base_model_name_or_path declared by the adapter
    rank: int | None = None
    target_modules: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Why the base it would answer on (the one asked for, else the declared one) cannot be used
    # here: not a folder with weights, not in the local HF cache. None when it is available.
    base_problem: str | None = None

    def raise_if_invalid(self) -> "AdapterCheck":
        """AdapterInvalid(reason) when not ok; else self."""
        if not self.ok:
            raise AdapterInvalid(self.reason)
        return self


# LoraConfig's fields in PEFT 0.21.2 (dataclasses.fields(peft.LoraConfig)), the version pinned.
LORA_CONFIG_KEYS = frozenset(
    [
        "alora_invocation_tokens",
        "alpha_pattern",
        "arrow_config",
        "auto_mapping",
        "base_model_name_or_path",
        "bias",
        "corda_config",
        "ensure_weight_tying",
        "eva_config",
        "exclude_modules",
        "fan_in_fan_out",
        "inference_mode",
        "init_lora_weights",
        "kasa_config",
        "layer_replication",
        "layers_pattern",
        "layers_to_transform",
        "loftq_config",
        "lora_alpha",
        "lora_bias",
        "lora_dropout",
        "lora_ga_config",
        "megatron_config",
        "megatron_core",
        "modules_to_save",
        "monteclora_config",
        "peft_type",
        "peft_version",
        "qalora_group_size",
        "r",
        "rank_pattern",
        "revision",
        "runtime_config",
        "target_modules",
        "target_parameters",
        "task_type",
        "trainable_token_indices",
        "use_bdlora",
        "use_dora",
        "use_qalora",
        "use_rslora",
        "velora_config",
    ]
)


def unknown_config_keys(config: dict) -> list[str]:
    """Keys of an adapter_config.json that the installed PEFT's LoraConfig does not have."""
    unknown = sorted(set(config) - LORA_CONFIG_KEYS)
    if unknown:  # a newer PEFT may know them: ask it (imported only in this rare case)
        import dataclasses

        from peft import LoraConfig

        known = {f.name for f in dataclasses.fields(LoraConfig)}
        unknown = [k for k in unknown if k not in known]
    return unknown


class _Refused(Exception):
    """Internal: a validation step failed with a user-facing message."""


def validate_adapter(path, base_model: str | None = None) -> AdapterCheck:
    """Check a LoRA adapter folder (or a run folder holding one) without loading any weights.

    When `base_model` is given (or the adapter declares a base that is available locally), the
    tensor shapes in the weights header are compared with that base's config.json.
    """
    requested = Path(path).expanduser()
    facts: dict = {"requested_path": str(path)}
    warnings: list[str] = []
    try:
        folder = _readable_folder(requested)
        adapter_dir, note = _resolve(folder)
        if note:
            facts["resolved_from"] = str(folder)
            warnings.append(note)
        facts["adapter_dir"] = str(adapter_dir)
        facts["files"] = tuple(sorted(p.name for p in adapter_dir.iterdir()))
        config = _read_config(adapter_dir)
        unknown = unknown_config_keys(config)
        if unknown:
            warnings.append(
                f"adapter_config.json has settings {unknown} that this PEFT does not know; they "
                "are not applied. The adapter was saved by a newer PEFT: if its replies look "
                "wrong, upgrade peft and FF Playground."
            )
        facts["base_model"] = config.get("base_model_name_or_path") or None
        facts["rank"] = config.get("r")
        targets = config.get("target_modules") or ()
        facts["target_modules"] = (targets,) if isinstance(targets, str) else tuple(targets)
        weights = _weights_file(adapter_dir)
        file, shapes = _tensor_shapes(weights)
        if shapes is not None:
            _unless_passed("config", _check_against_config, file, shapes, config, adapter_dir)
        declared = facts["base_model"]
        base_for_shapes = base_model or declared
        base_config = local_base_config(base_for_shapes) if base_for_shapes else None
        if base_for_shapes:
            facts["base_problem"] = base_availability(base_for_shapes)[1]
        other = other_base_warning(declared, base_model) if base_model and declared else None
        if other:
            warnings.append(other)
        if shapes is not None and base_config is not None:
            given = (config, base_config, base_for_shapes, declared, adapter_dir)
            _unless_passed("base", _check_shapes, file, shapes, *given)
        elif base_config is None and base_for_shapes:
            warnings.append(
                f"Base model {base_for_shapes} is not available locally: shapes not checked."
            )
    except _Refused as refused:
        return AdapterCheck(False, str(refused), warnings=tuple(warnings), **facts)
    rank = facts["rank"]
    summary = f"LoRA adapter, rank {rank}, on {len(facts['target_modules'])} module types"
    if facts["base_model"]:
        summary += f", trained for {facts['base_model']}"
    return AdapterCheck(True, summary + ".", warnings=tuple(warnings), **facts)


class _Memo:
    """What was read from, or passed by, files unchanged since (a bounded, thread-safe memo).

    A batch of 16 rows on 4 adapters checked each adapter's 448 tensors against its config and
    its base every time (4 ms each on the 8B shape). A check is a function of its inputs alone:
    the weights file's size and header (named by their digest: a header is read every time,
    so a rewritten file is checked afresh), the adapter's config and the base's. A refusal is
    never kept: it is checked again."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            return None

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_SHAPES = _Memo(64)  # (size, header digest) of a weights file -> its tensor shapes
_PASSED = _Memo(512)  # (which check, the inputs it passed with) -> True


def _as_text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict) else str(value)


def _unless_passed(name: str, check, file: tuple, shapes: dict, *args) -> None:
    """check(shapes, *args) (it raises _Refused), unless the check `name` passed before on the
    same weights header (`file`: _tensor_shapes' key) and args (dicts compared as JSON)."""
    key = (name, file, *(_as_text(a) for a in args))
    if not _PASSED.get(key):
        check(shapes, *args)
        _PASSED.put(key, True)


def _readable_folder(folder: Path) -> Path:
    try:
        if not folder.exists():
            raise _Refused(f"Adapter folder not found: {folder}")
        if not folder.is_dir():
            raise _Refused(f"Not a folder: {folder} (pick the folder that holds the adapter)")
        os.listdir(folder)
    except PermissionError as exc:
        raise _Refused(f"Permission denied reading {folder}: {exc.strerror}") from exc
    return folder.resolve()


def _resolve(folder: Path) -> tuple[Path, str | None]:
    """(adapter folder, note) — the folder itself, or the adapter one level down in a run."""
    if (folder / CONFIG_FILE).is_file():
        return folder, None
    for nested in NESTED_FOLDERS:
        if (folder / nested / CONFIG_FILE).is_file():
            return folder / nested, f"adapter found in {nested}/"
    checkpoints = []
    for parent in (folder, folder / "outputs"):
        if parent.is_dir():
            for child in parent.iterdir():
                match = CHECKPOINT.match(child.name)
                if match and (child / CONFIG_FILE).is_file():
                    checkpoints.append((int(match.group(1)), child))
    if checkpoints:
        _, newest = max(checkpoints)
        return newest, f"adapter found in {newest.relative_to(folder)}/ (the newest checkpoint)"
    if (folder / "config.json").is_file() and has_full_weights(folder):
        raise _Refused(
            f"No {CONFIG_FILE} in {folder}: this looks like a full model, not an adapter "
            "(use it as the base model instead)."
        )
    raise _Refused(
        f"No {CONFIG_FILE} in {folder}: not a LoRA adapter folder "
        "(expected adapter_config.json and adapter_model.safetensors)."
    )


def _read_config(adapter_dir: Path) -> dict:
    file = adapter_dir / CONFIG_FILE
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise _Refused(f"Permission denied reading {file}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Refused(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise _Refused(f"{file} is not a PEFT config (expected a JSON object).")
    peft_type = config.get("peft_type")
    if str(peft_type).upper() != "LORA":
        raise _Refused(
            f"{file} is not a LoRA config (peft_type is {peft_type!r}, expected 'LORA')."
        )
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise _Refused(f"{file} has no valid LoRA rank (r is {rank!r}).")
    return config


def _weights_file(adapter_dir: Path) -> Path:
    for name in WEIGHT_FILES:
        file = adapter_dir / name
        if file.is_file():
            if file.stat().st_size == 0:
                raise _Refused(f"Weights file is empty: {file}")
            return file
    raise _Refused(
        f"No weights file in {adapter_dir}: expected adapter_model.safetensors "
        "or adapter_model.bin."
    )


def read_safetensors_header(file: Path) -> dict:
    """The JSON header of a safetensors file: {tensor name: {dtype, shape, data_offsets}}.

    Raises AdapterInvalid when the file is truncated or damaged.
    """
    return _parse_header(file, *_header_bytes(file))


def _header_bytes(file: Path) -> tuple[int, bytes]:
    """(the file's size, its raw JSON header); AdapterInvalid when it cannot hold one."""
    size = file.stat().st_size
    try:
        with file.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise AdapterInvalid(f"Weights file is truncated: {file} ({size} bytes)")
            length = int.from_bytes(prefix, "little")
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise AdapterInvalid(
                    f"Weights file is truncated or damaged: {file} (header says {length} bytes, "
                    f"the file has {size})"
                )
            return size, handle.read(length)
    except PermissionError as exc:
        raise AdapterInvalid(f"Permission denied reading {file}") from exc


def _parse_header(file: Path, size: int, raw: bytes) -> dict:
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterInvalid(
            f"Weights file is damaged: {file} (its header is not valid JSON)"
        ) from exc
    if not isinstance(header, dict):
        raise AdapterInvalid(f"Weights file is damaged: {file} (unexpected header)")
    data_end = max(
        (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
    )
    if 8 + len(raw) + data_end > size:
        raise AdapterInvalid(
            f"Weights file is truncated: {file} (tensors need {8 + len(raw) + data_end} bytes, "
            f"the file has {size})"
        )
    return header


def _tensor_shapes(weights: Path) -> tuple[tuple | None, dict[str, tuple[int, ...]] | None]:
    """(what the shapes depend on: the file's size and header digest, tensor name -> shape);
    (None, None) for a .bin we only checked for size."""
    if weights.suffix == ".safetensors":
        try:
            size, raw = _header_bytes(weights)
            key = (size, hashlib.blake2b(raw, digest_size=16).digest())
            shapes = _SHAPES.get(key)
            if shapes is None:
                header = _parse_header(weights, size, raw)
                shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
                _SHAPES.put(key, shapes)
            return key, shapes
        except AdapterInvalid as exc:
            raise _Refused(str(exc)) from exc
    import zipfile

    # torch.save files are zip archives; anything else would fail on load.
    if not zipfile.is_zipfile(weights):
        raise _Refused(f"Weights file is damaged or truncated: {weights} (not a torch archive)")
    return None, None


_LORA_TENSOR = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_(A|B|embedding_A|embedding_B)\b")


def _rank_for(module_path: str, config: dict) -> int:
    """The rank peft gives this module: rank_pattern's first match (peft's rule), else r."""
    for pattern, rank in (config.get("rank_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module_path):
            return rank
    return config["r"]


def _targeted(module_path: str, targets) -> bool:
    """peft's rule: a regex must match the whole name; a list entry matches the name's end."""
    if isinstance(targets, str):
        return re.fullmatch(targets, module_path) is not None
    return any(module_path == t or module_path.endswith(f".{t}") for t in targets)


def _check_against_config(shapes: dict, config: dict, adapter_dir: Path) -> None:
    """Refuse weights that contradict their own adapter_config.json (rank, target modules)."""
    targets = config.get("target_modules")
    check_targets = bool(targets) and targets != "all-linear"
    for key, shape in shapes.items():
        match = _LORA_TENSOR.match(key)
        if not match or len(shape) != 2:
            continue
        module_path, side = match.group(1), match.group(2)
        if check_targets and not _targeted(module_path, targets):
            raise _Refused(
                f"Adapter {adapter_dir} contradicts its adapter_config.json: the weights hold "
                f"{key}, but target_modules is {targets!r}."
            )
        rank = _rank_for(module_path, config)
        rank_dim = shape[0] if side in ("A", "embedding_A") else shape[1]
        if rank_dim != rank:
            raise _Refused(
                f"Adapter {adapter_dir} contradicts its adapter_config.json: {key} has rank "
                f"{rank_dim}, adapter_config.json says r={rank}."
            )


# --- shape checks against the base ------------------------------------------------------------
def _expected_dims(module: str, cfg: dict) -> tuple[int, int] | None:
    """(in_features, out_features) of a Llama-style linear layer, or None if unknown."""
    hidden = cfg.get("hidden_size")
    inter = cfg.get("intermediate_size")
    heads = cfg.get("num_attention_heads")
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or (hidden // heads if hidden and heads else None)
    vocab = cfg.get("vocab_size")
    table = {
        "q_proj": (hidden, heads * head_dim if heads and head_dim else None),
        "k_proj": (hidden, kv_heads * head_dim if kv_heads and head_dim else None),
        "v_proj": (hidden, kv_heads * head_dim if kv_heads and head_dim else None),
        "o_proj": (heads * head_dim if heads and head_dim else None, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
        "lm_head": (hidden, vocab),
    }
    dims = table.get(module)
    if dims is None or None in dims:
        return None
    return dims


_LORA_KEY = re.compile(r"(?:^|\.)(\w+)\.lora_(A|B)(?:\.\w+)?\.weight$")
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def _check_shapes(shapes, config, base_cfg, base_name, declared, adapter_dir) -> None:
    """Refuse an adapter whose tensors cannot fit the base (rank, hidden size, vocab, layers)."""
    layers = base_cfg.get("num_hidden_layers")
    trained_for = f" It was trained for {declared}." if declared else ""

    def refuse(what: str) -> None:
        raise _Refused(
            f"Adapter {adapter_dir} does not fit base model {base_name}: {what}.{trained_for}"
        )

    for key, shape in shapes.items():
        layer = _LAYER.search(key)
        if layer and layers is not None and int(layer.group(1)) >= layers:
            refuse(f"{key} is for layer {layer.group(1)}, the base has {layers} layers")
        if key.endswith(("embed_tokens.weight", "lm_head.weight")) and "lora_" not in key:
            expected = (base_cfg.get("vocab_size"), base_cfg.get("hidden_size"))
            if None not in expected and tuple(shape) != expected:
                refuse(
                    f"{key} has shape {list(shape)}, the base needs {list(expected)} (vocab, hidden size)"
                )
            continue
        if "lora_embedding_" in key and len(shape) == 2:
            vocab, hidden = base_cfg.get("vocab_size"), base_cfg.get("hidden_size")
            dim = shape[1] if "lora_embedding_A" in key else shape[0]
            want = vocab if "lora_embedding_A" in key else hidden
            if want is not None and dim != want:
                refuse(f"{key} has shape {list(shape)}, the base's size there is {want}")
            continue
        match = _LORA_KEY.search(key)
        if not match or len(shape) != 2:
            continue
        module, side = match.group(1), match.group(2)
        dims = _expected_dims(module, base_cfg)
        if dims is None:
            continue
        got = shape[1] if side == "A" else shape[0]
        want = dims[0] if side == "A" else dims[1]
        if got != want:
            what = "input" if side == "A" else "output"
            refuse(
                f"{key} has shape {list(shape)}, but the base's {module} {what} size is {want} "
                f"(hidden size {base_cfg.get('hidden_size')})"
            )
