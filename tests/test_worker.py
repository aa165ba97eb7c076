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

def reply_fd():
    import json
    return json.loads(sys.argv[1])["reply_fd"], json.loads(sys.argv[1])["request_fd"]

def frame_header(size, ident):
    import struct
    os.write(reply_fd()[0], struct.pack(">QQ", size, ident))
    import time
    time.sleep(30)  # never sends the payload: the grader must not wait for it

def bloated_reply(megabytes):
    # A well-formed archive whose pickled structure is huge: an answer that costs the grader
    # gigabytes and minutes to decode, were it decoded.
    import struct, zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + b"]" * (megabytes * 2**20) + b".")
    payload = buffer.getvalue()
    os.write(reply_fd()[0], struct.pack(">QQ", len(payload), REQUEST_ID) + payload)
    import time
    time.sleep(30)

REQUEST_ID = 1  # the fixture's worker answers this as its first request

def stop_reading():
    import fcntl, threading, time
    fcntl.fcntl(reply_fd()[1], 1031, 4096)  # F_SETPIPE_SZ: the smallest request pipe
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    time.sleep(60)  # the worker no longer reads, and the next request is bigger than the pipe

def long_name(megabytes):
    raise type("E" * (megabytes * 2**20), (Exception,), {})("\x1b[2J" + "m" * (megabytes * 2**20))

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
    assert worker.output_during_test() == "looking at (2, 3)"  # the escape sequence and the NUL dropped
    worker.begin_test()
    assert worker.output_during_test() == ""


def test_a_reply_to_another_request_is_refused_before_it_is_read(worker):
    with pytest.raises(BadReply, match="out of order"):
        worker.call("frame_header", 16, 10**6)


def test_a_reply_over_the_size_limit_is_refused_before_it_is_read(worker):
    with pytest.raises(BadReply, match="exceeds the limit"):
        worker.call("frame_header", 255 * 2**20, 1)


def test_a_bloated_reply_structure_is_never_decoded(worker):
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(BadReply, match="structure of"):
        worker.call("bloated_reply", 8)
    assert time.monotonic() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 2**10  # KiB: under 200 MiB


def test_a_worker_that_stops_reading_is_a_timeout_not_a_hang(worker):
    with pytest.raises(WorkerTimeout):
        worker.call("stop_reading")  # the call itself times out (it sleeps)
    worker.begin_test()
    worker.call("ok", torch.ones(1))  # a fresh worker answers
    with pytest.raises(WorkerTimeout):
        worker.run(calls=[{"fn": "stop_reading", "args": [], "kwargs": {}}, {"fn": "ok", "args": [torch.ones(2**22)],
                                                                           "kwargs": {}}])


def test_a_huge_exception_is_cut_and_cleaned(worker):
    with pytest.raises(StudentRaised) as raised:
        worker.call("long_name", 4)
    text = str(raised.value)
    assert len(text) < 10_000
    assert "\x1b" not in text
