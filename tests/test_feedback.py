"""Feedback machinery: what hidden messages may show, and how failures are reported."""

from __future__ import annotations

import pytest

from tests.leaks import hidden_leaks

# Messages that give the expected value away, each with the problem `hidden_leaks` must name.
LEAKING = [
    ("out: 3 of 6 entries are off; at index (0, 1) you returned 0.5, expected 0.25", "an expected value"),
    ("the norm: expected tensor([1., 2.])", "an expected value"),
    ("the loss should be 2.302585 for uniform logits", "an expected value"),
    ("largest error 0.111 (relative 1) at index (0,)", "relative"),
    ("fit_chinchilla: alpha = 0.31 is off by 12.5% (allowed 5%)", "percentage"),
    ("out: 2 of 8 entries are off\n  largest error 0.111 at index (1, 2)\n  you returned 0", "your value"),
    ("count(4, 8) returned 145, but the module has a different number of parameters (off by 3)", "your value"),
    ("allowed: 1.0e-05 * max(1, |x|) + 1.0e-05 * |expected| (rounding); here 0.0123", "grows with |expected|"),
    ("Failing case: ActivationCase(shape=(1,), scale=1.0, dtype=torch.float32, seed=0)", "seed"),
    ("test_ffn(student=<student>, data=data(...))", "data() draw"),
    ("You can reproduce this example by temporarily adding @reproduce_failure('6.0', b'AA')", "seed"),
]

# Messages a hidden test may give: counts, where the error is, its size alone, the student's own
# value alone, shapes and dtypes, tolerance formulas, properties stated in words.
CLEAN = [
    "out: expected shape (2, 3), got (3, 2)",
    "out: expected dtype torch.float32 (the input's), got torch.float64",
    "out: expected a Tensor, got list",
    "out: 3 of 6 entries are off\n  largest error 0.111 at index (0, 1)\n"
    "  allowed: 1.2e-07 + 1.2e-07 * |expected| (float32 rounding of a few sums)",
    "out: 3 of 6 entries are off; at index (0, 1) you returned 0.5",
    "gelu(x, approximate='tanh') at x = +-1, +-2, +-3 is off by up to 0.0031",
    "Hooks on norm1 and norm2: where each sits relative to the residual",
    "kept weights (they should be scaled by 1/(1-p) = 1.33)",
    "Failing case: FFNCase swiglu, x (2, 3, 8) float64, d_ff 10, bias False",
    "cross_attn ran 2 times in one forward pass, expected once",
]


@pytest.mark.parametrize(("message", "problem"), LEAKING)
def test_hidden_leaks_names_each_leak(message, problem):
    found = hidden_leaks(message)
    assert any(problem in text for text in found), (message, found)


@pytest.mark.parametrize("message", CLEAN)
def test_hidden_leaks_passes_what_a_hidden_test_may_say(message):
    assert hidden_leaks(message) == []
