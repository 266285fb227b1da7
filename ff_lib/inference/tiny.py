"""Tiny Llama-architecture base models built from a config and a trained BPE (no download)."""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ff_lib.inference.quiet import quiet_libraries

# Llama-3 style: header tokens around the role, <|eot_id|> closes each turn.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

BOS, EOS, PAD = "<|begin_of_text|>", "<|eot_id|>", "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, PAD, "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>")


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny base; small enough to train a LoRA on 2 CPU cores in seconds."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    seed: int = 0
    # Weight of the final norm, which multiplies every logit. At 1 a random Llama's logits span
    # about +-3, so even a LoRA that has learned an answer leaves it a few percent of the
    # probability and sampling at temperature 0.7 is noise; a larger scale lets it be peaked.
    logit_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.logit_scale <= 0:
            raise ValueError("logit_scale must be positive")


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024, chat_template: bool = True):
    """A byte-level BPE trained on `corpus`, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD
    )
    if chat_template:
        fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def build_tiny_base(
    folder: str | Path,
    corpus: Iterable[str],
    spec: TinyModelSpec | None = None,
    chat_template: bool = True,
) -> Path:
    """Save a random-weight LlamaForCausalLM and its tokenizer as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = spec or TinyModelSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus, spec.vocab_size, chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.fill_(spec.logit_scale)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    with quiet_libraries():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder
