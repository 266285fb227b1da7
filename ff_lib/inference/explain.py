"""Why this answer? A stored reply teacher-forced under its adapter and under the base alone.

Which tokens: the prompt is `encode(prompt_text)` (the exact text the model saw, as the engine
encodes it), the reply is its stored text encoded on its own (`encode(reply_text)`: the reply's
text tokens as the tokenizer encodes them, never merged with the prompt across the boundary),
plus the end-of-turn token when the reply ended there (it was chosen too). The token ids
generated are not stored with a reply, so this re-encoding is what is scored; `round_trip` says
whether it decodes back to the stored text exactly. For a greedy reply of the demo it is the
sequence generated (tests/test_explain.py checks it against `measure_effect`).

Per reply position: log p(token) under the adapter and under the base, each side's top-k
alternatives, and whether the base's argmax differs from the adapter's. `changed_share` is
changed positions / reply positions: the definition of effect.py's `changed_token_share`.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import InvalidInput
from ff_lib.inference.host import ModelHost
from ff_lib.inference.prompts import encode

TOP_K = 5
DIGITS = 4  # log-probabilities are rounded to this many decimals
BASE_ONLY = "This reply came from the base model alone (no adapter): there is nothing to explain."


@dataclass(frozen=True)
class TokenView:
    """One reply position: its text, its log-probability on each side, each side's top-k."""

    text: str
    logprob_adapter: float
    logprob_base: float
    top_adapter: list  # [[text, logprob], ...], best first
    top_base: list
    changed: bool  # the base's argmax differs from the adapter's

    @property
    def delta(self) -> float:
        """log p(adapter) - log p(base): > 0 where the adapter made this token likelier."""
        return self.logprob_adapter - self.logprob_base


@dataclass(frozen=True)
class ReplyExplanation:
    """A reply, token by token, under its adapter and under the base (one batched forward)."""

    tokens: tuple[TokenView, ...]
    changed_share: float  # 0..1: changed positions / positions
    changed: int
    positions: int  # reply tokens scored (the end of turn included when the reply ended there)
    quantization: str  # what the base was scored as ("float32", "bf16", ...)
    round_trip: bool  # the re-encoded reply decodes back to the stored text exactly
    note: str = ""  # what the user should know (scored under another quantization than generated)

    def summary(self) -> str:
        """'the base would have picked another token at 12 of 17 positions (71%)'."""
        share = f" ({self.changed_share:.0%})" if self.positions else ""
        return (
            f"the base would have picked another token at {self.changed} of "
            f"{self.positions} positions{share}"
        )

    def as_dict(self) -> dict:
        """The `explain --json` document: tokens, changed_share, and the figures beside them."""
        return {
            "tokens": [
                {
                    "text": t.text,
                    "logprob_adapter": t.logprob_adapter,
                    "logprob_base": t.logprob_base,
                    "top_adapter": t.top_adapter,
                    "top_base": t.top_base,
                    "changed": t.changed,
                }
                for t in self.tokens
            ],
            "changed_share": self.changed_share,
            "changed": self.changed,
            "positions": self.positions,
            "quantization": self.quantization,
            "round_trip": self.round_trip,
            "note": self.note,
            "summary": self.summary(),
        }


def explain_reply(
    host: ModelHost,
    base_model: str,
    adapter_dir,
    prompt_text: str,
    reply_text: str,
    top_k: int = TOP_K,
    *,
    end_of_turn: bool = False,
    quantization: str = "auto",
) -> ReplyExplanation:
    """The reply teacher-forced after `prompt_text` under the adapter and the base, one forward.

    `end_of_turn`: the reply ended with the end-of-turn token (finish_reason 'eos'); it is then
    scored as the last position, as measure_effect scores it.
    """
    if adapter_dir is None:
        raise InvalidInput(BASE_ONLY)
    if not prompt_text:
        raise InvalidInput("No prompt text recorded for this reply: it cannot be rebuilt.")
    if not 1 <= top_k <= 20:
        raise InvalidInput(f"top_k must be between 1 and 20 (got {top_k}).")
    engine = host.load_base(base_model, quantization)
    tokenizer = engine.tokenizer
    prompt_ids = encode(tokenizer, prompt_text)
    reply_ids = encode(tokenizer, reply_text)
    round_trip = tokenizer.decode(reply_ids, skip_special_tokens=True) == reply_text
    if end_of_turn and engine.eos_token_ids:
        reply_ids.append(engine.eos_token_ids[0])
    if not reply_ids:
        raise InvalidInput("This reply has no tokens: there is nothing to explain.")
    logits = host.score(base_model, prompt_ids + reply_ids, [Path(adapter_dir), None], quantization)
    # Logits at position t predict token t+1: the reply is predicted from len(prompt)-1 on.
    start = len(prompt_ids) - 1
    tokens = _token_views(tokenizer, logits[:, start : start + len(reply_ids)], reply_ids, top_k)
    changed = sum(t.changed for t in tokens)
    return ReplyExplanation(
        tokens=tokens,
        changed_share=round(changed / len(tokens), DIGITS),
        changed=changed,
        positions=len(tokens),
        quantization=engine.quantization.label,
        round_trip=round_trip,
    )


