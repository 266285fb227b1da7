"""Scoring an answer against the expected one: exact match, token F1, ROUGE-L (pure Python)."""

import re
import string
from collections import Counter
from collections.abc import Iterable

# Punctuation trimmed from both ends before an exact match ("Paris." equals "paris").
_END_PUNCTUATION = string.punctuation + "“”‘’«»…"
_WORD = re.compile(r"\w+", re.UNICODE)
METRICS = ("exact_match", "token_f1", "rouge_l")


def normalize(text: str) -> str:
    """Lowercase, whitespace collapsed to single spaces, punctuation trimmed at both ends."""
    flat = " ".join(text.lower().split())
    return flat.strip(_END_PUNCTUATION + " ")


def tokens(text: str) -> list[str]:
    """Lowercased word tokens (runs of letters, digits and underscores); punctuation dropped."""
    return _WORD.findall(text.lower())


def exact_match(answer: str, expected: str) -> float:
    """1.0 when the two are equal after `normalize`, else 0.0."""
    return 1.0 if normalize(answer) == normalize(expected) else 0.0


def token_f1(answer: str, expected: str) -> float:
    """F1 of the bag-of-words overlap (SQuAD style); 1.0 when both have no tokens."""
    got, want = tokens(answer), tokens(expected)
    if not got or not want:
        return 1.0 if got == want else 0.0
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(answer: str, expected: str) -> float:
    """ROUGE-L F1: the longest common word subsequence against both lengths."""
    got, want = tokens(answer), tokens(expected)
    if not got or not want:
        return 1.0 if got == want else 0.0
    lcs = lcs_length(got, want)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(got), lcs / len(want)
    return 2 * precision * recall / (precision + recall)


def score_answer(answer: str, expected: str) -> dict[str, float]:
    """{exact_match, token_f1, rouge_l} of one answer, each in [0, 1]."""
    return {
        "exact_match": exact_match(answer, expected),
        "token_f1": round(token_f1(answer, expected), 4),
        "rouge_l": round(rouge_l(answer, expected), 4),
    }


def mean_scores(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over rows of `score_answer` (0.0 each when there are none)."""
    scores = list(scores)
    if not scores:
        return dict.fromkeys(METRICS, 0.0)
    return {m: round(sum(s[m] for s in scores) / len(scores), 4) for m in METRICS}
