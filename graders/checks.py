"""Assertions whose failure messages teach.

Every check compares element by element and, on failure, says which property broke, how
large the error is and where it is largest. Hidden tests call them with `reveal=False`: the
message then shows nothing from which the expected value follows (no expected value, no error
relative to it, not the student's value next to the error's size).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from graders.submission import StudentRaised
from graders.tolerances import DROPOUT_SIGMAS, Tolerance


class GradingFailure(AssertionError):
    """A property of the student's output does not hold."""


def fail(message: str) -> None:
    raise GradingFailure(message)


def check_tensor(actual, *, what: str, shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`actual` is a tensor of the given shape and dtype, with no NaN or inf where finite is expected."""
    if not isinstance(actual, torch.Tensor):
        fail(f"{what}: expected a Tensor, got {type(actual).__name__}")
    if shape is not None and tuple(actual.shape) != tuple(shape):
        fail(f"{what}: expected shape {tuple(shape)}, got {tuple(actual.shape)}")
    if dtype is not None and actual.dtype != dtype:
        fail(f"{what}: expected dtype {dtype} (the input's), got {actual.dtype}")
    return actual


def assert_finite(actual: torch.Tensor, *, what: str) -> None:
    bad = ~torch.isfinite(actual)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        count = int(bad.sum())
        fail(f"{what}: {count} of {actual.numel()} entries are NaN or inf; the first at index {index} "
             f"is {actual[index].item()}")


def assert_close(actual, expected: torch.Tensor, tol: Tolerance, *, what: str, reveal: bool = False,
                 hint: str = "", scale: torch.Tensor | None = None, error_size: bool = True,
                 scale_text: str = "max(1, |x|)") -> None:
    """`actual` matches `expected` element-wise within `tol` (shapes must agree exactly).

    `scale`, broadcastable to `expected`, multiplies `tol.atol` element by element: for errors
    that grow with the input rather than the output (an activation's rounding is about eps * |x|
    even where its value is 0); `scale_text` names it in the message.

    A public message (`reveal`) shows everything at the worst index: the error, the error relative
    to the expected value, both values and the allowed error there. A hidden one shows how many
    entries are off, the largest error and its index, and the tolerance's formula and reason, but
    not the student's value there: the value and the error together give the expected value, and
    of the two the error teaches more (1e-3 points at a constant or a rounding order, 1 at a
    wrong formula), while the student's own value says nothing without something to compare it
    with. `error_size=False` leaves the error's size out of a hidden message too: for a value
    whose inputs the message names (`assert_number_close`), where the student can compute their
    own value and add the error back.
    """
    actual = check_tensor(actual, what=what, shape=tuple(expected.shape))
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    nan_mismatch = torch.isnan(a) != torch.isnan(e)
    inf_mismatch = (torch.isinf(a) | torch.isinf(e)) & (a != e)
    if nan_mismatch.any() or inf_mismatch.any():
        index = tuple(int(i) for i in (nan_mismatch | inf_mismatch).nonzero()[0])
        got = a[index].item()
        if reveal:
            fail(f"{what}: non-finite mismatch at index {index}: you returned {got}, expected {e[index].item()}"
                 + _hint(hint))
        side = f"you returned {got}" if not math.isfinite(got) else "you returned a finite value where it should not be"
        fail(f"{what}: non-finite mismatch at index {index}: {side}" + _hint(hint))
    finite = torch.isfinite(a) & torch.isfinite(e)
    err = torch.where(finite, (a - e).abs(), torch.zeros_like(a))
    atol = tol.atol if scale is None else tol.atol * scale.detach().to(torch.float64).expand_as(e)
    allowed = atol + tol.rtol * e.abs()
    bad = finite & (err > allowed)
    if not bad.any():
        return
    index = tuple(int(i) for i in torch.nonzero(err == err[bad].max())[0])
    formula = (f"{tol.atol:.1e} + {tol.rtol:.1e} * |expected|" if scale is None else
               f"{tol.atol:.1e} * {scale_text} + {tol.rtol:.1e} * |expected|")
    if reveal:
        rel = err[index] / e[index].abs().clamp_min(1e-300)
        lines = [
            f"{what}: {int(bad.sum())} of {a.numel()} entries are off",
            f"  largest error {err[index].item():.3g} (relative {rel.item():.3g}) at index {index}",
            f"  you returned {a[index].item():.6g}, expected {e[index].item():.6g}",
            f"  allowed: {formula} ({tol.reason})" + ("" if scale is None else f"; here {allowed[index].item():.3g}"),
        ]
    elif not error_size:
        lines = [(f"{what}: {int(bad.sum())} of {a.numel()} entries are off by more than the allowed {formula} "
                  f"({tol.reason})")]
    else:
        lines = [
            f"{what}: {int(bad.sum())} of {a.numel()} entries are off",
            f"  largest error {err[index].item():.3g} at index {index}",
            f"  allowed: {formula} ({tol.reason})",
        ]
    fail("\n".join(lines) + _hint(hint))


def dropout_problem(got: torch.Tensor, undropped: torch.Tensor, p: float, tol: Tolerance) -> str:
    """Why `got` is not inverted dropout at rate `p` of `undropped`, or "" when it is.

    Inverted dropout leaves each entry 0 (dropped) or `undropped / (1 - p)` (kept); among the
    entries whose undropped value is not 0 within `tol`, the number dropped is Binomial(n, p) and
    must lie within DROPOUT_SIGMAS standard deviations of n p, and where n is large enough that
    all kept or all dropped has probability below 1e-9, both must occur. A wrong common factor on
    the kept entries is named as such (a wrong scale); any other mismatch means the dropout acts
    somewhere else. `undropped` is the student's own dropout-free value (their eval-mode output, or
    what a hook saw), so nothing here tells them a value of the reference.
    """
    got, undropped = got.detach().double(), undropped.detach().double()
    slack = tol.atol * undropped.abs().clamp_min(1.0)
    dropped = got.abs() <= slack
    kept = (got - undropped / (1 - p)).abs() <= slack + tol.rtol * (undropped / (1 - p)).abs()
    odd = ~(dropped | kept)
    live = undropped.abs() > slack  # an undropped 0 is both dropped and kept: not counted
    if odd.any():
        ratios = got[~dropped & live] / undropped[~dropped & live]
        # One factor shared by every kept entry is a wrong scale; dropout in another place gives
        # each entry its own (a single entry cannot tell the two apart).
        common = 64 * torch.finfo(torch.float32).eps * ratios[0].abs() if len(ratios) else 0.0
        if len(ratios) >= 2 and (ratios - ratios[0]).abs().max() <= common:
            return (f"the entries that are not dropped are the undropped value times {ratios[0].item():.4g}, not "
                    f"divided by (1 - p) = {1 - p:g}: inverted dropout scales what it keeps by 1 / (1 - p)")
        return (f"{int(odd.sum())} of {got.numel()} entries are neither 0 (dropped) nor the undropped value "
                f"scaled by 1 / (1 - p) = {1 / (1 - p):g} (kept)")
    n, k = int(live.sum()), int((dropped & live).sum())
    both_expected = max(p, 1 - p) ** n < 1e-9
    if abs(k - n * p) > DROPOUT_SIGMAS * math.sqrt(n * p * (1 - p)) + 1 or (both_expected and k in (0, n)):
        return (f"{k} of {n} entries were dropped with dropout={p}; each entry is dropped with probability p, "
                f"about {n * p:.0f} of {n} here")
    return ""


def assert_dropped_or_scaled(got, undropped: torch.Tensor, p: float, tol: Tolerance, *, what: str, hint: str = "",
                             reveal: bool = False) -> None:
    """`got` is inverted dropout at rate `p` of `undropped` (same shape): `dropout_problem` finds
    nothing. A public message (`reveal`) adds the first entry that is neither, beside its
    undropped value; a hidden one gives counts and factors only."""
    got = check_tensor(got, what=what, shape=tuple(undropped.shape))
    problem = dropout_problem(got, undropped, p, tol)
    if not problem:
        return
    if reveal:
        a, u = got.detach().double().flatten(), undropped.detach().double().flatten()
        slack = tol.atol * u.abs().clamp_min(1.0)
        odd = ~((a.abs() <= slack) | ((a - u / (1 - p)).abs() <= slack + tol.rtol * (u / (1 - p)).abs()))
        if odd.any():
            k = int(odd.nonzero()[0])
            problem += f"; e.g. entry {k} is {a[k].item():.6g} where the undropped value is {u[k].item():.6g}"
    fail(f"{what}: {problem}" + _hint(hint))


def number(actual, *, what: str) -> float:
    """A Python number, or a one-element tensor, as a float; anything else (a bool too) fails."""
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        return actual.item()
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        fail(f"{what}: expected a number, got {type(actual).__name__}")
    return float(actual)


def assert_number_close(actual, expected: float, tol: Tolerance, *, what: str, reveal: bool = False,
                        hint: str = "", scale: float | None = None) -> None:
    """A number against an expected float within `tol` (its atol times `scale` when given), in
    float64 so the comparison adds no rounding of its own. A hidden message gives no error size:
    a number's inputs are usually in `what` (`noam_schedule(100, d_model=64)`)."""
    assert_close(torch.tensor(number(actual, what=what), dtype=torch.float64),
                 torch.tensor(float(expected), dtype=torch.float64), tol, what=what, reveal=reveal, hint=hint,
                 scale=None if scale is None else torch.tensor(float(scale), dtype=torch.float64), error_size=False)


