"""The worker boundary: deaths, hangs and hostile replies never reach the grader."""

from __future__ import annotations

import textwrap

import pytest
import torch

from graders import submission
from graders.submission import BadReply, StudentRaised, Submission, WorkerCrashed, WorkerTimeout

MODULE = r'''
import os, sys, pickle, io
import torch

def ok(x):
    return x * 2

def chatty(x):
    print("looking at", tuple(x.shape), "\x1b[31m\x00")
    return x

def crash():
    os._exit(7)

def spin():
    while True:
        pass

def leave():
    sys.exit(0)

def weird():
    return object()

def hostile_reply(marker):
    # Replace the child's serializer so its reply is a pickle that would run code when loaded.
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    def save(obj, buffer, *args, **kwargs):
        pickle.dump(Evil(), buffer)
    torch.save = save
    return torch.ones(1)
'''


@pytest.fixture
def worker(tmp_path):
    (tmp_path / "m.py").write_text(textwrap.dedent(MODULE))
    sub = Submission(tmp_path, ("m",), call_timeout=3.0)
    yield sub
    sub.close()


def test_round_trip(worker):
    assert torch.equal(worker.call("ok", torch.arange(3.0)), torch.tensor([0.0, 2.0, 4.0]))


def test_crash_fails_the_call_and_the_next_test_gets_a_fresh_worker(worker):
    with pytest.raises(WorkerCrashed, match="exited with code 7"):
        worker.call("crash")
    with pytest.raises(WorkerCrashed):  # the same test: the death is remembered, not retried
        worker.call("ok", torch.ones(1))
    worker.begin_test()
    assert torch.equal(worker.call("ok", torch.ones(1)), torch.full((1,), 2.0))


def test_hang_times_out(worker):
    with pytest.raises(WorkerTimeout):
        worker.call("spin")
    worker.begin_test()
    assert worker.call("ok", torch.ones(1)).item() == 2.0


def test_sys_exit_is_an_error_not_an_exit(worker):
    with pytest.raises(WorkerCrashed, match="sys.exit"):
        worker.call("leave")


def test_unreadable_return_value_is_explained(worker):
    with pytest.raises(StudentRaised, match="cannot read"):
        worker.call("weird")


def test_a_crafted_pickle_is_never_loaded(worker, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(BadReply):
        worker.call("hostile_reply", str(marker))
    assert not marker.exists()


def test_address_space_is_limited():
    assert submission.MEMORY_LIMIT_BYTES < 30 * 2**30


def test_output_during_a_test_is_captured_and_cleaned(worker):
    worker.begin_test()
    worker.call("chatty", torch.ones(2, 3))
    assert worker.output_during_test() == "looking at (2, 3) ?[31m?"
    worker.begin_test()
    assert worker.output_during_test() == ""
