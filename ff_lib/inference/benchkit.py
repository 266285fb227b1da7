"""Random-weight bases and adapters, and device readings, for `python -m ff_lib bench`."""

import gc
import json
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

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


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def versions() -> dict[str, str]:
    import platform

    import peft
    import transformers

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    try:
        import bitsandbytes

        found["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        found["bitsandbytes"] = "not installed"
    return found


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def build_llama_8b_shape(folder: Path, seed: int = 0) -> Path:
    """Save a random bf16 model of Llama-3.1-8B's shape (built on the GPU when there is one)."""
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
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    free_memory()
    return folder


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


def load_base(folder: Path, quantization: str = "none"):
    """(model, tokenizer) the way the reference app loads: from_pretrained on a local folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict = {"dtype": torch.float32}
    if torch.cuda.is_available():
        kwargs = {"dtype": torch.bfloat16, "device_map": {"": 0}}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.eval()
    return model, AutoTokenizer.from_pretrained(folder)


def attach_adapters(model, adapters: dict[str, Path]):
    """A PeftModel with every adapter loaded by name, the first one active."""
    from peft import PeftModel

    names = list(adapters)
    peft_model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(adapters[name], adapter_name=name)
    peft_model.set_adapter(names[0])
    peft_model.eval()
    return peft_model


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float:
    """Peak device memory since reset_peak (CUDA), else the process's peak resident size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def decode_bytes_per_token(model) -> int:
    """Weight bytes one decode step reads: every parameter and buffer, 4-bit storage and its
    scales as stored, except an untied input embedding table (one row of it is read)."""
    embed = model.get_input_embeddings().weight.data_ptr()
    out = model.get_output_embeddings()
    tied = out is not None and out.weight.data_ptr() == embed
    total, seen = 0, set()
    for tensor in [*model.parameters(), *model.buffers()]:
        ptr = tensor.data_ptr()
        if ptr in seen or (ptr == embed and not tied):
            continue
        seen.add(ptr)
        total += tensor.numel() * tensor.element_size()
        state = getattr(tensor, "quant_state", None)
        if state is not None and getattr(state, "absmax", None) is not None:
            total += state.absmax.numel() * state.absmax.element_size()
    return total


def logit_gap(model, ids: list[int], prefix: list[int], ours: int, theirs: int) -> dict:
    """At a greedy disagreement: the plain forward's logit gap between its pick and ours, next
    to the logits' spread (a gap far below the spread is a bf16 near-tie, not a bug)."""
    dev = model.get_input_embeddings().weight.device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + prefix], device=dev)).logits[0, -1].float()
    return {
        "gap": float(logits[theirs] - logits[ours]),
        "logit_std": float(logits.std()),
    }


def weight_drift(weight, before) -> dict:
    """How far a base weight moved from `before` (fraction of elements changed, max |diff|)."""
    if weight.dtype != before.dtype:  # quantized: never merged
        return {"changed_fraction": 0.0, "max_abs_diff": 0.0}
    diff = (weight.detach().float() - before.float()).abs()
    return {
        "changed_fraction": float((diff > 0).float().mean()),
        "max_abs_diff": float(diff.max()),
    }


def copy_bandwidth_gb_s(size_gib: float = 1.0, repeats: int = 20) -> float | None:
    """Device-to-device copy rate, bytes read + written per second (GB/s); None off CUDA."""
    if not torch.cuda.is_available():
        return None
    n = int(size_gib * 2**30)
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    del src, dst
    free_memory()
    return 2 * n / statistics.median(times) / 1e9


@dataclass
class PlainRun:
    """One reference `generate` call."""

    tokens: list[int]
    seconds: float


def plain_generate(model, ids: list[int], new_tokens: int, streamer=None, penalty=1.0):
    """Greedy `generate` forced to `new_tokens` tokens (the reference path)."""
    dev = model.get_input_embeddings().weight.device
    inp = torch.tensor([ids], device=dev)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=inp,
            attention_mask=torch.ones_like(inp),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            repetition_penalty=penalty,
            pad_token_id=0,
            streamer=streamer,
        )
    sync()
    return PlainRun(out[0, len(ids) :].tolist(), time.perf_counter() - t0)


def stream_plain_generate(model, tokenizer, ids: list[int], new_tokens: int) -> float:
    """Seconds for the reference's streamed reply: generate in a thread + TextIteratorStreamer."""
    import threading

    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, timeout=600)
    errors: list[BaseException] = []

    def work():
        try:
            plain_generate(model, ids, new_tokens, streamer=streamer)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)
            streamer.end()

    t0 = time.perf_counter()
    thread = threading.Thread(target=work)
    thread.start()
    for _ in streamer:
        pass
    thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0
