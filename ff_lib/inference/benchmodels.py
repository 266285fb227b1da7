"""The bench's models: random-weight bases (the demo's tiny shape, Llama-3.1-8B's shape) whose
end-of-turn rows are zeroed, and random LoRA adapters on all 7 projections, as PEFT files."""

import json
from pathlib import Path

import torch

from ff_lib.inference.benchkit import device, free_memory

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Written into a bench base folder once its end-of-turn rows are zeroed (see silence_eos).
MARKER = "ff_bench.json"

# Llama-3.1-8B's shape (config.json of meta-llama/Llama-3.1-8B), weights random.
LLAMA_8B_SHAPE = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer with exactly `vocab_size` ids ('w5' -> 5), so any id decodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ff_lib.inference.tiny import BOS, EOS, LLAMA3_CHAT_TEMPLATE, PAD, SPECIAL_TOKENS

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab["[UNK]"] = len(vocab)
    for i in range(len(vocab), vocab_size):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token="[UNK]"
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends a reply in the engine: the generation config's and the tokenizer's."""
    ids = []
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and int(item) not in ids:
                ids.append(int(item))
    return ids


def silence_eos(model, tokenizer) -> list[int]:
    """Zero the output rows of the end-of-turn ids: their logit is exactly 0 whatever the input
    (and whatever adapter), so a greedy reply on random weights, where some logit is always
    positive, never ends early and every timed reply has the asked number of tokens."""
    ids = eos_ids(model, tokenizer)
    with torch.no_grad():
        model.get_output_embeddings().weight[ids] = 0
    return ids


def _mark(folder: Path, ids: list[int]) -> None:
    (Path(folder) / MARKER).write_text(json.dumps({"eos_rows_zeroed": ids}) + "\n")


def is_bench_base(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def silence_saved_base(folder: Path) -> None:
    """silence_eos on a saved (small) base folder, written back in place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ff_lib.inference.quiet import quiet_libraries

    with quiet_libraries():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")  # as saved
        tokenizer = AutoTokenizer.from_pretrained(folder)
        ids = silence_eos(model, tokenizer)
        model.save_pretrained(folder)
    _mark(folder, ids)


def build_llama_8b_shape(folder: Path, seed: int = 0) -> Path:
    """Save a random bf16 model of Llama-3.1-8B's shape (built on the GPU when there is one),
    its end-of-turn rows zeroed (silence_eos)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(LLAMA_8B_SHAPE["vocab_size"])
    config = LlamaConfig(
        **LLAMA_8B_SHAPE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    with device():
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    ids = silence_eos(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _mark(folder, ids)
    del model
    free_memory()
    return folder


# --- the bench's models -------------------------------------------------------------------------
DEMO_CORPUS_FILES = ("capitals.jsonl", "pirate.jsonl")


def _demo_corpus() -> list[str]:
    root = Path(__file__).resolve().parent.parent / "demo_data"
    texts = []
    for name in DEMO_CORPUS_FILES:
        path = root / name
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    texts.extend(str(v) for v in json.loads(line).values())
    return texts or ["The capital of France is Paris.", "Arr, hoist the sails!"]


def build_models(model: str, folder: Path, rank: int, seed: int = 0, n_adapters: int = 4):
    """(base folder, {"a0": folder, ...}): a random base of `model` ("demo": the tiny shape on
    the demo's tokenizer; "llama-8b-shape") with its end-of-turn rows zeroed, and `n_adapters`
    random rank-`rank` LoRAs on all 7 projections; folders already built are reused."""
    base = Path(folder) / "base"
    # the tiny model needs large deltas for adapters to change its answers
    b_std = 0.5 if model == "demo" else 0.02
    if not (base / "config.json").exists():
        if model == "demo":
            from ff_lib.inference.tiny import build_tiny_base

            build_tiny_base(base, _demo_corpus())
        else:
            build_llama_8b_shape(base, seed=seed)
    if not is_bench_base(base):
        silence_saved_base(base)
    adapters = {}
    for i in range(n_adapters):
        path = Path(folder) / f"a{i}"
        if not (path / "adapter_config.json").exists():
            build_random_adapter(path, base, rank, seed=i + 1, b_std=b_std)
        adapters[f"a{i}"] = path
    return base, adapters


def build_random_adapter(
    folder: Path, base_folder: Path, rank: int = 16, seed: int = 0, b_std: float = 0.02
) -> Path:
    """A LoRA on all 7 projections with random A and nonzero random B, written as PEFT files."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    cfg = json.loads((Path(base_folder) / "config.json").read_text())
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    head_dim = cfg.get("head_dim") or hidden // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * head_dim
    shapes = {  # (in, out)
        "self_attn.q_proj": (hidden, cfg["num_attention_heads"] * head_dim),
        "self_attn.k_proj": (hidden, kv),
        "self_attn.v_proj": (hidden, kv),
        "self_attn.o_proj": (cfg["num_attention_heads"] * head_dim, hidden),
        "mlp.gate_proj": (hidden, inter),
        "mlp.up_proj": (hidden, inter),
        "mlp.down_proj": (inter, hidden),
    }
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(cfg["num_hidden_layers"]):
        for name, (fan_in, fan_out) in shapes.items():
            key = f"base_model.model.model.layers.{layer}.{name}"
            a = torch.randn(rank, fan_in, generator=gen) / fan_in**0.5
            b = torch.randn(fan_out, rank, generator=gen) * b_std
            tensors[f"{key}.lora_A.weight"] = a.to(torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = b.to(torch.bfloat16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=list(LORA_TARGETS),
        base_model_name_or_path=str(base_folder),
        task_type="CAUSAL_LM",
    ).save_pretrained(folder)
    return folder


def tokenizer_of(base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base))
