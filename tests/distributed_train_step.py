"""Chapter 06's `train_step` under data parallelism: one process per rank, started by torchrun.

Every rank builds the same tiny language model, wraps it in `DistributedDataParallel` (gloo,
CPU), takes its shard of each step's global batch and runs `STEPS` optimizer steps of
`train_step`, `ACCUMULATION` micro-batches each (so all but the last skip the all-reduce,
`model.no_sync()`), with gradient clipping, the chapter's `AdamW` and a learning rate that
changes every step. Rank 0 gathers every rank's final parameters, per-step losses and count of
all-reduces, and writes them to OUT with `torch.save`.

    python -m torch.distributed.run --nnodes 1 --nproc-per-node 2 --rdzv-backend c10d \
        --rdzv-endpoint 127.0.0.1:0 --local-addr 127.0.0.1 tests/distributed_train_step.py OUT [--impl DIR]

A plain module too: `tests/test_training_distributed.py` imports the model, the data and the
loop from here, to run the same steps in one process on the full batch.

Sharding: step s has a global batch of `WORLD * ACCUMULATION * MICRO_BATCH` rows. Rank r takes
rows r::WORLD and cuts them into `ACCUMULATION` contiguous micro-batches of `MICRO_BATCH` rows,
so the ranks' j-th micro-batches together hold exactly the rows of the global batch's j-th
contiguous block of `WORLD * MICRO_BATCH` rows (in another order). DDP averages the gradients
over the ranks and each rank's loss is a mean over its rows, so the step equals one process
running `ACCUMULATION` micro-batches of `WORLD * MICRO_BATCH` rows: `shard(..., rank=0, world=1)`.

Notation: B rows of a batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

REFERENCE = Path(__file__).resolve().parent.parent / "reference_solutions"

WORLD = 2  # processes (ranks)
VOCAB = 32
D_MODEL = 16
HIDDEN = 32  # the MLP's width
SEQ_LEN = 8
MICRO_BATCH = 4  # rows per rank per micro-batch
ACCUMULATION = 2  # micro-batches per step: the first runs under no_sync
LRS = (3e-2, 2e-2, 1e-2, 5e-3)  # one per step: a schedule changes the lr between steps
STEPS = len(LRS)
MAX_GRAD_NORM = 0.25  # below every step's gradient norm here (about 0.4), so every step clips
WEIGHT_DECAY = 0.1
SEED = 0

Batch = tuple[Tensor, Tensor]  # (inputs, targets), each (B, T) integer


def build_model() -> nn.Module:
    """The same tiny dropout-free language model on every call (and on every rank)."""
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Embedding(VOCAB, D_MODEL),  # (B, T) -> (B, T, D_MODEL)
        nn.Linear(D_MODEL, HIDDEN),  # (B, T, HIDDEN)
        nn.GELU(),
        nn.Linear(HIDDEN, VOCAB),  # (B, T, V) the logits
    )


def global_batches() -> list[Batch]:
    """Each step's global batch, (WORLD * ACCUMULATION * MICRO_BATCH, T) inputs and targets."""
    generator = torch.Generator().manual_seed(SEED)
    rows = WORLD * ACCUMULATION * MICRO_BATCH
    batches = []
    for _ in range(STEPS):
        inputs = torch.randint(VOCAB, (rows, SEQ_LEN), generator=generator)  # (B, T)
        noise = torch.randint(VOCAB, (rows, SEQ_LEN), generator=generator)  # (B, T)
        # a rule to learn, broken at a quarter of the positions, so no two rows pull alike
        targets = torch.where(noise < VOCAB // 4, noise, (5 * inputs + 3) % VOCAB)  # (B, T)
        batches.append((inputs, targets))
    return batches


def shard(batch: Batch, *, rank: int, world: int) -> list[Batch]:
    """Rank ``rank``'s micro-batches of one global batch: rows ``rank::world``, cut into
    ``ACCUMULATION`` contiguous micro-batches (``world=1``: the one-process split)."""
    inputs, targets = (t[rank::world] for t in batch)  # (B / world, T) each
    return list(zip(inputs.chunk(ACCUMULATION), targets.chunk(ACCUMULATION), strict=True))


def train(training_loop: ModuleType, model: nn.Module, steps: Sequence[Sequence[Batch]]) -> list[float]:
    """``train_step`` on each step's micro-batches with ``training_loop``'s AdamW, the lr set
    from ``LRS`` before each step; returns the per-step losses ``train_step`` returned."""
    optimizer = training_loop.AdamW(model.parameters(), lr=LRS[0], weight_decay=WEIGHT_DECAY)
    losses = []
    for lr, micro_batches in zip(LRS, steps, strict=True):
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses.append(training_loop.train_step(model, micro_batches, optimizer, max_grad_norm=MAX_GRAD_NORM))
    return losses


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the file rank 0 writes the results to (torch.save)")
    parser.add_argument("--impl", type=Path, default=REFERENCE, help="the folder holding training_loop.py")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.impl.resolve()))  # as a student's tree is graded: its folder first
    import training_loop

    dist.init_process_group("gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        if world != WORLD:
            raise SystemExit(f"run with --nproc-per-node {WORLD}, not {world}: the shards assume {WORLD} ranks")
        result = run_rank(training_loop, rank=rank, world=world)
        gathered: list[dict | None] = [None] * world
        dist.all_gather_object(gathered, result)
        if rank == 0:
            torch.save({"ranks": gathered}, args.out)
        # no rank tears gloo down while another still talks to it: without this, one rank now
        # and then aborted in its exit ("terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_rank(training_loop: ModuleType, *, rank: int, world: int) -> dict:
    """This rank's training under DDP: {"state_dict", "losses", "allreduces"}. The DDP wrapper
    (which holds the process group) is gone when this returns, before the group is destroyed."""
    model = DistributedDataParallel(build_model())
    allreduces = 0

    def counting_allreduce(state, bucket):  # unannotated: DDP rejects the strings the __future__ import makes
        nonlocal allreduces
        allreduces += 1
        return default_hooks.allreduce_hook(state, bucket)  # DDP's own average (state None: all ranks)

    model.register_comm_hook(None, counting_allreduce)
    losses = train(training_loop, model, [shard(batch, rank=rank, world=world) for batch in global_batches()])
    state = {name: value.detach().clone() for name, value in model.module.state_dict().items()}
    return {"state_dict": state, "losses": losses, "allreduces": allreduces}

if __name__ == "__main__":
    main()
