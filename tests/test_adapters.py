"""Adapter validation: every refusal names the path and says what is wrong; no weights load."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ff_lib.errors import AdapterInvalid
from ff_lib.inference import validate_adapter

LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def base_config(folder: Path, hidden=128, inter=256, heads=4, kv_heads=2, layers=2, vocab=300):
    """A base-model folder holding just config.json (all validation reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers,
        "vocab_size": vocab,
        "max_position_embeddings": 512,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_adapter(folder: Path, base: str, hidden=128, inter=256, kv=64, rank=4, layers=2):
    """A LoRA folder with the tensor names and shapes peft writes for a Llama."""
    folder.mkdir(parents=True, exist_ok=True)
    dims = {
        "q_proj": (hidden, hidden),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (hidden, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    tensors = {}
    for layer in range(layers):
        for name, (fan_in, fan_out) in dims.items():
            group = "self_attn" if name in LAYERS[:4] else "mlp"
            key = f"base_model.model.model.layers.{layer}.{group}.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.zeros(rank, fan_in)
            tensors[f"{key}.lora_B.weight"] = torch.zeros(fan_out, rank)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": list(LAYERS),
        "base_model_name_or_path": base,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def base(tmp_path) -> Path:
    return base_config(tmp_path / "base")


@pytest.fixture
def adapter(tmp_path, base) -> Path:
    return write_adapter(tmp_path / "run" / "adapter", str(base))


def refused(path, base_model=None) -> str:
    check = validate_adapter(path, base_model=base_model)
    assert not check.ok
    assert "\n" not in check.reason
    return check.reason


def test_a_valid_adapter_reports_what_it_is(adapter, base):
    check = validate_adapter(adapter, base_model=str(base))
    assert check.ok, check.reason
    assert check.adapter_dir == str(adapter.resolve())
    assert check.resolved_from is None
    assert check.files == ("adapter_config.json", "adapter_model.safetensors")
    assert check.base_model == str(base)
    assert check.rank == 4
    assert check.target_modules == LAYERS
    assert check.warnings == ()
    assert check.raise_if_invalid() is check


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    assert refused(missing) == f"Adapter folder not found: {missing}"
    with pytest.raises(AdapterInvalid, match="Adapter folder not found"):
        validate_adapter(missing).raise_if_invalid()


def test_a_file_is_not_a_folder(adapter):
    file = adapter / "adapter_config.json"
    assert refused(file).startswith(f"Not a folder: {file}")


def test_permission_denied(adapter, monkeypatch):
    # Tests may run as root, who can read anything: make the listing fail as it would.
    real_listdir = os.listdir

    def listdir(path):
        if Path(path) == adapter:
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    assert refused(adapter).startswith(f"Permission denied reading {adapter}")


def test_empty_folder_is_not_an_adapter(tmp_path):
    (tmp_path / "empty").mkdir()
    reason = refused(tmp_path / "empty")
    assert reason.startswith(f"No adapter_config.json in {(tmp_path / 'empty').resolve()}")
    assert "not a LoRA adapter folder" in reason


def test_full_model_folder_is_named_as_such(base):
    (base / "model.safetensors").write_bytes(b"x" * 16)
    reason = refused(base)
    assert "this looks like a full model, not an adapter" in reason
    assert str(base.resolve()) in reason


def test_config_not_json(adapter):
    (adapter / "adapter_config.json").write_text("{not json")
    reason = refused(adapter)
    assert reason.startswith(f"{adapter.resolve() / 'adapter_config.json'} is not valid JSON")


def test_not_a_lora_config(adapter):
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    reason = refused(adapter)
    assert "is not a LoRA config (peft_type is 'PREFIX_TUNING'" in reason


def test_no_weights_file(adapter):
    (adapter / "adapter_model.safetensors").unlink()
    reason = refused(adapter)
    assert reason == (
        f"No weights file in {adapter.resolve()}: expected adapter_model.safetensors "
        "or adapter_model.bin."
    )


def test_empty_weights(adapter):
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    assert refused(adapter) == (
        f"Weights file is empty: {adapter.resolve() / 'adapter_model.safetensors'}"
    )


@pytest.mark.parametrize("keep", [4, 100, -10])
def test_truncated_weights(adapter, keep):
    weights = adapter / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep])
    reason = refused(adapter)
    assert "truncated" in reason
    assert str(weights.resolve()) in reason


def test_bin_weights_are_accepted(tmp_path, adapter):
    weights = adapter / "adapter_model.safetensors"
    weights.unlink()
    torch.save({"x": torch.zeros(2)}, adapter / "adapter_model.bin")
    assert validate_adapter(adapter).ok
    (adapter / "adapter_model.bin").write_bytes(b"garbage")
    assert "not a torch archive" in refused(adapter)


def test_run_folder_resolves_to_its_adapter(adapter):
    run = adapter.parent
    check = validate_adapter(run)
    assert check.ok
    assert check.adapter_dir == str(adapter.resolve())
    assert check.resolved_from == str(run.resolve())
    assert "adapter found in adapter/" in check.warnings


def test_run_folder_resolves_to_the_newest_checkpoint(tmp_path, base):
    run = tmp_path / "trainer-run"
    for step in (20, 300, 100):
        write_adapter(run / f"checkpoint-{step}", str(base))
    check = validate_adapter(run)
    assert check.ok
    assert check.adapter_dir == str((run / "checkpoint-300").resolve())
    assert check.warnings == ("adapter found in checkpoint-300/ (the newest checkpoint)",)


def test_shape_mismatch_is_refused_before_loading(tmp_path):
    small = base_config(tmp_path / "small-base", hidden=64, inter=128)
    big = base_config(tmp_path / "big-base", hidden=128, inter=256)
    adapter = write_adapter(tmp_path / "a", str(small), hidden=64, inter=128, kv=32)
    assert validate_adapter(adapter).ok  # on its own base
    reason = refused(adapter, base_model=str(big))
    assert reason.startswith(f"Adapter {adapter.resolve()} does not fit base model {big}")
    assert "hidden size 128" in reason
    assert reason.endswith(f"It was trained for {small}.")


def test_rank_mismatch_between_config_and_weights(adapter, base):
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["r"] = 8
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    assert "adapter_config.json says r=8" in refused(adapter, base_model=str(base))


def test_a_different_base_is_a_warning(adapter, tmp_path):
    other = base_config(tmp_path / "other-base", vocab=400)
    check = validate_adapter(adapter, base_model=str(other))
    assert check.ok
    [warning] = [w for w in check.warnings if w.startswith("Adapter was trained for")]
    assert "vocab_size 300 vs 400" in warning


def test_a_moved_base_is_the_same_base_by_config(adapter, base, tmp_path):
    moved = tmp_path / "elsewhere" / "copy-of-the-base"
    moved.parent.mkdir()
    moved.mkdir()
    (moved / "config.json").write_text((base / "config.json").read_text())
    # Both folders here: same config, so the same base, whatever the paths say.
    assert validate_adapter(adapter, base_model=str(moved)).warnings == ()
    # The declared folder is gone: the shapes fit the chosen base, so still no warning.
    (base / "config.json").unlink()
    base.rmdir()
    check = validate_adapter(adapter, base_model=str(moved))
    assert check.ok, check.reason
    assert not any("trained for" in w for w in check.warnings)


def test_config_contradicting_its_weights_is_refused_without_a_base(tmp_path):
    missing = "some-org/not-downloaded-model"
    adapter = write_adapter(tmp_path / "r", missing, rank=4)
    assert validate_adapter(adapter).ok  # nothing to check shapes against: the base is not here
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "r": 16}))
    reason = refused(adapter)
    assert "contradicts its adapter_config.json" in reason
    assert "has rank 4, adapter_config.json says r=16" in reason
    narrow = {**config, "target_modules": ["q_proj", "v_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps(narrow))
    reason = refused(adapter)
    assert "the weights hold base_model.model.model.layers.0.mlp.down_proj.lora_A.weight" in reason
    assert "target_modules is ['q_proj', 'v_proj']" in reason
    regex = {**config, "target_modules": r".*\.(q_proj|k_proj|v_proj|o_proj)"}
    (adapter / "adapter_config.json").write_text(json.dumps(regex))
    assert "mlp.down_proj.lora_A.weight, but target_modules is" in refused(adapter)


def test_a_base_that_is_not_here_is_named(adapter, base, tmp_path):
    check = validate_adapter(adapter, base_model="some-org/not-downloaded-model")
    assert check.ok  # the adapter itself is fine
    assert "some-org/not-downloaded-model is not available offline" in check.base_problem
    # base_config() writes config.json only: a folder without weights cannot answer.
    assert "has no weights" in validate_adapter(adapter).base_problem
    (base / "model.safetensors").write_bytes(b"x")
    assert validate_adapter(adapter).base_problem is None
    gone = tmp_path / "gone"
    assert validate_adapter(adapter, base_model=str(gone)).base_problem == (
        f"Base model folder not found: {gone}."
    )


def test_same_base_by_path_or_quantized_variant(tmp_path):
    real = base_config(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    adapter = write_adapter(tmp_path / "a", str(real))
    assert validate_adapter(adapter, base_model=str(link)).warnings == ()

    hub = write_adapter(tmp_path / "b", "unsloth/Llama-3.2-1B-Instruct-bnb-4bit")
    check = validate_adapter(hub, base_model="meta-llama/Llama-3.2-1B-Instruct")
    assert not any("trained for" in w for w in check.warnings)
    # Not in the local cache: nothing to compare shapes with, and the user is told.
    assert check.ok
    assert check.warnings == (
        "Base model meta-llama/Llama-3.2-1B-Instruct is not available locally: shapes not checked.",
    )


def test_same_base_compares_whole_configs_not_paths(base, tmp_path):
    from ff_lib.inference.base_identity import same_base

    config = json.loads((base / "config.json").read_text())
    copy = tmp_path / "moved" / "renamed-copy"
    copy.mkdir(parents=True)
    (copy / "config.json").write_text(json.dumps({**config, "transformers_version": "9.9"}))
    assert same_base(str(base), str(copy))
    # Same sizes, another model: an instruct variant (other eos) or another context length.
    instruct = tmp_path / "instruct"
    instruct.mkdir()
    (instruct / "config.json").write_text(json.dumps({**config, "eos_token_id": 7}))
    assert not same_base(str(base), str(instruct))


def test_a_passed_check_is_not_repeated_for_the_same_files(adapter, base, monkeypatch):
    from ff_lib.inference import adapters

    assert validate_adapter(adapter, base_model=str(base)).ok
    calls = []
    for name in ("_check_shapes", "_check_against_config"):
        monkeypatch.setattr(adapters, name, lambda *a, name=name: calls.append(name))
    again = validate_adapter(adapter, base_model=str(base))
    assert again.ok and again.rank == 4
    assert calls == []  # the same header, config and base: both checks had passed


def test_a_rewritten_adapter_is_checked_afresh(adapter, base, tmp_path):
    assert validate_adapter(adapter, base_model=str(base)).ok
    # The same path rewritten for a bigger base: a new header, so the shapes are read again.
    write_adapter(adapter, str(base), hidden=64, inter=128, kv=32)
    assert "does not fit base model" in refused(adapter, base_model=str(base))
    write_adapter(adapter, str(base))  # the good weights back: passes again
    assert validate_adapter(adapter, base_model=str(base)).ok
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    assert "adapter_config.json says r=8" in refused(adapter, base_model=str(base))


def test_a_changed_base_is_checked_afresh(adapter, base):
    assert validate_adapter(adapter, base_model=str(base)).ok
    base_config(base, hidden=64, inter=128)  # the base folder now holds a smaller model
    assert "hidden size 64" in refused(adapter, base_model=str(base))


def test_a_header_damaged_in_place_is_refused_after_a_pass(adapter, base):
    weights = adapter / "adapter_model.safetensors"
    assert validate_adapter(adapter, base_model=str(base)).ok
    data = bytearray(weights.read_bytes())
    data[8] = ord("#")  # the header's first byte: the same size, no longer JSON
    weights.write_bytes(bytes(data))
    assert "its header is not valid JSON" in refused(adapter, base_model=str(base))
