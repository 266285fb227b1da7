"""Next tokens for a batch of rows, each with its own settings and seed; log-probabilities."""

import torch

from ff_lib.inference.ops import repetition_penalized
from ff_lib.inference.scheduler import TokenChoice
from ff_lib.inference.settings import GenerationSettings


class RowSampler:
    """Per-row sampling state kept beside the KV cache rows: tokens seen, generators, settings.

    Mirrors transformers' order: repetition penalty, then temperature, top-k, top-p. Sampling
    uses the exponential trick (argmax p / q, q ~ Exp(1)) with each row's own generator, so a
    seeded row draws the same tokens whatever its neighbours are.
    """

    def __init__(self, max_rows: int, vocab: int, device):
        self.vocab, self.device = vocab, device
        self.seen = torch.zeros(max_rows, vocab, dtype=torch.bool, device=device)
        # Each row's repetition penalty on the device, for the decode step's greedy tail.
        self.penalty = torch.ones(max_rows, dtype=torch.float32, device=device)
        self.settings: list[GenerationSettings | None] = [None] * max_rows
        self.generators: list[torch.Generator | None] = [None] * max_rows
        self.logprobs: list[int | None] = [None] * max_rows

    def warm_up(self) -> None:
        """Choose one token on row 0 greedily and one with the default preset's sampling
        (row 0's state is reset by the next start): the kernels a first reply's first token
        needs are loaded before it."""
        for settings in (GenerationSettings(temperature=0.0), GenerationSettings()):
            self.start(0, [0], settings, 0, None)
            self.choose(torch.zeros(1, self.vocab, device=self.device), [0])

    def start(self, row: int, prompt_ids: list[int], settings, seed, logprobs: int | None):
        """Begin a reply on `row`: the prompt counts as seen for the repetition penalty."""
        self.seen[row].zero_()
        self.seen[row, torch.tensor(prompt_ids, device=self.device)] = True
        self.penalty[row] = float(settings.repetition_penalty)
        self.settings[row] = settings
        self.logprobs[row] = logprobs
        gen = None
        if settings.sampling:
            gen = torch.Generator(device=self.device).manual_seed(int(seed))
        self.generators[row] = gen

    def move(self, src: int, dst: int) -> None:
        self.seen[dst] = self.seen[src]
        self.penalty[dst] = self.penalty[src]
        for table in (self.settings, self.generators, self.logprobs):
            table[dst], table[src] = table[src], None

    def choose(self, logits: torch.Tensor, rows: list[int]) -> list[TokenChoice]:
        """Next token for each of `rows` from float32 logits (len(rows), vocab)."""
        settings = [self.settings[r] for r in rows]
        index = torch.tensor(rows, device=self.device)
        scores = self._penalize(logits, index, settings)
        tokens = scores.argmax(-1)
        sampled = [i for i, s in enumerate(settings) if s.sampling]
        if sampled:
            tokens = self._sample(scores, tokens, sampled, settings, rows)
        self.seen[index, tokens] = True
        choices = [TokenChoice(int(t)) for t in tokens.tolist()]
        wanted = [i for i, r in enumerate(rows) if self.logprobs[r] is not None]
        if wanted:
            self._attach_logprobs(logits, tokens, wanted, rows, choices)
        return choices

    def _penalize(self, logits, index, settings) -> torch.Tensor:
        penalties = [s.repetition_penalty for s in settings]
        if all(p == 1.0 for p in penalties):
            return logits
        pen = torch.tensor(penalties, device=logits.device, dtype=logits.dtype)[:, None]
        return repetition_penalized(logits, self.seen.index_select(0, index), pen)

    def _sample(self, scores, tokens, sampled, settings, rows) -> torch.Tensor:
        sub = scores[sampled]
        temps = torch.tensor([settings[i].temperature for i in sampled], device=sub.device)
        # Shifted to the row's best first: a tiny temperature then sends the others to -inf
        # instead of every logit to inf (whose softmax is NaN). The same distribution.
        sub = (sub - sub.amax(-1, keepdim=True)) / temps[:, None]
        top_k = [settings[i].top_k for i in sampled]
        if any(top_k):
            kmax = min(max(top_k), sub.shape[-1])
            values = torch.topk(sub, kmax).values
            ks = torch.tensor([min(k, kmax) if k else kmax for k in top_k], device=sub.device)
            kth = values.gather(1, (ks - 1)[:, None])
            off = torch.tensor([not k for k in top_k], device=sub.device)[:, None]
            sub = sub.masked_fill((sub < kth) & ~off, float("-inf"))
        top_p = torch.tensor([settings[i].top_p for i in sampled], device=sub.device)
        if bool((top_p < 1.0).any()):
            ordered, order = torch.sort(sub, descending=False)
            cumulative = ordered.softmax(-1).cumsum(-1)
            remove = cumulative <= (1 - top_p)[:, None]
            remove[:, -1] = False  # keep at least the most likely token
            sub = sub.scatter(-1, order, ordered.masked_fill(remove, float("-inf")))
        probs = sub.softmax(-1)
        noise = torch.empty_like(probs)
        for j, i in enumerate(sampled):
            noise[j].exponential_(1, generator=self.generators[rows[i]])
        picked = (probs / noise).argmax(-1)
        tokens = tokens.clone()
        tokens[torch.tensor(sampled, device=tokens.device)] = picked
        return tokens

    def _attach_logprobs(self, logits, tokens, wanted, rows, choices) -> None:
        # The model's own distribution (before penalty and temperature), as OpenAI reports it.
        logp = torch.log_softmax(logits[wanted], dim=-1)
        chosen = logp.gather(1, tokens[wanted][:, None])[:, 0].tolist()
        kmax = max(self.logprobs[rows[i]] for i in wanted)
        top_vals, top_ids = (None, None)
        if kmax:
            top = torch.topk(logp, kmax)
            top_vals, top_ids = top.values.tolist(), top.indices.tolist()
        for j, i in enumerate(wanted):
            choices[i].logprob = chosen[j]
            k = self.logprobs[rows[i]]
            if k and top_ids is not None:
                choices[i].top = list(zip(top_ids[j][:k], top_vals[j][:k], strict=True))
