"""Blind A/B: two models answer one prompt in one batched pass, shown as A and B with the sides
shuffled per prompt; the user's verdicts make a win-rate tally (Wilson 95 % intervals) and
export as DPO preference pairs (TRL's standard preference format: prompt, chosen, rejected).

Win rate = wins / (wins + losses): ties and "both bad" are left out of it (and out of the DPO
export, which needs a winner), and counted beside it.
"""

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ff_lib.compare import answer_together
from ff_lib.data.votes import VERDICTS, Vote
from ff_lib.errors import InvalidInput
from ff_lib.runs import RunCheck

VERDICT_LABELS = {"a": "A better", "b": "B better", "tie": "Tie", "both_bad": "Both bad"}
DPO_COLUMNS = ("prompt", "chosen", "rejected")
EXPORT_FORMATS = ("dpo",)
Z95 = 1.959963984540054  # the standard normal quantile of 0.975
TALLY_RULE = (
    "Win rate = wins ÷ (wins + losses); ties and “both bad” are left out of it (counted apart). "
    "Interval: 95 % Wilson score interval."
)
assert set(VERDICT_LABELS) == set(VERDICTS)


def model_key(check: RunCheck) -> str:
    """Who answered, as one stable text: 'base' or 'run:ID'."""
    return "base" if check.run_id is None else f"run:{check.run_id}"


def model_record(check: RunCheck) -> dict:
    """What a vote stores of one side's model."""
    label = check.label if check.run_id is None else f"{check.label} (run {check.run_id})"
    return {"key": model_key(check), "label": label, "run_id": check.run_id,
            "adapter": check.adapter_dir, "base_model": check.base_model}  # fmt: skip


@dataclass(frozen=True)
class BlindPair:
    """One prompt answered by two models, as shown: A first. swapped: A is the second model."""

    prompt: str
    answer_a: str
    answer_b: str
    model_a: dict
    model_b: dict
    swapped: bool
    meta_a: dict = field(default_factory=dict)
    meta_b: dict = field(default_factory=dict)

    def vote_fields(self, verdict: str) -> dict:
        """The fields of Workspace.add_vote for this pair and `verdict`."""
        if verdict not in VERDICTS:
            raise InvalidInput(f"Unknown verdict {verdict!r}: use one of {', '.join(VERDICTS)}.")
        return {**self.__dict__, "verdict": verdict}


def check_pair(sides: Sequence[RunCheck]) -> None:
    """Two different models that can answer, else InvalidInput saying what to choose."""
    if len(sides) != 2:
        raise InvalidInput(f"A blind test compares two models, not {len(sides)}: choose two.")
    if model_key(sides[0]) == model_key(sides[1]):
        raise InvalidInput("The same model is chosen twice: choose two different models.")
    for side in sides:
        side.raise_if_refused()


def blind_pair(host, sides: Sequence[RunCheck], prompt: str, settings,
               rng: random.Random | None = None, quantization: str = "auto") -> BlindPair:  # fmt: skip
    """Both models answer `prompt` in one batched pass; the sides are shuffled at random."""
    check_pair(sides)
    if not prompt or not prompt.strip():
        raise InvalidInput("The prompt is empty: type one or draw one from a dataset.")
    messages = [{"role": "user", "content": prompt}]
    replies = answer_together(host, sides, messages, settings, quantization)
    swapped = (rng or random.SystemRandom()).random() < 0.5
    order = [1, 0] if swapped else [0, 1]
    a, b = order
    return BlindPair(prompt=prompt, answer_a=replies[a].text, answer_b=replies[b].text,
                     model_a=model_record(sides[a]), model_b=model_record(sides[b]),
                     swapped=swapped, meta_a=replies[a].as_meta(),
                     meta_b=replies[b].as_meta())  # fmt: skip


# --- the tally --------------------------------------------------------------------------------
def wilson_interval(wins: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion wins/n; (0, 1) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = wins / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class TallyRow:
    key: str
    label: str
    wins: int
    losses: int
    ties: int
    both_bad: int

    @property
    def decided(self) -> int:
        return self.wins + self.losses

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.decided if self.decided else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins, self.decided)


