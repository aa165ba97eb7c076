"""Read what an offline Weights & Biases run wrote, with no network and no W&B account.

`WANDB_MODE=offline` leaves a folder `wandb/offline-run-DATE-ID/` whose `run-ID.wandb` file
holds every record the run sent (the run, its config, each history row, summary updates):
protocol-buffer messages (`wandb.proto.wandb_internal_pb2.Record`) in the LevelDB log
format: a 7-byte file header (":W&B", the magic 0xBEE1, a version byte), then 32 KiB blocks
of chunks, each a 7-byte header (CRC, length, chunk type) and its bytes; a record too long
for its block continues in the next (FIRST, MIDDLE..., LAST chunks). `wandb sync` uploads the
same file later. wandb 0.31 no longer ships a Python reader for it, hence this one.

W&B's writer is a separate process (wandb-core) that can still be appending when `finish()` has
returned (seen here on two busy cores: the history rows landed after the test read the file),
so a run is read once its file holds the `exit` record, the last one a finished run writes.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7  # a chunk's header: CRC-32 (4 bytes), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
FINISH_WAIT = 60.0  # seconds a finished run's writer gets to land its last record on disk


@dataclass
class OfflineRun:
    """What one offline run folder says: its id, name, group, config, history and summary."""

    folder: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one dict per row, "_step" its step
    summary: dict = field(default_factory=dict)
    exited: bool = False  # the file holds the run's exit record: nothing more will be written

    def values(self, key: str) -> dict[int, float]:
        """step -> the value of ``key`` in that step's row, for the rows that have it."""
        return {row["_step"]: row[key] for row in self.history if key in row}


def _chunks(data: bytes):
    if data[:4] != b":W&B":
        raise ValueError(f"not a W&B log: it starts {data[:7]!r}")
    pos = HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if length == 0 and kind == 0:  # zero padding to the block's end
            pos += left
            continue
        if pos + HEADER + length > len(data):  # a chunk still being written
            return
        yield kind, data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length


def records(path: Path):
    """The records of a .wandb file, in order, as wandb_internal_pb2.Record messages."""
    from wandb.proto import wandb_internal_pb2

    parts: list[bytes] = []
    for kind, chunk in _chunks(Path(path).read_bytes()):
        parts.append(chunk)
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(folder: Path) -> OfflineRun:
    """The run recorded in ``folder`` (an ``offline-run-*`` folder)."""
    (log,) = Path(folder).glob("run-*.wandb")
    run = OfflineRun(Path(folder))
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":  # the run's start, and later updates that may leave fields empty
            run.run_id = record.run.run_id or run.run_id
            run.name = record.run.display_name or run.name
            run.group = record.run.run_group or run.group
            run.config |= {_key(i): json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "config":
            run.config |= {_key(i): json.loads(i.value_json) for i in record.config.update}
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary |= {_key(i): json.loads(i.value_json) for i in record.summary.update}
        elif kind == "exit":
            run.exited = True
    return run


def read_finished_run(folder: Path) -> OfflineRun:
    """The run recorded in ``folder``, once its file holds the exit record (see the module's
    docstring); AssertionError when that takes longer than FINISH_WAIT."""
    deadline = time.monotonic() + FINISH_WAIT
    while not (run := read_run(folder)).exited:
        assert time.monotonic() < deadline, f"{folder}: no exit record after {FINISH_WAIT:.0f} s: the run never finished"
        time.sleep(0.2)
    return run


def offline_runs(out_dir: Path) -> list[OfflineRun]:
    """Every offline run under ``out_dir/wandb/``, oldest first."""
    return [read_finished_run(folder) for folder in sorted((Path(out_dir) / "wandb").glob("offline-run-*"))]
