"""Adapters in fixed slots beside an untouched base: stacked LoRA tensors per projection group.

The base weights are never written, so the base stays bit-exact however often adapters are
switched. Per layer and group (qkv, o, gate_up, down) the slots live in two tensors:
A_all (K, in), K = modules x slots x rank, and B (slots, rank, out): each module's B in its own
block of output columns, already multiplied by the adapter's scaling. `x @ A_all.T` gives every
slot's down-projection at once; a row then adds its own slot's up-projection (a 0/1 mask over K
and one matmul per module with dense ops, or the `lora_expand` kernel on CUDA), so the other
slots contribute nothing (the S-LoRA/Punica idea). The decoder may hand out A_all's storage
(`a_storage`): rows appended to the base's own weight, so one GEMM gives base and x @ A_all.
"""

import json
import math
import pickle
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from ff_lib.errors import AdapterInvalid, GenerationError
from ff_lib.inference.adapters import CONFIG_FILE
from ff_lib.inference.provenance import adapter_name, adapter_weights_file

# The projection groups, in the order their outputs are concatenated.
GROUPS: dict[str, tuple[str, ...]] = {
    "qkv": ("q_proj", "k_proj", "v_proj"),
    "o": ("o_proj",),
    "gate_up": ("gate_proj", "up_proj"),
    "down": ("down_proj",),
}
MODULE_GROUP = {m: (g, i) for g, mods in GROUPS.items() for i, m in enumerate(mods)}
RANK_STEP = 16  # slots are padded to a multiple of this rank


@dataclass
class LoraFactors:
    """One adapter read from disk: per (layer, module) its A (r, in), B (out, r) and scaling."""

    name: str
    folder: str
    factors: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, float]]
    rank: int  # the largest rank of any module


def _scaling(config: dict, module: str, rank: int) -> float:
    alpha = config.get("lora_alpha", 8)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if module.endswith(pattern) or pattern in module:
            alpha = value
    if config.get("use_rslora"):
        return float(alpha) / math.sqrt(rank)
    return float(alpha) / rank


def _refuse_unsupported(config: dict, folder: str) -> None:
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterInvalid(f"Adapter {folder} is {config.get('peft_type')}, not LoRA.")
    for key, what in (("use_dora", "DoRA"), ("lora_bias", "a LoRA bias")):
        if config.get(key):
            raise AdapterInvalid(
                f"Adapter {folder} uses {what}, which the batched engine does not apply: "
                "merge it into the base with peft and load the merged model instead."
            )
    changes_forward = {
        "layer_replication": "layer replication",
        "target_parameters": "LoRA on raw parameters (target_parameters)",
        "trainable_token_indices": "trained token embeddings",
        "alora_invocation_tokens": "activated LoRA (aLoRA)",
        "use_bdlora": "BD-LoRA",
        "use_qalora": "QA-LoRA",
        "arrow_config": "Arrow routing",
        "kasa_config": "KaSA",
        "monteclora_config": "MonteCLoRA",
        "velora_config": "VeLoRA",
    }
    for key, what in changes_forward.items():
        if config.get(key):
            raise AdapterInvalid(
                f"Adapter {folder} uses {what} ({key}), which the batched engine does not "
                "apply: merge it into the base with peft and load the merged model instead."
            )
    if config.get("modules_to_save"):
        raise AdapterInvalid(
            f"Adapter {folder} also trains full modules ({config['modules_to_save']}), which "
            "the batched engine does not apply: merge it with peft and load the merged model."
        )


def _load_state(weights: Path) -> dict[str, torch.Tensor]:
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(weights))
        return torch.load(str(weights), map_location="cpu", weights_only=True)
    # UnpicklingError: a .bin whose pickle asks for code; weights_only refuses it unrun.
    # SafetensorError: a file cut short or rewritten since it was checked (a trainer saving).
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError, SafetensorError) as exc:
        raise AdapterInvalid(f"Adapter weights {weights} could not be read: {exc}") from exc


