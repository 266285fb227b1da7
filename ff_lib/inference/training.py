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


def _lora_model(base_dir: Path, rank: int, alpha: int, device: str):
    """(tokenizer, the float32 base with fresh LoRA layers on all 7 projections)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
        return tokenizer, get_peft_model(model, config)


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
    save_steps: int | None = None,
    logging_steps: int = 10,
) -> Path:
    """Train a LoRA on all 7 projections of the base in `base_dir`; save it to `out_dir`.

    Full-batch AdamW on the chat-templated pairs, float32 on the CPU (or the GPU when there is
    one). Returns `out_dir`, which then holds adapter_config.json + adapter_model.safetensors.
    `on_step(step, steps, loss)` is called after each step (step counts from 1).

    Like the HF Trainer, the mean train loss of every `logging_steps` steps is logged, and every
    `save_steps` steps (before the last) the adapter is saved to `checkpoint-N/` beside
    `out_dir`; each checkpoint and the final adapter get a `trainer_state.json` (transformers'
    TrainerState). Saving reads the weights only, so the final adapter is the same either way.
    """
    import torch

    if not pairs:
        raise ValueError("train_lora needs at least one (prompt, response) pair")
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer, model = _lora_model(base_dir, rank, alpha, device)
    input_ids, labels, attention = _full_batch(tokenizer, pairs, system_prompt, device)
    optimizer, schedule = _optimizer(model, lr, steps)
    # A local folder as the declared base: validation can then check shapes against it.
    model.peft_config["default"].base_model_name_or_path = str(base_dir.resolve())
    log = _TrainLog(steps, logging_steps, save_steps, len(pairs))
    model.train()
    for step in range(1, steps + 1):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        learning_rate = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.record(step, float(loss.detach()), float(grad_norm), learning_rate)
        if save_steps and step % save_steps == 0 and step < steps:
            log.save(model, out_dir.parent / f"checkpoint-{step}", step)
        if on_step is not None:
            on_step(step, steps, float(loss.detach()))
    model.eval()
    log.save(model, out_dir, steps)
    return out_dir


def _full_batch(tokenizer, pairs, system_prompt, device):
    """(input_ids, labels, attention mask) of all pairs, right-padded to the longest."""
    import torch

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
    return input_ids.to(device), labels.to(device), attention.to(device)


def _optimizer(model, lr: float, steps: int):
    """AdamW on the LoRA weights and its warmup + cosine schedule."""
    import torch

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
    return optimizer, schedule


class _TrainLog:
    """The HF Trainer's bookkeeping: a loss entry every `logging_steps`, a TrainerState saved
    (as trainer_state.json) with each checkpoint and with the final adapter."""

    def __init__(self, steps: int, logging_steps: int, save_steps: int | None, batch: int):
        self.steps, self.logging_steps, self.save_steps = steps, logging_steps, save_steps
        self.batch = batch
        self.history: list[dict] = []
        self._losses: list[float] = []

    def record(self, step: int, loss: float, grad_norm: float, learning_rate: float) -> None:
        self._losses.append(loss)
        if step % self.logging_steps == 0 or step == self.steps:
            mean = sum(self._losses) / len(self._losses)
            self._losses = []
            # Full batch: one step is one epoch.
            self.history.append({"epoch": float(step), "grad_norm": round(grad_norm, 4),
                                 "learning_rate": learning_rate, "loss": round(mean, 4),
                                 "step": step})  # fmt: skip

    def save(self, model, folder: Path, step: int) -> None:
        from transformers import TrainerState

        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        state = TrainerState(
            epoch=float(step),
            global_step=step,
            max_steps=self.steps,
            logging_steps=self.logging_steps,
            save_steps=self.save_steps or self.steps,
            train_batch_size=self.batch,
            num_train_epochs=self.steps,
            log_history=[dict(entry) for entry in self.history if entry["step"] <= step],
        )
        state.save_to_json(str(folder / "trainer_state.json"))
