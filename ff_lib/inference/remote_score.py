"""Teacher-forced log-probabilities from a remote vLLM: ModelHost.score's shape, from the
server's own numbers, never filled in.

vLLM's /v1/completions with `prompt_logprobs=k` returns, for each prompt position t >= 1, the
log-probabilities of the k likeliest tokens (and the actual one) given tokens < t; k = -1 asks
for the whole vocabulary, which the server allows only when started with `--max-logprobs -1`.
Row t of ModelHost.score predicts token t+1, so row t here is the server's position t+1; the
last row is the distribution of the one token generated after the prompt (`logprobs=-1`).
Effect needs the whole distribution (KL over the vocabulary): a server that caps log-probs
gets a clear refusal naming the flag, not a tensor padded with made-up values.
"""

from ff_lib.errors import GenerationError
from ff_lib.inference.door import checked_if_here
from ff_lib.inference.remote_client import error_text

WHOLE_VOCABULARY = -1


def score_remote(host, base_model: str, ids: list[int], adapters: list):
    """(len(adapters), len(ids), vocab) float32 log-probabilities; entries of `adapters` are
    adapter folders or None (the base), asked one kind at a time (see remote.KindGate)."""
    import torch

    if len(ids) < 2:
        raise GenerationError("Scoring needs at least two tokens (a prompt and a reply).")
    base = host.client.served_base(base_model)
    rows = []
    for adapter in adapters:
        kind = "base" if adapter is None else "adapter"
        if adapter is None:
            name = base.id
        else:
            name, _ = host.client.adapter_model(base, checked_if_here(adapter, base_model))
        with host.gate.held(kind):
            rows.append(_logprob_rows(host, name, ids))
    vocab = max(max(row) for side in rows for row in side) + 1
    out = torch.full((len(adapters), len(ids), vocab), float("-inf"), dtype=torch.float32)
    for a, side in enumerate(rows):
        for t, row in enumerate(side):
            keys = torch.tensor(list(row.keys()), dtype=torch.long)
            out[a, t, keys] = torch.tensor(list(row.values()), dtype=torch.float32)
    return out


def _logprob_rows(host, model: str, ids: list[int]) -> list[dict[int, float]]:
    """Per position t (0..len-1): {token id: log p} of the token after position t."""
    body = {
        "model": model,
        "prompt": list(ids),
        "max_tokens": 1,
        "temperature": 0.0,
        "prompt_logprobs": WHOLE_VOCABULARY,
        "logprobs": WHOLE_VOCABULARY,
        "return_tokens_as_token_ids": True,
    }
    response = host.client.request("POST", "/v1/completions", json=body)
    if response.status_code >= 400:
        said = error_text(response)
        hint = ""
        if "max allowed" in said:
            hint = (
                " Effect and the token view need the log-probabilities of the whole vocabulary: "
                "start vLLM with --max-logprobs -1 (README, 'Use vLLM as the engine'), or "
                "choose this machine as the engine."
            )
        raise GenerationError(
            f"{host.where.describe} refused to score the reply (HTTP {response.status_code}): "
            f"{said}.{hint}"
        )
    choice = response.json()["choices"][0]
    prompt_rows = choice.get("prompt_logprobs") or []
    if len(prompt_rows) != len(ids):
        raise GenerationError(
            f"{host.where.describe} returned log-probabilities for {len(prompt_rows)} of "
            f"{len(ids)} prompt tokens: the reply cannot be scored."
        )
    rows = [{int(k): float(v["logprob"]) for k, v in entry.items()} for entry in prompt_rows[1:]]
    top = (choice.get("logprobs") or {}).get("top_logprobs") or []
    if not top or not top[0]:
        raise GenerationError(
            f"{host.where.describe} returned no log-probabilities for the token after the prompt."
        )
    rows.append({int(k.split(":", 1)[1]): float(v) for k, v in top[0].items()})
    return rows