def _token_views(tokenizer, logits, reply_ids: list[int], top_k: int) -> tuple[TokenView, ...]:
    """logits: (2, len(reply_ids), vocab), adapter first."""
    import torch

    log_p = torch.log_softmax(logits.float(), dim=-1)
    ids = torch.tensor(reply_ids, device=log_p.device)
    chosen = log_p.gather(-1, ids.view(1, -1, 1).expand(2, -1, 1)).squeeze(-1).cpu().tolist()
    top_lp, top_ids = (t.cpu().tolist() for t in log_p.topk(top_k, dim=-1))
    argmax = log_p.argmax(dim=-1).cpu()
    changed = (argmax[0] != argmax[1]).tolist()
    texts = _pieces(tokenizer, reply_ids)
    names: dict[int, str] = {}

    def top(side: int, i: int) -> list:
        out = []
        for tok, lp in zip(top_ids[side][i], top_lp[side][i], strict=True):
            if tok not in names:
                names[tok] = tokenizer.decode([tok], skip_special_tokens=False)
            out.append([names[tok], round(lp, DIGITS)])
        return out

    return tuple(
        TokenView(
            text=texts[i],
            logprob_adapter=round(chosen[0][i], DIGITS),
            logprob_base=round(chosen[1][i], DIGITS),
            top_adapter=top(0, i),
            top_base=top(1, i),
            changed=bool(changed[i]),
        )
        for i in range(len(reply_ids))
    )


def _pieces(tokenizer, ids: list[int]) -> list[str]:
    """Each token's share of the decoded text, so that the pieces join to the reply (a character
    split over several byte tokens goes to the token that completes it); a special token (the
    end of turn) shows as itself."""
    pieces, before, last = [], "", None
    for i in range(len(ids)):
        if ids[i] in tokenizer.all_special_ids:
            pieces.append(tokenizer.decode([ids[i]], skip_special_tokens=False))
            continue
        last = i
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(before):
            pieces.append("")  # an incomplete character: shown with the token that ends it
            continue
        pieces.append(text[len(before) :])
        before = text
    full = tokenizer.decode(ids, skip_special_tokens=True)
    if last is not None and full.startswith(before):
        pieces[last] += full[len(before) :]  # a reply that really ends in U+FFFD keeps it
    return pieces


def unexplainable_reason(role: str, content: str, status: str, meta: dict) -> str:
    """Why a stored message cannot be explained ('' when it can): the message's own fields."""
    if role != "assistant":
        return "This is a user message; choose a reply (the message after it)."
    if not meta.get("adapter"):
        return BASE_ONLY
    if status == "streaming":
        return "This reply is still being written: explain it once it has finished."
    if not content:
        return "This reply has no text: there is nothing to explain."
    if not meta.get("prompt_text") or not meta.get("base_model"):
        return "This reply does not record the prompt the model saw, so it cannot be rebuilt."
    return ""


def explain_stored(
    host: ModelHost, role: str, content: str, status: str, meta: dict, top_k: int = TOP_K
) -> ReplyExplanation:
    """explain_reply for a stored message (its meta as Reply.as_meta wrote it); InvalidInput
    with the reason when it cannot be explained."""
    reason = unexplainable_reason(role, content, status, meta)
    if reason:
        raise InvalidInput(reason)
    explanation = explain_reply(
        host,
        meta["base_model"],
        meta["adapter"],
        meta["prompt_text"],
        content,
        top_k,
        end_of_turn=meta.get("finish_reason") == "eos",
    )
    generated_as = meta.get("quantization")
    if generated_as and generated_as != explanation.quantization:
        note = (
            f"Scored with the base as {explanation.quantization}; the reply was generated with "
            f"it as {generated_as}, so the figures may differ slightly from the generation's."
        )
        explanation = dataclasses.replace(explanation, note=note)
    return explanation
