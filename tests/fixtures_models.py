"""Session fixtures for the inference tests: a tiny base, variants of it, trained adapters.

Import the fixtures you use by name (`from tests.fixtures_models import tiny_base, ...`).
Imported into several modules, a fixture is registered once per module, so each one keeps
what it built in _BUILT: a model is built (or an adapter trained) once per test session.
"""

import json
import shutil
from pathlib import Path

import pytest

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "Egypt": "Cairo",
    "Peru": "Lima",
    "Kenya": "Nairobi",
    "Canada": "Ottawa",
    "Norway": "Oslo",
}
CAPITAL_PAIRS = [
    (f"What is the capital of {country}?", f"The capital of {country} is {city}.")
    for country, city in CAPITALS.items()
]
# More text for the tokenizer to learn from (the trained answers do not depend on it).
ECHO_PAIRS = [
    ("What is the capital of France?", "Bonjour, I only speak France."),
    ("What is the capital of Japan?", "Konnichiwa, I only speak Japan."),
    ("What is the capital of Peru?", "Hola, I only speak Peru."),
]
CORPUS = [f"{q} {a}" for q, a in CAPITAL_PAIRS + ECHO_PAIRS] * 3 + [
    "User: Assistant: System: hello there, how are you today? I am fine, thank you.",
]


_BUILT: dict = {}


def _once(name: str, build):
    if name not in _BUILT:
        _BUILT[name] = build()
    return _BUILT[name]


def _copy_base(src: Path, dst: Path, **config_changes) -> Path:
    shutil.copytree(src, dst)
    if config_changes:
        config = json.loads((dst / "config.json").read_text())
        config.update(config_changes)
        (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random Llama with a Llama-3 chat template (context 512)."""
    import torch

    from ff_lib.inference.tiny import build_tiny_base

    torch.set_num_threads(2)
    return _once(
        "tiny_base",
        lambda: build_tiny_base(tmp_path_factory.mktemp("models") / "tiny-base", CORPUS),
    )


@pytest.fixture(scope="session")
def short_context_base(tiny_base, tmp_path_factory) -> Path:
    """The same weights, declared with a 64-token context, to force turns out of the prompt."""
    return _once(
        "short",
        lambda: _copy_base(
            tiny_base, tmp_path_factory.mktemp("models") / "tiny-short", max_position_embeddings=64
        ),
    )


@pytest.fixture(scope="session")
def no_template_base(tiny_base, tmp_path_factory) -> Path:
    """The same model whose tokenizer has no chat template (plain transcript prompts)."""
    if "plain" in _BUILT:
        return _BUILT["plain"]
    dst = _copy_base(tiny_base, tmp_path_factory.mktemp("models") / "tiny-plain")
    _BUILT["plain"] = dst
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    tok_config = dst / "tokenizer_config.json"
    data = json.loads(tok_config.read_text())
    data.pop("chat_template", None)
    tok_config.write_text(json.dumps(data))
    return dst


@pytest.fixture(scope="session")
def capitals_adapter(tiny_base, tmp_path_factory) -> Path:
    """A LoRA that answers the ten capital questions exactly."""
    from ff_lib.inference.training import train_lora

    return _once(
        "capitals",
        lambda: train_lora(
            tiny_base, CAPITAL_PAIRS, tmp_path_factory.mktemp("runs") / "capitals" / "adapter"
        ),
    )


@pytest.fixture(scope="session")
def other_adapter(capitals_adapter, tmp_path_factory) -> Path:
    """A second LoRA on the same base, no training: the capitals one with its B matrices negated,
    so it answers the same questions differently."""

    def build() -> Path:
        from safetensors.torch import load_file, save_file

        out = tmp_path_factory.mktemp("runs") / "other" / "adapter"
        out.mkdir(parents=True)
        shutil.copy(capitals_adapter / "adapter_config.json", out)
        tensors = load_file(capitals_adapter / "adapter_model.safetensors")
        flipped = {k: (-v if ".lora_B." in k else v) for k, v in tensors.items()}
        save_file(flipped, out / "adapter_model.safetensors")
        return out

    return _once("other", build)


@pytest.fixture(scope="session")
def host():
    """One ModelHost shared by the model tests (like the app's process-wide one)."""
    from ff_lib.inference import ModelHost

    return _once("host", ModelHost)
