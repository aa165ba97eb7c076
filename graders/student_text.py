"""Text that came from student code, made safe to show: no control characters, bounded length.

A test's message quotes the student's exception (its class name and text), what their code
printed, and their file names. Before any of it reaches a terminal, a report or a feedback
file, `clean` removes what a terminal would act on instead of print (escape sequences that
move the cursor or repaint a line, carriage returns, bells, C1 controls, bidirectional
overrides that reorder the text around them, zero-width characters that hide text) and caps
the length with a visible note. Only `\\n` and `\\t` are kept. Standard library only:
nbgrader's kernel imports it without torch.
"""

from __future__ import annotations

import re

# A test's message: the property, the student's exception (the worker keeps 200 characters of
# its type, 2000 of its text and 4000 of its traceback), the shrunk Hypothesis case and the
# last 2000 characters of printed output: about 10 KB at the very most, and under 1 KB in the
# messages the course's own tests produce. 16 KiB cuts none of it, and keeps a chapter of ~80
# tests under 1.3 MB of grade.json however long an exception a student makes.
MESSAGE_LIMIT = 16 * 2**10
# One line of the terminal table or a batch summary.
LINE_LIMIT = 200

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: cursor moves, colours, erase line/screen
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks (to BEL or ST, or the end)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # the other escapes (charset switches, ESC c reset, ...) and a bare ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # CSI in its one-character C1 form
)
# C0 controls but \t and \n, DEL, C1 controls; the bidirectional embeddings, overrides and
# isolates, which reorder how the text around them is displayed ("Trojan Source"); and the
# zero-width characters and line/paragraph separators, which hide text or break lines unseen.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def clean(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """`text` without escape sequences and control characters (but newlines and tabs), at most
    `limit` characters: a longer text is cut and ends "… (N characters cut)". Cleaning twice
    changes nothing, so each layer that shows student text may clean it."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", str(text)))
    if len(text) <= limit:
        return text
    kept = max(0, limit - len(_cut(len(text))))  # the note fits in the limit too
    return text[:kept] + _cut(len(text) - kept)


def _cut(count: int) -> str:
    return f"… ({count} characters cut)"


def clean_line(text: object, limit: int = LINE_LIMIT) -> str:
    """`clean`, on one line: newlines and tabs become spaces."""
    return clean(str(text).replace("\n", " ").replace("\t", " "), limit)
