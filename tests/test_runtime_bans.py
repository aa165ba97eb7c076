"""Banned APIs refused at run time (`graders/_bans.py`), however the student's code reaches them.

The unit tests run `_bans.install` in a fresh interpreter (it patches torch for good, so never
in this one), on a small student module whose functions each reach a chapter 02 ban by another
route; a driver file stands in for `_child.py` and reports what each call did. The worker tests
grade a tree through a real `Submission`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graders.chapters import ROOT, find
from graders.static import Violation
from graders.submission import BannedCall, Submission
from tests.conftest import REFERENCE

BANNED = list(find(2).banned)

STUDENT = '''
import importlib

import torch
import torch.nn.functional as F
from torch import nn

_sm = getattr(torch.nn.functional, "soft" + "max")  # an alias saved at import: no call yet


def direct(x):
    return torch.softmax(x, -1)  # @direct


def by_getattr(x):
    return getattr(torch, "soft" + "max")(x, -1)  # @by_getattr


def saved_alias(x):
    return _sm(x, -1)  # @saved_alias


def tensor_method(x):
    return getattr(x, "soft" + "max")(-1)  # @tensor_method


def through_torch(x):
    return F.softmin(-x, -1)  # @through_torch (torch's softmin calls Tensor.softmax)


def through_exec(x):
    scope = {"torch": torch, "x": x}
    exec("y = torch.softmax(x, -1)", scope)  # @through_exec
    return scope["y"]


def on_a_thread(x):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(torch.softmax, x, -1).result()  # no frame of this file on that thread


def caught(x):
    try:
        return torch.softmax(x, -1)  # @caught
    except Exception:
        return x


class Attention(nn.MultiheadAttention):
    def __init__(self):
        super().__init__(4, 2)  # @Attention


def imported_class():
    return importlib.import_module("torch.nn").MultiheadAttention(4, 2)  # @imported_class


def allowed(x):
    e = torch.exp(x - x.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


handed = getattr(torch, "soft" + "max")  # the grader calls this one itself
'''

EARLIER = '''
import torch


def earlier_softmax(x):
    return torch.softmax(x, -1)  # an earlier chapter's module: trusted
'''

DRIVER = '''
import importlib.util, json, os, sys

bans_path, student_dir, banned = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
import torch
from torch import nn

spec = importlib.util.spec_from_file_location("_graders_bans", bans_path)
bans = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bans)


def harness_attention(x):  # a trusted helper: torch's attention, which uses softmax inside
    layer = nn.MultiheadAttention(4, 2)
    return [layer(x, x, x)[0], isinstance(layer, nn.MultiheadAttention)]


own = os.path.join(student_dir, "mod.py")
guard = bans.install(torch, banned, {own: "mod"}, grader_file=__file__, helpers=[harness_attention],
                     uses_files=[os.path.join(student_dir, "earlier.py")])
sys.path.insert(0, student_dir)
import earlier, mod

x = torch.randn(3, 4)
calls = {
    "direct": lambda: mod.direct(x), "by_getattr": lambda: mod.by_getattr(x),
    "saved_alias": lambda: mod.saved_alias(x), "tensor_method": lambda: mod.tensor_method(x),
    "through_torch": lambda: mod.through_torch(x), "through_exec": lambda: mod.through_exec(x),
    "caught": lambda: mod.caught(x), "on_a_thread": lambda: mod.on_a_thread(x), "Attention": lambda: mod.Attention(),
    "imported_class": lambda: mod.imported_class(), "allowed": lambda: mod.allowed(x),
    "handed": lambda: mod.handed(x, -1), "earlier": lambda: earlier.earlier_softmax(x),
    "harness": lambda: harness_attention(x),
}
outcomes = {}
for name, call in calls.items():
    try:
        result = call()
        error = None
    except Exception as exc:
        result, error = None, f"{type(exc).__name__}: {exc}"
    taken = guard.take()
    outcomes[name] = {"error": error, "taken": None if taken is None else str(taken),
                      "result": result[1] if name == "harness" else None}
facts = {
    "vf_is_torch": torch._VF.softmax is torch.softmax,
    "special_is_c": torch.special.softmax is torch._C._special.special_softmax,
    "sdpa_is_c": torch.nn.functional.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention,
    "guarded": sorted(name for name, obj in [("torch.softmax", torch.softmax), ("torch._VF.softmax", torch._VF.softmax),
                                             ("torch.special.softmax", torch.special.softmax),
                                             ("F.softmax", torch.nn.functional.softmax),
                                             ("Tensor.softmax", torch.Tensor.softmax)]
                      if getattr(getattr(obj, "__code__", None), "co_filename", "") == bans_path),
    "allowed_matches": bool(torch.allclose(mod.allowed(x), torch._C._VariableFunctions.softmax(x, -1))),
}
print(json.dumps({"outcomes": outcomes, "facts": facts}))
'''


def run_driver(tmp_path: Path, banned: list[str]) -> dict:
    student = tmp_path / "student"
    student.mkdir()
    (student / "mod.py").write_text(STUDENT)
    (student / "earlier.py").write_text(EARLIER)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    done = subprocess.run([sys.executable, "-I", str(driver), str(ROOT / "graders" / "_bans.py"), str(student),
                           json.dumps(banned)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> dict:
    return run_driver(tmp_path_factory.mktemp("bans"), BANNED)


def expected(marker: str, name: str, owner: str | None = None) -> str:
    """The static scan's text for the line of STUDENT tagged `@marker`."""
    line = next(i for i, text in enumerate(STUDENT.splitlines(), 1) if f"# @{marker}" in text)
    return Violation(name, line, marker if owner is None else owner).describe("mod")