def real_positions(t: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """`t` (B, L, ...) with the positions where `keep` (B, L) is False set to 0 (None keeps all):
    what a model returns at padding positions is not graded."""
    if keep is None:
        return t
    return t.masked_fill(~keep.reshape(*keep.shape, *([1] * (t.dim() - 2))), 0.0)  # (B, L, ...)


def assert_equal(actual, expected: torch.Tensor, *, what: str, reveal: bool = False, hint: str = "") -> None:
    """Exact equality (booleans, integers, values that must be exactly 0).

    A hidden message (`reveal` False) gives the student's value at the first differing index,
    except for booleans, where the student's value is the negation of the expected one."""
    actual = check_tensor(actual, what=what, shape=tuple(expected.shape))
    diff = actual != expected.to(actual.dtype)
    if diff.any():
        index = tuple(int(i) for i in diff.nonzero()[0])
        text = f"{what}: {int(diff.sum())} of {actual.numel()} entries differ; the first at index {index}"
        if reveal:
            text += f": you returned {actual[index].item()}, expected {expected[index].item()}"
        elif actual.dtype != torch.bool:
            text += f": you returned {actual[index].item()}"
        fail(text + _hint(hint))


def raised(call: Callable[[], object]) -> StudentRaised | None:
    """Run a call that may raise in the student's code; return what it raised, or None.

    A stub's NotImplementedError propagates, so an unwritten function never passes a test
    that expects some other exception.
    """
    try:
        call()
    except StudentRaised as exc:
        if exc.type == "NotImplementedError":
            raise
        return exc
    return None


def expect_value_error(call: Callable[[], object], *, what: str, valid: bool = False) -> None:
    """`call` raises ValueError (or, when `valid`, raises nothing)."""
    exc = raised(call)
    if valid and exc is not None:
        fail(f"{what} is valid but raised {exc.type}: {exc.detail}")
    if not valid and (exc is None or not exc.is_a("ValueError")):
        fail(f"{what} should raise ValueError, " + ("but it was accepted" if exc is None else
                                                      f"but raised {exc.type}\n  your code raised {exc.type}: {exc.detail}"))


def static_clean(static_scan: tuple[list, str], module: str) -> None:
    """The chapter's module parsed, and calls none of the chapter's banned APIs."""
    hits, problem = static_scan
    if problem:
        fail(problem)
    if hits:
        fail("\n".join(v.describe(module) for v in hits))


def _hint(hint: str) -> str:
    return f"\n  see: {hint}" if hint else ""
