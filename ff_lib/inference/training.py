"""A small LoRA trainer: enough to make demo and test adapters that memorize Q/A pairs."""

import math
from collections.abc import Callable
from pathlib import Path

from ff_lib.inference.quiet import quiet_libraries

# All seven linear projections of a Llama block: q/v alone memorizes far less on tiny models.
LLAMA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Tokens in the label tensor that carry no loss (the prompt part of each example).
IGNORE_INDEX = -100


def chat_messages(prompt: str, system_prompt: str | None = None) -> list[dict]:
    """The message list a single-turn question becomes (system prompt first when set)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    return messages


def encode_pair(tokenizer, prompt: str, response: str, system_prompt: str | None = None):
    """(input_ids, labels) for one pair; loss only on the response and its end-of-turn token."""
    messages = chat_messages(prompt, system_prompt)
    if tokenizer.chat_template:
        prompt_text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    else:
        from ff_lib.inference.prompts import render_transcript

        prompt_text = render_transcript(messages)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response.strip(), add_special_tokens=False)["input_ids"]
    response_ids = response_ids + [tokenizer.eos_token_id]
    return prompt_ids + response_ids, [IGNORE_INDEX] * len(prompt_ids) + response_ids


def train_lora(
    base_dir: Path,
    pairs: list[tuple[str, str]],
    out_dir: Path,
    *,
    rank: int = 8,
    alpha: int = 16,
    lr: float = 1e-2,
    steps: int = 300,
    seed: int = 0,
    system_prompt: str | None = None,
    on_step: Callable[[int, int, float], object] | None = None,
) -> Path:
    """Train a LoRA on all 7 projections of the base in `base_dir`; save it to `out_dir`.

    Full-batch AdamW on the chat-templated pairs, float32 on the CPU (or the GPU when there is
    one). Returns `out_dir`, which then holds adapter_config.json + adapter_model.safetensors.
    `on_step(step, steps, loss)` is called after each step (step counts from 1).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not pairs:
        raise ValueError("train_lora needs at least one (prompt, response) pair")
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(LLAMA_TARGET_MODULES),
        task_type="CAUSAL_LM",
    )
    with quiet_libraries():
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
        model = get_peft_model(model, config)

    encoded = [encode_pair(tokenizer, p, r, system_prompt) for p, r in pairs]
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, lab) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        attention[row, : len(ids)] = 1
    input_ids, labels, attention = input_ids.to(device), labels.to(device), attention.to(device)

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0
    )
    # Full-batch steps at 1e-2 oscillate without warmup; a short warmup and a cosine decay
    # let the small model settle on exact answers.
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        ),
    )
    model.train()
    for step in range(1, steps + 1):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step, steps, float(loss.detach()))
    model.eval()
    # A local folder as the declared base: validation can then check shapes against it.
    model.peft_config["default"].base_model_name_or_path = str(base_dir.resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return out_dir