def winner_loser(vote: Vote) -> tuple[str, str] | None:
    """(winner side, loser side) as 'a'/'b', None for a tie or both bad."""
    return {"a": ("a", "b"), "b": ("b", "a")}.get(vote.verdict)


def tally(votes: Iterable[Vote]) -> list[TallyRow]:
    """Each model's wins, losses, ties and both-bad over `votes`, most wins first."""
    counts: dict[str, dict] = {}
    for vote in votes:
        sides = {"a": vote.model_a, "b": vote.model_b}
        for side, model in sides.items():
            row = counts.setdefault(model["key"], {"label": model["label"], "wins": 0,
                                                   "losses": 0, "ties": 0, "both_bad": 0})  # fmt: skip
            row["label"] = model["label"]  # the newest name of the run
            if vote.verdict == "tie":
                row["ties"] += 1
            elif vote.verdict == "both_bad":
                row["both_bad"] += 1
            else:
                row["wins" if vote.verdict == side else "losses"] += 1
    rows = [TallyRow(key, **row) for key, row in counts.items()]
    return sorted(rows, key=lambda r: (-(r.win_rate or 0), -r.wins, r.label))


def between(votes: Iterable[Vote], keys: Sequence[str]) -> list[Vote]:
    """The votes that pitted exactly these two models against each other."""
    wanted = set(keys)
    return [v for v in votes if {v.model_a["key"], v.model_b["key"]} == wanted]


def tally_table(rows: Iterable[TallyRow]) -> list[dict]:
    """The tally as a page's table or `votes list` shows it."""
    out = []
    for r in rows:
        lo, hi = r.interval
        rate = "–" if r.win_rate is None else f"{r.win_rate:.0%}"
        span = "–" if r.win_rate is None else f"{lo:.0%} – {hi:.0%}"
        out.append({"Model": r.label, "Wins": r.wins, "Losses": r.losses, "Ties": r.ties,
                    "Both bad": r.both_bad, "Win rate": rate, "95% interval": span})  # fmt: skip
    return out


# --- DPO export -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DpoExport:
    pairs: list[dict]  # {"prompt", "chosen", "rejected"}
    ties: int
    both_bad: int
    same: int = 0  # votes for a side whose answer equals the other side's: no preference

    def jsonl(self) -> bytes:
        lines = [json.dumps(p, ensure_ascii=False) for p in self.pairs]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    def summary(self, where: str) -> str:
        s = "" if len(self.pairs) == 1 else "s"
        line = (f"wrote {len(self.pairs)} preference pair{s} to {where}; left out "
                f"{self.ties} tie(s) and {self.both_bad} “both bad”")  # fmt: skip
        if self.same:
            line += f", and {self.same} vote(s) between identical answers"
        return line


def dpo_export(votes: Iterable[Vote]) -> DpoExport:
    """Preference pairs in TRL's standard preference format (prompt, chosen, rejected), one per
    vote with a winner; ties, "both bad" and votes between identical answers (chosen equal to
    rejected teaches nothing) are counted, not exported."""
    pairs, ties, both_bad, same = [], 0, 0, 0
    for vote in votes:
        sides = winner_loser(vote)
        if sides is None:
            ties += vote.verdict == "tie"
            both_bad += vote.verdict == "both_bad"
            continue
        if same_answers(vote.answer_a, vote.answer_b):
            same += 1
            continue
        answers = {"a": vote.answer_a, "b": vote.answer_b}
        pairs.append({"prompt": vote.prompt, "chosen": answers[sides[0]],
                      "rejected": answers[sides[1]]})  # fmt: skip
    return DpoExport(pairs, ties, both_bad, same)


def same_answers(a: str, b: str) -> bool:
    """Whether two answers are the same text (white space around them aside)."""
    return a.strip() == b.strip()
