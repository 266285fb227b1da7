"""The reply record: one answer, its figures, and everything needed to reproduce it."""

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplyStats:
    """Figures of one reply. tokens_per_s = new_tokens / total_s (prefill included)."""

    prompt_tokens: int
    new_tokens: int  # generated tokens, the end-of-turn token not counted
    ttft_s: float | None  # time to first token, from the start of decoding
    tokens_per_s: float
    total_s: float


@dataclass(frozen=True)
class Reply:
    """One answer and everything needed to explain or reproduce it."""

    text: str
    stats: ReplyStats
    adapter: str | None  # the adapter folder used, None for a base-model answer
    adapter_name: str | None
    base_model: str
    quantization: str  # "float32" | "bf16" | "4-bit NF4"
    describe: str  # "float32 on CPU", "4-bit NF4 on cuda:0"
    settings: dict
    seed: int | None  # the seed actually used (drawn when settings.seed was None)
    prompt_text: str  # the exact text the model saw
    template: str  # "chat_template" | "transcript"
    dropped_turns: int
    truncated_tokens: int
    max_new_tokens: int  # the limit used: settings.max_new_tokens unless the context was short
    stopped: bool  # the reader stopped the stream before the end
    finish_reason: str  # "eos" | "length" | "stopped"
    # which decode loop answered ("batched", "batched+graphs", "batched+graphs+kernels")
    decoder: str = "batched"
    # Provenance, so the answer can be reproduced later: which weights, which base files.
    adapter_weights: str | None = None  # the weights file read (None for a base answer)
    adapter_sha256: str | None = None  # SHA-256 of that file
    base_source: str = ""  # the resolved local folder, or the Hugging Face id loaded
    base_revision: str | None = None  # the hub commit of a cached model, None for a folder
    quantization_reason: str = ""  # why this quantization was chosen ("asked", "bf16 fits ...")
    # Per token (when log-probabilities were asked for): {"token", "text", "logprob", "top"}.
    tokens: tuple = ()
    # Which engine answered: "in-process", or "vLLM at HOST:PORT" for a remote one.
    engine: str = "in-process"
    engine_note: str = ""  # what the remote engine did for us ("validation is the server's")

    @property
    def notice(self) -> str:
        """What the user should know about how the prompt was fitted ('' when nothing)."""
        parts = []
        if self.dropped_turns:
            s = "" if self.dropped_turns == 1 else "s"
            parts.append(
                f"{self.dropped_turns} earlier message{s} dropped to fit the model's context."
            )
        if self.truncated_tokens:
            parts.append(
                f"The start of your message was cut ({self.truncated_tokens} tokens) to fit."
            )
        asked = self.settings.get("max_new_tokens", self.max_new_tokens)
        if self.finish_reason == "length" and self.max_new_tokens < asked:  # the cut mattered
            parts.append(
                f"Reply limited to {self.max_new_tokens} new tokens by the model's context."
            )
        if self.engine_note:
            parts.append(f"{self.engine}: {self.engine_note}.")
        return " ".join(parts)

    def as_meta(self) -> dict:
        """Plain JSON values for Message.meta: settings, figures and provenance.

        The exact prompt text the model saw (after the chat template) is kept, so an export
        holds everything needed to reproduce the answer; the reply text is the message itself.
        """
        meta = dataclasses.asdict(self)
        meta.pop("text")
        meta.pop("tokens")  # per-token log-probabilities are asked for, not stored by default
        meta["notice"] = self.notice
        return meta
