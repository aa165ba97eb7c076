"""The chapter 03 experiment (site/scripts/experiment_positional.py) runs end to end in --quick
mode, writes the JSON and plot the reading page uses, and stops a stub tree with one line."""

from __future__ import annotations

import json

from tests.experiments import SCRIPTS, ExperimentTests

ENCODINGS = {"none", "sinusoidal", "learned", "rope", "alibi"}
EVAL_LENS = ["32", "64", "128"]


class TestExperimentPositional(ExperimentTests):
    script = SCRIPTS / "experiment_positional.py"
    stopped = "experiment-positional needs chapters 02 and 03 implemented in assignments/"
    table_rows = ENCODINGS

    def test_quick_run_scores_every_encoding_at_every_length(self, quick_run):
        _, results, _ = quick_run
        data = json.loads(results.read_text())
        assert set(data["encodings"]) == ENCODINGS
        assert [str(n) for n in data["config"]["eval_lens"]] == EVAL_LENS
        accuracies = {(name, n): entry["accuracy"][n] for name, entry in data["encodings"].items()
                      for n in EVAL_LENS}
        assert {key: a for key, a in accuracies.items() if not 0.0 <= a <= 1.0} == {}
