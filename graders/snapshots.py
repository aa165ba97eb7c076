"""Golden values for public tests (CS336's NumpySnapshot, in spirit).

One `.npz` per test under `graders/snapshots/<chapter slug>/`, holding the test's inputs
(`input/<name>`) and the reference's outputs (`output/<name>`). They are written only by
`python -m graders snapshots`, which runs the public suites against the reference with
`--snapshot-update`; a normal run reads them, and a missing or extra key is an error.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from graders import checks
from graders.chapters import GRADERS
from graders.tolerances import Tolerance

SNAPSHOTS = GRADERS / "snapshots"


class SnapshotMissing(Exception):
    pass


class Snapshot:
    def __init__(self, slug: str, test_name: str, *, update: bool) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip("_")
        self.path = SNAPSHOTS / slug / f"{safe}.npz"
        self.update = update
        self._stored: dict[str, np.ndarray] | None = None
        self._pending: dict[str, np.ndarray] = {}

    def _load(self) -> dict[str, np.ndarray]:
        if self._stored is None:
            if not self.path.exists():
                raise SnapshotMissing(f"snapshot {self.path.name} is missing; run `python -m graders snapshots`")
            with np.load(self.path) as data:
                self._stored = {key: data[key] for key in data.files}
        return self._stored

    def inputs(self, **tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        """The test's inputs: recorded when updating, read back from the snapshot otherwise."""
        if self.update:
            self._pending.update({f"input/{k}": v.numpy() for k, v in tensors.items()})
            return tensors
        stored = self._load()
        return {k: torch.from_numpy(stored[f"input/{k}"].copy()) for k in tensors}

    def assert_match(self, actual: dict[str, torch.Tensor], tolerances: dict[torch.dtype, Tolerance],
                     hint: str = "") -> None:
        """Each named output equals the reference's golden value (shown on failure: a public test)."""
        if self.update:
            self._pending.update({f"output/{k}": v.detach().numpy() for k, v in actual.items()})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self._pending)
            return
        stored = self._load()
        expected_keys = {k.removeprefix("output/") for k in stored if k.startswith("output/")}
        if set(actual) != expected_keys:
            raise SnapshotMissing(f"snapshot {self.path.name} holds {sorted(expected_keys)}, the test produced "
                                  f"{sorted(actual)}; regenerate with `python -m graders snapshots`")
        for key, value in actual.items():
            expected = torch.from_numpy(stored[f"output/{key}"].copy())
            checks.assert_close(value, expected, tolerances[expected.dtype], what=key, reveal=True, hint=hint)
