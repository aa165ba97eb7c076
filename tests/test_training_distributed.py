"""Data parallel training for real: chapter 06's `train_step` under `torch.distributed` (gloo,
two processes on CPU started by torchrun) ends where one process ends on the full batch.

torchrun runs `tests/distributed_train_step.py` once for the module; this process then runs the
same steps with the same model, data and loop on the full batch (no DDP, the same number of
micro-batches, each the concatenation of the ranks' micro-batches: the script's docstring
says why that is the same step). Everything stays on 127.0.0.1: the rendezvous store, the
address torchrun hands the ranks, and gloo's own connections (the loopback interface).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from tests.conftest import REFERENCE, ROOT
from tests.distributed_train_step import STEPS, WORLD, build_model, global_batches, shard, train

# Its module fixture runs once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("training_distributed")

SCRIPT = ROOT / "tests" / "distributed_train_step.py"
TIMEOUT = 300  # seconds for the whole torchrun (about 10 here: two processes importing torch)

# float32 (eps 1.2e-7). Both runs add the same per-row gradients in another order (per-rank
# means, then the all-reduce's average), and four AdamW steps carry the rounding on.
PARAM_RTOL = 1e-5  # about 100 eps of the parameter's size (the largest here are about 4)
PARAM_ATOL = 1e-6  # AdamW moves every parameter by about lr whatever its size, so rounding in the
# update is absolute: parameters near 0 are held to this (about 10 eps of a unit-size number)
LOSS_RTOL = 1e-6  # about 10 eps: the step's mean loss, summed in another order
FAR = 100  # "far outside the tolerance": how much a wrong run must miss it by


def loopback_interface() -> str:
    """The loopback interface's name ("lo" on Linux, "lo0" on macOS), for GLOO_SOCKET_IFNAME."""
    names = [name for _, name in socket.if_nameindex() if name in ("lo", "lo0")]
    if not names:
        pytest.fail(f"no loopback interface among {socket.if_nameindex()}: gloo would leave 127.0.0.1")
    return names[0]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Each rank's {"state_dict", "losses", "allreduces"} after the torchrun, in rank order."""
    out = tmp_path_factory.mktemp("ddp") / "ranks.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(WORLD),
               # the c10d store on 127.0.0.1, a free port chosen when it binds (no race), and
               # MASTER_ADDR=127.0.0.1 for the ranks (without --local-addr, this host's name)
               "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--local-addr", "127.0.0.1",
               str(SCRIPT), str(out), "--impl", str(REFERENCE)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {
        "OMP_NUM_THREADS": "1",  # two ranks on two cores: one thread each
        "MASTER_ADDR": "127.0.0.1",  # torchrun sets it for each rank too, from --local-addr
        "GLOO_SOCKET_IFNAME": loopback_interface(),  # else gloo connects to whatever the host name resolves to
    }
    # a session of its own, so a timeout ends the ranks too, not only torchrun
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as torchrun:
        try:
            stdout, stderr = torchrun.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(torchrun.pid, signal.SIGKILL)
            stdout, stderr = torchrun.communicate()
            pytest.fail(f"torchrun did not finish in {TIMEOUT} s (a rank waiting on the other?):\n{stderr[-6000:]}")
    if torchrun.returncode != 0 or not out.exists():
        pytest.fail(f"torchrun exited {torchrun.returncode} without results: gloo could not start on "
                    f"127.0.0.1, or a rank raised.\n{stdout[-3000:]}\n{stderr[-6000:]}")
    return torch.load(out, weights_only=True)["ranks"]


@pytest.fixture(scope="module")
def training_loop():
    """The reference training_loop module, imported without leaving it in sys.path or sys.modules."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REFERENCE))
        spec = importlib.util.spec_from_file_location("ddp_reference_training_loop", REFERENCE / "training_loop.py")
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def full_batch(training_loop) -> tuple[dict, list[float]]:
    """One process, no DDP, on the full batch: the final state_dict and the per-step losses."""
    model = build_model()
    losses = train(training_loop, model, [shard(batch, rank=0, world=1) for batch in global_batches()])
    return model.state_dict(), losses


def worst_miss(actual: dict, expected: dict) -> float:
    """The largest ``|actual - expected| / (PARAM_ATOL + PARAM_RTOL * |expected|)`` over every
    element of every parameter: at most 1 when all are within the tolerance."""
    assert actual.keys() == expected.keys()
    return max((((actual[k] - expected[k]).abs() / (PARAM_ATOL + PARAM_RTOL * expected[k].abs())).max().item()
                for k in expected))


def test_ddp_parameters_equal_single_process(ranks, full_batch):
    expected, _ = full_batch
    torch.testing.assert_close(ranks[0]["state_dict"], expected, rtol=PARAM_RTOL, atol=PARAM_ATOL)


def test_ddp_losses_equal_single_process(ranks, full_batch):
    # each rank returns its shard's mean loss; equal shards, so their mean is the full batch's
    _, expected = full_batch
    mean_over_ranks = [sum(step) / WORLD for step in zip(*(rank["losses"] for rank in ranks), strict=True)]
    torch.testing.assert_close(mean_over_ranks, expected, rtol=LOSS_RTOL, atol=0.0)


def test_ddp_replicas_stay_identical(ranks):
    # the same averaged gradients and the same optimizer on every rank: the same bits
    for name, value in ranks[0]["state_dict"].items():
        for rank in range(1, WORLD):
            assert torch.equal(ranks[rank]["state_dict"][name], value), f"rank {rank}'s {name} drifted from rank 0's"


def test_ddp_allreduces_once_per_step(ranks):
    # the model's few thousand parameters fill one gradient bucket, so one all-reduce a step:
    # the first micro-batch's backward ran under no_sync (two a step would mean it did not)
    assert [rank["allreduces"] for rank in ranks] == [STEPS] * WORLD


def test_one_shard_alone_ends_far_away(ranks, training_loop):
    # Not vacuous: a rank that trained on its own shard without averaging (no all-reduce, or
    # no_sync on every micro-batch) ends far outside the tolerance the DDP run is held to.
    model = build_model()
    train(training_loop, model, [shard(batch, rank=0, world=WORLD) for batch in global_batches()])
    assert worst_miss(model.state_dict(), ranks[0]["state_dict"]) > FAR