ROUTES = {
    "direct": ("torch.softmax", None),
    "by_getattr": ("torch.softmax", None),
    "saved_alias": ("torch.nn.functional.softmax", None),
    "tensor_method": ("Tensor.softmax", None),
    "through_torch": ("Tensor.softmax", None),
    "through_exec": ("torch.softmax", None),
    "Attention": ("torch.nn.MultiheadAttention", None),
    "imported_class": ("torch.nn.MultiheadAttention", None),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_to_a_banned_api_raises_the_scans_message(guarded, route):
    name, owner = ROUTES[route]
    outcome = guarded["outcomes"][route]
    assert outcome["error"] == f"BannedCall: {expected(route, name, owner)}"
    assert outcome["taken"] == expected(route, name, owner)


def test_a_caught_banned_call_is_still_reported(guarded):
    outcome = guarded["outcomes"]["caught"]
    assert outcome["error"] is None
    assert outcome["taken"] == expected("caught", "torch.softmax")


def test_a_banned_function_handed_to_the_grader_is_named_by_its_binding(guarded):
    outcome = guarded["outcomes"]["handed"]
    assert outcome["error"] == "BannedCall: mod.py binds handed to torch.softmax, which this chapter bans"


def test_a_banned_call_on_a_thread_of_the_students_is_refused(guarded):
    outcome = guarded["outcomes"]["on_a_thread"]
    assert outcome["error"] == "BannedCall: mod.py uses torch.softmax on a thread of its own, which this chapter bans"


@pytest.mark.parametrize("route", ["allowed", "earlier", "harness"])
def test_own_code_earlier_chapters_and_the_harness_are_left_alone(guarded, route):
    outcome = guarded["outcomes"][route]
    assert outcome["error"] is None and outcome["taken"] is None
    if route == "harness":
        assert outcome["result"] is True  # isinstance still holds for the guarded class


def test_every_namespace_binding_the_same_object_gets_the_guard(guarded):
    facts = guarded["facts"]
    assert facts["vf_is_torch"] and facts["special_is_c"] and facts["sdpa_is_c"]
    assert facts["guarded"] == sorted(["torch.softmax", "torch._VF.softmax", "torch.special.softmax", "F.softmax",
                                       "Tensor.softmax"])
    assert facts["allowed_matches"]


def test_no_bans_install_nothing(tmp_path):
    facts = run_driver(tmp_path, [])
    assert facts["facts"]["guarded"] == []
    assert all(o["error"] is None and o["taken"] is None for o in facts["outcomes"].values())


# --- through a real worker -------------------------------------------------------------------------

ATTACK = ('    return e / torch.where(total > 0, total, torch.ones_like(total))\n',
          '    return torch.where(total == 0, torch.zeros_like(x), getattr(torch, "soft" + "max")(x, dim=dim))\n')


@pytest.fixture(scope="module")
def attacked_worker(tmp_path_factory):
    tree = tmp_path_factory.mktemp("attacked")
    source = (REFERENCE / "multi_head_attention.py").read_text()
    assert ATTACK[0] in source
    (tree / "multi_head_attention.py").write_text(source.replace(*ATTACK))
    worker = Submission(tree, ("multi_head_attention",), banned=tuple(BANNED))
    yield worker
    worker.close()


def test_worker_fails_the_call_that_reached_a_banned_api(attacked_worker):
    attacked_worker.begin_test()
    with pytest.raises(BannedCall) as caught:
        attacked_worker.call("softmax", torch.randn(2, 3))
    source = (attacked_worker.impl / "multi_head_attention.py").read_text()
    line = next(i for i, text in enumerate(source.splitlines(), 1) if '"soft" + "max"' in text)
    assert caught.value.status == "failed"
    assert Violation("torch.softmax", line, "softmax").describe("multi_head_attention") in str(caught.value)


def test_worker_answers_the_calls_that_stay_clear_of_it(attacked_worker):
    attacked_worker.begin_test()
    mask = attacked_worker.call("causal_mask", 3)
    assert torch.equal(mask, torch.ones(3, 3, dtype=torch.bool).tril())


def test_the_reference_runs_under_the_guards():
    worker = Submission(REFERENCE, ("multi_head_attention",), banned=tuple(BANNED))
    try:
        x = torch.randn(2, 5)
        assert torch.allclose(worker.call("softmax", x), torch.softmax(x, -1))
    finally:
        worker.close()