def read_lora(folder: str) -> LoraFactors:
    """The LoRA factors of a validated adapter folder; AdapterInvalid for what we cannot apply."""
    try:
        config = json.loads((Path(folder) / CONFIG_FILE).read_text())
    # The folder was checked when the request was made: it changed since (a trainer rotating
    # its checkpoints, a file being rewritten).
    except (OSError, ValueError) as exc:
        raise AdapterInvalid(
            f"Adapter {folder} changed since it was checked and cannot be read now: {exc}"
        ) from exc
    _refuse_unsupported(config, folder)
    weights = adapter_weights_file(Path(folder))
    if weights is None:
        raise AdapterInvalid(f"Adapter {folder} has no weights file.")
    state = _load_state(weights)
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if "lora_A" not in parts and "lora_B" not in parts:
            raise AdapterInvalid(
                f"Adapter {folder} holds {key}, which is not a LoRA factor: the batched engine "
                "applies LoRA on the attention and MLP projections only."
            )
        which = "A" if "lora_A" in parts else "B"
        idx = parts.index("lora_A" if which == "A" else "lora_B")
        module = parts[idx - 1]
        if module not in MODULE_GROUP or "layers" not in parts:
            raise AdapterInvalid(
                f"Adapter {folder} trains {module}, which the batched engine does not apply "
                "(it applies q/k/v/o and gate/up/down projections)."
            )
        layer = int(parts[parts.index("layers") + 1])
        pairs.setdefault((layer, module), {})[which] = tensor
    factors, rank = {}, 0
    for (layer, module), ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise AdapterInvalid(f"Adapter {folder}: layer {layer} {module} lacks lora_A or B.")
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise AdapterInvalid(
                f"Adapter {folder}: layer {layer} {module} has A {tuple(a.shape)} and B "
                f"{tuple(b.shape)}, whose ranks disagree."
            )
        r = a.shape[0]
        rank = max(rank, r)
        factors[(layer, module)] = (a, b, _scaling(config, module, r))
    if not factors:
        raise AdapterInvalid(f"Adapter {folder} holds no LoRA weights.")
    return LoraFactors(adapter_name(Path(folder)), str(folder), factors, rank)


