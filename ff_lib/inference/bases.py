"""Bases: locate one (folder, HF cache, offline), choose its quantization out loud, load it."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import BaseModelUnavailable, InvalidInput, QuantizationError
from ff_lib.inference.quiet import quiet_libraries

QUANTIZATIONS = ("auto", "none", "bf16", "nf4", "nf4-bf16")
QUANTIZATION_LABELS = {
    "float32": "float32",
    "bf16": "bf16",
    "nf4": "4-bit NF4",
    "nf4-bf16": "NF4 dequantized to bf16",
}
# Free GPU memory kept aside when deciding whether bf16 fits (activations, graphs, fragments).
HEADROOM = 0.15
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Quantization:
    """What a base is loaded as, and why (shown in the status line)."""

    mode: str  # "float32" | "bf16" | "nf4" | "nf4-bf16"
    reason: str

    @property
    def label(self) -> str:
        return QUANTIZATION_LABELS[self.mode]


def choose_quantization(
    requested: str, cuda: bool, *, prequantized: bool = False, fits_bf16: bool | None = None
) -> Quantization:
    """The mode for a requested option. `auto` on CUDA: NF4 for a base that was trained
    quantized (a bitsandbytes 4-bit checkpoint), else bf16 when it fits in free GPU memory."""
    if requested not in QUANTIZATIONS:
        raise InvalidInput(
            f"Unknown quantization {requested!r}: use one of {', '.join(QUANTIZATIONS)}."
        )
    if requested in ("nf4", "nf4-bf16", "bf16") and not cuda:
        name = "4-bit NF4" if requested.startswith("nf4") else "bf16"
        raise QuantizationError(
            f"{name} needs a CUDA GPU and none is available here: "
            "choose quantization 'none' (float32 on CPU) or 'auto'."
        )
    if requested == "none" or not cuda:
        return Quantization("float32", "no CUDA GPU: float32 on the CPU" if not cuda else "asked")
    if requested != "auto":
        return Quantization(requested, "asked")
    if prequantized:
        return Quantization("nf4", "the base is a bitsandbytes 4-bit checkpoint")
    if fits_bf16 is False:
        return Quantization("nf4", "bf16 would not fit in free GPU memory")
    return Quantization("bf16", "bf16 fits in free GPU memory")


def base_facts(source: str) -> tuple[bool, int | None]:
    """(pre-quantized in 4-bit?, weight bytes if known) from a local base folder's files."""
    folder = Path(source)
    if not folder.is_dir():
        return False, None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False, None
    quant = config.get("quantization_config") or {}
    prequantized = bool(quant.get("load_in_4bit")) or "bnb-4bit" in folder.name.lower()
    size = None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            size = int(json.loads(index.read_text())["metadata"]["total_size"])
        except (OSError, ValueError, KeyError):
            size = None
    if size is None:
        files = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
        size = sum(f.stat().st_size for f in files) or None
    return prequantized, size


def hub_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def locate_base(base_model: str) -> str:
    """A local folder (resolved) or a Hugging Face id; fails fast when it cannot be had offline."""
    if not base_model or not str(base_model).strip():
        raise InvalidInput("No base model: type a Hugging Face id or a local model folder.")
    base_model = str(base_model).strip()
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise BaseModelUnavailable(
                f"Base model folder {folder} has no config.json: pick a Hugging Face model folder."
            )
        return str(folder.resolve())
    if base_model.startswith(("/", "./", "../", "~")) or os.sep + os.sep in base_model:
        raise BaseModelUnavailable(f"Base model folder not found: {folder}")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(base_model, "config.json")
    except HFValidationError as exc:
        raise BaseModelUnavailable(
            f"Base model {base_model!r} is neither a local folder nor a valid Hugging Face id."
        ) from exc
    if not isinstance(cached, str) and hub_offline():
        raise BaseModelUnavailable(
            f"not available offline: {base_model} is not a local folder and not in the local "
            "Hugging Face cache, and downloads are off. Give a local folder, or let it download "
            "once with FF_ALLOW_DOWNLOADS=1."
        )
    return base_model


def load_model(base_model: str, source: str, mode: str, trust_remote_code: bool = False):
    """(model, tokenizer, device) for a located base in `mode`; never a silent fallback."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    device = "cuda:0" if cuda else "cpu"
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if mode in ("nf4", "nf4-bf16"):
        kwargs.update(dtype=torch.bfloat16, device_map={"": 0}, quantization_config=_nf4_config())
    else:
        kwargs["dtype"] = torch.bfloat16 if mode == "bf16" else torch.float32
    try:
        with quiet_libraries():
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise BaseModelUnavailable(f"Base model {base_model} could not be loaded: {exc}") from exc
    except (RuntimeError, ValueError, ImportError) as exc:
        if mode.startswith("nf4"):
            raise QuantizationError(
                f"Loading {base_model} in 4-bit NF4 failed: {exc}. "
                "Choose quantization 'bf16' or 'none' instead."
            ) from exc
        raise BaseModelUnavailable(f"Base model {base_model} could not be loaded: {exc}") from exc
    if mode == "nf4-bf16":
        dequantize_nf4(model)
    elif not mode.startswith("nf4"):
        model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device


def _nf4_config():
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise QuantizationError(f"4-bit NF4 needs bitsandbytes, which failed: {exc}") from exc
    # As QLoRA trains: NF4, double quantization, bf16 compute.
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def dequantize_nf4(model) -> int:
    """Replace every 4-bit linear by a bf16 one holding its dequantized weights (the exact base a
    QLoRA adapter was trained on, at bf16 speed); the number of layers replaced."""
    import bitsandbytes as bnb
    import torch

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, bnb.nn.Linear4bit):
                continue
            weight = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state)
            linear = torch.nn.Linear(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                dtype=torch.bfloat16,
                device=weight.device,
            )
            with torch.no_grad():
                linear.weight.copy_(weight.to(torch.bfloat16))
                if child.bias is not None:
                    linear.bias.copy_(child.bias.to(torch.bfloat16))
            setattr(parent, name, linear.requires_grad_(False))
            replaced += 1
    torch.cuda.empty_cache()
    return replaced
