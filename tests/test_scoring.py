"""The answer metrics against values worked out by hand."""

import pytest

from ff_lib.scoring import (
    exact_match,
    lcs_length,
    mean_scores,
    normalize,
    rouge_l,
    score_answer,
    token_f1,
    tokens,
)


def test_normalize_trims_case_whitespace_and_end_punctuation():
    assert normalize("  The capital of France   is\nParis.  ") == "the capital of france is paris"
    assert normalize("«Hello!»") == "hello"
    assert normalize("U.S.A.") == "u.s.a"  # inner punctuation stays


def test_exact_match_after_normalizing():
    assert exact_match("The capital of France is Paris.", "the capital of france is paris") == 1.0
    assert exact_match("Paris", "The capital of France is Paris.") == 0.0
    assert exact_match("", "") == 1.0


def test_tokens_drop_punctuation_and_case():
    assert tokens("Arr, matey! Ye be 2 late.") == ["arr", "matey", "ye", "be", "2", "late"]


def test_token_f1_by_hand():
    # answer: the cat sat (3), expected: the cat sat down (4), overlap 3
    # precision 3/3, recall 3/4 -> F1 = 2 * 1 * 0.75 / 1.75 = 6/7
    assert token_f1("The cat sat.", "the cat sat down") == pytest.approx(6 / 7)
    # repeated tokens count once per match: answer "the the the" vs "the cat": overlap 1
    # precision 1/3, recall 1/2 -> F1 = 2 * (1/6) / (5/6) = 0.4
    assert token_f1("the the the", "the cat") == pytest.approx(0.4)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "cat") == 0.0
    assert token_f1("...", "!") == 1.0  # no tokens on either side


def test_lcs_and_rouge_l_by_hand():
    # "a b c d e" vs "a c e f": LCS a c e = 3; P = 3/5, R = 3/4, F = 2*0.6*0.75/1.35 = 2/3
    assert lcs_length(list("abcde"), list("acef")) == 3
    assert rouge_l("a b c d e", "a c e f") == pytest.approx(2 / 3)
    # word order matters for ROUGE-L, not for token F1
    assert token_f1("paris is the capital", "the capital is paris") == 1.0
    # LCS of [paris is the capital] and [the capital is paris] = 2 ("the capital")
    assert rouge_l("paris is the capital", "the capital is paris") == pytest.approx(0.5)
    assert rouge_l("", "") == 1.0
    assert rouge_l("x", "y") == 0.0


def test_score_answer_and_means():
    row1 = score_answer("The capital of France is Paris.", "The capital of France is Paris.")
    row2 = score_answer("Arr, the sea!", "The capital of France is Paris.")
    assert row1 == {"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0}
    # "arr the sea" vs 6 tokens: overlap "the" -> P 1/3, R 1/6, F1 = 2/9 = 0.2222
    assert row2["exact_match"] == 0.0
    assert row2["token_f1"] == pytest.approx(0.2222, abs=1e-4)
    assert row2["rouge_l"] == pytest.approx(0.2222, abs=1e-4)
    means = mean_scores([row1, row2])
    assert means["exact_match"] == 0.5
    assert means["token_f1"] == pytest.approx(0.6111, abs=1e-4)
    assert mean_scores([]) == {"exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0}
