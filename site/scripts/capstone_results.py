"""Record a capstone run for the reading page: its figures as JSON, its loss curve as a PNG.

    nox -s capstone                                   # trains cpu-tiny into reports/capstone/cpu-tiny
    python site/scripts/capstone_results.py reports/capstone/cpu-tiny --seconds 151 --note "..."

reads the run's ``metrics.jsonl``, ``sample.txt`` and checkpoint (the configuration), and writes
``site/docs/results/capstone_<preset>.json``; ``site/scripts/figures.py`` draws it with `plot`
into ``site/docs/figures/07_capstone_<preset>.png`` (training loss averaged over 20-step
windows, validation loss as dots). The wall time is the
one thing a run folder does not hold: give it, as measured, with ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from matplotlib.figure import Figure

DOCS = Path(__file__).resolve().parent.parent / "docs"
WINDOW = 20  # steps per point of the training curve


def record(run: Path, seconds: float, note: str) -> dict:
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "val_loss" in m]
    checkpoint = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    return {"preset": run.name,  # train_gpt.py names a run's folder after its preset
            "gpt_config": checkpoint["gpt_config"], "preset_settings": checkpoint.get("preset", {}),
            "steps": len(steps),
            "wall_seconds": seconds, "note": note,
            "final_val_loss": evals[-1]["val_loss"], "first_loss": steps[0]["loss"],
            "val_loss": [[m["step"], round(m["val_loss"], 4)] for m in evals],
            "train_loss": [[steps[i]["step"], round(sum(m["loss"] for m in steps[i:i + WINDOW]) / len(steps[i:i + WINDOW]), 4)]
                           for i in range(0, len(steps), WINDOW)],
            "median_tokens_per_s": sorted(m["tokens_per_s"] for m in steps)[len(steps) // 2],
            "sample": (run / "sample.txt").read_text()}


def plot(results: dict, path: Path) -> Path:
    figure = Figure(figsize=(7, 3.6), dpi=120)
    axes = figure.subplots()
    axes.plot(*zip(*results["train_loss"]), label=f"training loss (mean of {WINDOW} steps)", color="#1f77b4")
    axes.plot(*zip(*results["val_loss"]), "o", label="validation loss (unseen works)", color="#d62728")
    axes.axhline(1.9, color="grey", linestyle=":", linewidth=1, label="the course's target, 1.9")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (nats per character)")
    axes.set_ylim(1.2, 4.6)
    axes.set_title(f"capstone GPT, {results['preset']} preset")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's folder (metrics.jsonl, sample.txt, checkpoint.pt)")
    parser.add_argument("--seconds", type=float, required=True, help="the run's wall time, as measured")
    parser.add_argument("--note", default="", help="where and how it ran (machine, load)")
    args = parser.parse_args(argv)
    results = record(args.run, args.seconds, args.note)
    name = results["preset"]
    json_path = DOCS / "results" / f"capstone_{name}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {json_path}\nwrote {plot(results, DOCS / 'figures' / f'07_capstone_{name}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
