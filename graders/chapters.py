"""The chapter table: one row per chapter of the course, the single place that names them.

Everything else (the CLI's `--chapter`, the suites' file names, the reports, the stub
generator, the worker's time budget) looks chapters up here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (or release) root
GRADERS = ROOT / "graders"
REFERENCE = ROOT / "reference_solutions"
ASSIGNMENTS = ROOT / "assignments"


# A correct solution may be several times slower than the reference (loops where the
# reference vectorizes), graded on a machine several times busier (suites graded side by side
# on shared cores): ten times the reference's seconds leaves room for both.
BUDGET_FACTOR = 10.0
# The smallest budget. The chapters' references grade in 4 to 12 s, so 240 s is twenty times
# the slowest of them; and seven chapters at 240 s stay under the batch's 1800 s backstop per
# submission (`batch.DEFAULT_TIMEOUT_S`), so a submission that spends every budget still gets
# a report with its scores, not a timeout row.
BUDGET_FLOOR_S = 240.0
# Examples per Hypothesis test in the `grading` profile (graders/conftest.py), the profile the
# reference_s figures were measured under. A profile with more examples (`thorough`) scales every
# chapter's budget by the ratio, so more examples never turn a correct solution's tests into timeouts.
GRADING_MAX_EXAMPLES = 15


@dataclass(frozen=True)
class Chapter:
    number: int
    id: str
    modules: tuple[str, ...]  # student module names, without ".py"
    page: str  # reading page under site/docs/
    # Fully qualified names the student may not use in this chapter. "Tensor.NAME" bans the
    # method on any object (e.g. "Tensor.softmax" catches `x.softmax(...)`).
    banned: tuple[str, ...] = field(default=())
    # Modules of earlier chapters this chapter's tests also call (the worker imports them too);
    # a student who has not done them loses only those tests.
    uses: tuple[str, ...] = field(default=())
    # Seconds a grade of the reference takes (public and hidden suites, the worker's boot
    # included): the scale of the chapter's wall-clock budget (`budget_s`).
    reference_s: float = 0.0
    # Points of the public and of the hidden suite. The student release has no hidden suite, so
    # its reports and README take the hidden share from here; tests/test_feedback.py checks both
    # figures against a grade of the reference.
    public_points: float = 0.0
    hidden_points: float = 0.0

    @property
    def slug(self) -> str:
        """File-name stem of the chapter's suites and snapshots, e.g. `02_multi_head_attention`."""
        return f"{self.number:02d}_{self.id}"

    @property
    def module(self) -> str:
        """The chapter's main student module."""
        return self.modules[0]

    def suite(self, visibility: str) -> Path:
        return GRADERS / visibility / f"test_{self.slug}.py"

    def budget_s(self, factor: float = BUDGET_FACTOR, max_examples: int = GRADING_MAX_EXAMPLES) -> float:
        """Wall-clock seconds the student's code may take over the whole chapter: `factor` times
        the reference's grade, and never less than BUDGET_FLOOR_S, both scaled by `max_examples`
        over GRADING_MAX_EXAMPLES when the Hypothesis profile draws more. Each call also has its own
        limit; this one stops a submission that stays just under it in every call."""
        scale = max(1.0, max_examples / GRADING_MAX_EXAMPLES)
        return scale * max(BUDGET_FLOOR_S, factor * self.reference_s)


# reference_s: the grade command's own seconds for `--impl reference_solutions --chapter N`
# on a 2-core x86 machine with nothing else running (a lower bound: CI's shared cores are slower).
CHAPTERS: tuple[Chapter, ...] = (
    Chapter(1, "transformer_architecture", ("transformer_full",), "01_transformer_architecture.md",
            banned=("torch.nn.Transformer", "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder",
                    "torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer"),
            reference_s=8.8,
            public_points=40, hidden_points=61),
    Chapter(2, "multi_head_attention", ("multi_head_attention",), "02_multi_head_attention.md",
            banned=("torch.nn.functional.scaled_dot_product_attention", "torch.nn.functional.softmax",
                    "torch.softmax", "torch.special.softmax", "torch.nn.Softmax", "torch.nn.MultiheadAttention",
                    "Tensor.softmax"), reference_s=5.3,
            public_points=35, hidden_points=39),
    Chapter(3, "positional_encodings", ("positional_encoding",), "03_positional_encodings.md",
            uses=("multi_head_attention",), reference_s=3.6,
            public_points=30, hidden_points=34),
    Chapter(4, "feedforward_networks", ("feedforward",), "04_feedforward_networks.md",
            banned=("torch.nn.functional.relu", "torch.nn.functional.relu_", "torch.relu", "torch.relu_",
                    "torch.nn.functional.gelu", "torch.nn.functional.silu", "torch.nn.ReLU", "torch.nn.GELU",
                    "torch.nn.SiLU", "Tensor.relu", "Tensor.relu_"), reference_s=5.6,
            public_points=32, hidden_points=41),
    Chapter(5, "layer_normalization", ("normalization",), "05_layer_normalization.md",
            banned=("torch.nn.functional.layer_norm", "torch.nn.functional.rms_norm", "torch.nn.functional.batch_norm",
                    "torch.nn.LayerNorm", "torch.nn.RMSNorm", "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d"),
            reference_s=3.7,
            public_points=30, hidden_points=30),
    Chapter(6, "training_dynamics", ("training_loop",), "06_training_dynamics.md",
            banned=("torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss",
                    "torch.nn.functional.log_softmax", "torch.log_softmax", "torch.special.log_softmax",
                    "Tensor.log_softmax", "torch.nn.CrossEntropyLoss", "torch.nn.NLLLoss",
                    "torch.nn.utils.clip_grad_norm_", "torch.optim.Adam", "torch.optim.AdamW",
                    "torch.optim.lr_scheduler.CosineAnnealingLR", "torch.optim.lr_scheduler.LambdaLR",
                    "torch.optim.lr_scheduler.OneCycleLR"), reference_s=11.0,
            public_points=46, hidden_points=52),
    Chapter(7, "capstone", ("gpt", "train_gpt"), "07_capstone.md",
            uses=("multi_head_attention", "positional_encoding", "feedforward", "normalization", "training_loop"),
            reference_s=11.8,
            public_points=55, hidden_points=25),
)


class UnknownChapter(ValueError):
    pass


def find(key: str | int) -> Chapter:
    """A chapter by id (`multi_head_attention`), number (`2`, `02`) or slug."""
    text = str(key).strip()
    for chapter in CHAPTERS:
        if text in (chapter.id, chapter.slug) or (text.isdigit() and int(text) == chapter.number):
            return chapter
    known = ", ".join(f"{c.number} ({c.id})" for c in CHAPTERS)
    raise UnknownChapter(f"unknown chapter {key!r}; known chapters: {known}")


def graded() -> tuple[Chapter, ...]:
    """Chapters that have a suite in this tree (the public one, at least)."""
    return tuple(c for c in CHAPTERS if c.suite("public").exists())