class AdapterSlots:
    """Stacked LoRA tensors for up to `max_slots` adapters, LRU-evicted; slot `capacity` = none.

    `capacity` grows in powers of two as adapters arrive (a growth reallocates and bumps
    `version`, which tells the decoder to recapture its graphs); a switch or a load into a free
    slot only copies into fixed addresses.
    """

    def __init__(
        self, dims: dict, n_layers: int, dtype, device, max_slots: int = 8, a_storage=None
    ):
        self.dims = dims  # group -> (in_features, [out_features per module])
        # (layer, group, K) -> a zeroed (K, in) tensor for A_all; None: plain tensors
        self.a_storage = a_storage
        self.n_layers = n_layers
        self.dtype, self.device = dtype, device
        self.max_slots = max_slots
        self.capacity = 0
        self.rank = 0
        self.version = 0
        self.names: OrderedDict[str, int] = OrderedDict()  # adapter name -> slot, LRU order
        self.folders: dict[str, str] = {}
        self.A: list[dict[str, torch.Tensor]] = []
        self.B: list[dict[str, torch.Tensor]] = []
        self.masks: dict[int, torch.Tensor] = {}  # n_modules -> (capacity + 1, K) 0/1
        self.loads = 0
        self.last_switch_s: float | None = None
        self.broken: str | None = None  # why adapters can no longer be used (a failed growth)

    @property
    def none_slot(self) -> int:
        """The slot index that means 'no adapter'."""
        return self.capacity

    def bytes_per_adapter(self) -> int:
        """Resident bytes one slot takes (A and B of every group and layer)."""
        if not self.capacity:
            return 0
        total = sum(t.numel() for layer in self.A + self.B for t in layer.values())
        return total * self.A[0]["o"].element_size() // self.capacity

    def slot_of(self, lora_name: str | None) -> int:
        if lora_name is None:
            return self.none_slot
        self.names.move_to_end(lora_name)
        return self.names[lora_name]

    def ensure(self, folder: str, pinned: set[str]) -> str:
        """Load the adapter in `folder` into a slot (if not there yet); its name.

        `pinned` are names in use by live rows: never evicted.
        """
        if self.broken:
            raise GenerationError(self.broken)
        started = time.perf_counter()
        name = adapter_name(Path(folder))
        if name in self.names:
            self.names.move_to_end(name)
            self.last_switch_s = time.perf_counter() - started
            return name
        lora = read_lora(folder)
        self._check_shapes(lora)
        stale = [n for n, f in self.folders.items() if f == folder and n not in pinned]
        for old in stale:  # a retrained adapter in the same folder replaces its old version
            self._free(old)
        need_rank = max(self.rank, -(-lora.rank // RANK_STEP) * RANK_STEP)
        if len(self.names) >= self.capacity and self.capacity < self.max_slots:
            self._grow(min(self.max_slots, max(1, self.capacity * 2)), need_rank)
        elif need_rank > self.rank:
            self._grow(self.capacity, need_rank)
        if len(self.names) >= self.capacity:
            victim = next((n for n in self.names if n not in pinned), None)
            if victim is None:
                raise AdapterInvalid(
                    f"All {self.capacity} adapter slots are answering right now: wait for a "
                    "reply to finish, or raise the number of slots (FF_MAX_ADAPTERS)."
                )
            self._free(victim)
        slot = next(s for s in range(self.capacity) if s not in self.names.values())
        self._write(slot, lora)
        self.names[name] = slot
        self.folders[name] = str(folder)
        self.loads += 1
        self.last_switch_s = time.perf_counter() - started
        return name

    def reserve(self, capacity: int, rank: int) -> None:
        """Make room for `capacity` adapters of rank `rank` now (before graphs are captured)."""
        if capacity > self.capacity or rank > self.rank:
            self._grow(max(capacity, self.capacity), max(rank, self.rank))

    def _check_shapes(self, lora: LoraFactors) -> None:
        for (layer, module), (a, b, _) in lora.factors.items():
            group, i = MODULE_GROUP[module]
            fan_in, outs = self.dims[group]
            if layer >= self.n_layers or a.shape[1] != fan_in or b.shape[0] != outs[i]:
                raise AdapterInvalid(
                    f"Adapter {lora.folder}: layer {layer} {module} has A {tuple(a.shape)}, B "
                    f"{tuple(b.shape)}, which do not fit this base ({self.n_layers} layers, "
                    f"{module} {fan_in} -> {outs[i]}): it was trained for another base."
                )

    def _free(self, name: str) -> None:
        slot = self.names.pop(name)
        self.folders.pop(name, None)
        with torch.no_grad():
            for layer in self.B:  # zero B: the slot contributes nothing until rewritten
                for b in layer.values():
                    b[slot].zero_()

    def _slot_cols(self, t: torch.Tensor, group: str, slot: int) -> torch.Tensor:
        """View of A_all (K, in) at the rows of `slot` for every module of `group`: (mods, R, in)."""
        mods = len(GROUPS[group])
        return t.view(mods, self.capacity, self.rank, -1)[:, slot]

    def _grow(self, capacity: int, rank: int) -> None:
        """Reallocate for `capacity` slots of `rank`, layer by layer (so only one layer's old
        and new tensors are held at once). A failure part-way (out of memory) leaves layers on
        two layouts: adapters are refused from then on, said, and the version moves so that no
        graph of the old layout replays; the base's own rows are intact in both."""
        if self.broken:
            raise GenerationError(self.broken)
        with torch.inference_mode(False), torch.no_grad():  # plain tensors, written in place later
            try:
                self._allocate(capacity, rank)
            except (RuntimeError, ValueError, MemoryError) as exc:
                self.version += 1
                self.broken = (
                    f"Making room for another adapter failed part-way ({exc}). The base still "
                    "answers without an adapter; to use adapters again, load the base anew "
                    "(restart the app)."
                )
                raise GenerationError(self.broken) from exc

    def _allocate(self, capacity: int, rank: int) -> None:
        old_A, old_B, old_cap, old_rank = self.A, self.B, self.capacity, self.rank
        self.capacity, self.rank = capacity, rank
        self.A, self.B = [], []
        for layer in range(self.n_layers):
            a_layer, b_layer = {}, {}
            for group, (fan_in, outs) in self.dims.items():
                k = len(outs) * capacity * rank
                if self.a_storage is not None:
                    a = self.a_storage(layer, group, k)
                else:
                    a = torch.zeros(k, fan_in, dtype=self.dtype, device=self.device)
                b = torch.zeros(capacity, rank, sum(outs), dtype=self.dtype, device=self.device)
                if old_cap:
                    mods = len(outs)
                    a.view(mods, capacity, rank, -1)[:, :old_cap, :old_rank] = old_A[layer][
                        group
                    ].view(mods, old_cap, old_rank, -1)
                    b[:old_cap, :old_rank] = old_B[layer][group]
                a_layer[group], b_layer[group] = a, b
            if old_cap:  # the old tensors go now, not after every layer was copied
                old_A[layer] = old_B[layer] = None
            self.A.append(a_layer)
            self.B.append(b_layer)
        self.masks = {}
        for mods in {len(m) for m in GROUPS.values()}:
            cols = torch.arange(mods * capacity * rank, device=self.device)
            slot_of_col = (cols // rank) % capacity
            rows = torch.arange(capacity + 1, device=self.device)[:, None]
            self.masks[mods] = (slot_of_col[None, :] == rows).to(self.dtype)
        self.version += 1

    def _write(self, slot: int, lora: LoraFactors) -> None:
        """Copy the adapter into `slot`: its factors reach the device in one transfer per
        dtype (`_on_device`); rounding, scaling and placing then run there as launches the host
        does not wait for."""
        factors = _on_device(lora, self.device)
        with torch.no_grad():
            for layer in range(self.n_layers):
                for group, mods in GROUPS.items():
                    a_view = self._slot_cols(self.A[layer][group], group, slot)
                    b_view = self.B[layer][group][slot]  # (rank, out of every module)
                    a_view.zero_()
                    b_view.zero_()
                    offset = 0
                    for i, module in enumerate(mods):
                        width = self.dims[group][1][i]
                        found = factors.get((layer, module))
                        if found is not None:
                            a, b, scale = found
                            r = a.shape[0]
                            a_view[i, :r] = a.to(self.dtype)
                            # B is stored transposed (rank, out) and pre-scaled, in its
                            # module's block of output columns.
                            scaled = (b.to(torch.float32) * scale).T
                            b_view[:r, offset : offset + width] = scaled.to(self.dtype)
                        offset += width


def _on_device(lora: LoraFactors, device) -> dict:
    """The adapter's factors, as read, on `device`: one transfer per dtype instead of a
    synchronous copy per factor (448 on the 8B shape). (layer, module) -> (A, B, scaling).
    Its CPU concatenation took 3.1 s instead of 0.05 s on the H200 while torch's compile
    workers started beside it: the engine compiles in-process (ops._compile_in_process)."""
    moved = {key: [a, b, scale] for key, (a, b, scale) in lora.factors.items()}
    by_dtype: dict[torch.dtype, list] = {}
    for key, (a, b, _) in lora.factors.items():
        for which, tensor in enumerate((a, b)):
            by_dtype.setdefault(tensor.dtype, []).append((key, which, tensor))
    for items in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for _, _, t in items]).to(device)
        parts = flat.split([t.numel() for _, _, t in items])
        for (key, which, tensor), part in zip(items, parts, strict=True):
            moved[key][which] = part.view(tensor.shape)
    return {key: tuple(factors) for key, factors in moved.items()}
