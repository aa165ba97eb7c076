"""What a hidden test's failure message must not show: values that give the expected output away.

A hidden message may say what broke, how many entries are off, the largest error and where it is,
the tolerance and its reason, and the student's own values. It must not show the expected value,
an error measured relative to the expected value, an error size together with the student's value
(their difference is the expected value), the allowed error at one place when it grows with
|expected|, or a seed or Hypothesis draw that lets a student rebuild the input and run the public
reference strategies on it. `hidden_leaks` names each such problem in one message; the project's
tests feed it every hidden message of every mutant (tests/conftest.py's `assert_mutant_caught`).
"""

from __future__ import annotations

import re

# A number as the graders print one: 3, -0.5, 1e-05, 2.3%, nan, inf.
_NUMBER = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?|nan\b|inf\b)"
# A value: a number, a tensor's repr or a list.
_VALUE = rf"(?:tensor\(|\[\s*{_NUMBER}|{_NUMBER})"

# Each rule: (problem, pattern); every match of a pattern is one problem.
_RULES = [
    ("an expected value", re.compile(rf"\bexpected\b\s*[:=]?\s*{_VALUE}", re.IGNORECASE)),
    ("an expected value", re.compile(rf"\bshould (?:be|equal)\s*[:=]?\s*{_VALUE}", re.IGNORECASE)),
    ("an error relative to the expected value",
     re.compile(rf"\brelative\s*(?:error\b|difference\b|[:=]?\s*{_NUMBER})|\berror relative to\b|\(relative\b",
                re.IGNORECASE)),
    ("an error relative to the expected value (a percentage)",
     re.compile(r"\b(?:off|differs?|wrong) by (?:up to |about )?[-+]?(?:\d+(?:\.\d*)?|\.\d+)%", re.IGNORECASE)),
    ("a seed that reproduces an input", re.compile(r"\b\w*seed\w*\s*[=:]\s*[-+]?\d", re.IGNORECASE)),
    ("a seed that reproduces an input", re.compile(r"@(?:seed|reproduce_failure)\(")),
    ("a Hypothesis data() draw", re.compile(r"\bdata\(")),
]

# An error's size, and the student's own value: together they give the expected value.
_ERROR_SIZE = re.compile(rf"\b(?:error|off by|differs? by|difference)\s*(?:of\s*|up to\s*|is\s*)?{_NUMBER}",
                         re.IGNORECASE)
_OWN_VALUE = re.compile(rf"\b(?:you returned|returned|yours (?:is|was|gives?)|you gave|got)\s*[:=]?\s*{_VALUE}",
                        re.IGNORECASE)
# The allowed error at one place, when it grows with |expected|.
_ALLOWED_HERE = re.compile(rf"\bhere\s*[:=]?\s*{_NUMBER}", re.IGNORECASE)


# What the student's own code raised ("your code raised ValueError: not enough values to unpack
# (expected 3, got 1)", then its traceback's indented lines) is the student's text, not the grader's:
# an "expected" there says nothing about the grader's values.
_STUDENT_RAISED = re.compile(r"^.*\byour code raised\b.*(?:\n[ \t]+.*)*", re.MULTILINE)


def hidden_leaks(message: str) -> list[str]:
    """Every problem in one hidden test's failure message, as "<problem>: <the text that shows it>"
    (empty when the message gives nothing away). Checked: an expected value ("expected 0.5",
    "should be 3"), an error relative to the expected value ("(relative 0.1)", "off by 12%"), an
    error size shown with the student's value ("largest error 0.1 ... you returned 0.4", "returned
    145 ... off by 3"), the allowed error at one place when it grows with |expected| ("here 0.012"),
    a seed (`seed=3`, `@seed(`, `@reproduce_failure(`) and a Hypothesis `data(...)` draw. The text of
    an exception the student's code raised is left out of the check."""
    message = _STUDENT_RAISED.sub("", message)
    problems = [f"{problem}: {match.group(0)!r}" for problem, pattern in _RULES for match in pattern.finditer(message)]
    sizes, values = list(_ERROR_SIZE.finditer(message)), list(_OWN_VALUE.finditer(message))
    if sizes and values:
        problems.append(f"an error size shown with your value (their difference is the expected value): "
                        f"{sizes[0].group(0)!r} and {values[0].group(0)!r}")
    if "|expected|" in message:
        problems += [f"the allowed error at one place, which grows with |expected|: {match.group(0)!r}"
                     for match in _ALLOWED_HERE.finditer(message)]
    return problems
