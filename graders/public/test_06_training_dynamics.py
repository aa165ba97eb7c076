"""Chapter 06 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/06_training_dynamics/` and are shown when a test fails. Your instructor's
hidden tests check much more (every schedule boundary over all parameters, PyTorch's
cross-entropy, clipping and AdamW over many steps and groups, accumulation with clipping and a
gradient scaler, bfloat16 autocast, an interrupted-and-resumed run against the uninterrupted
one, and the scaling laws against numerical minimization and synthetic fits).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from graders import checks, tolerances
from graders.strategies import randn
from graders.submission import obj

TASKS = ("schedules", "cross_entropy", "clip_grad_norm", "AdamW", "train_step", "Trainer", "scaling_laws")
SECTIONS = {"schedules": "schedules", "cross_entropy": "cross-entropy", "clip_grad_norm": "clipping",
            "AdamW": "adamw", "train_step": "accumulation", "Trainer": "trainer", "scaling_laws": "scaling-laws"}
HARNESS = "$harness"

# Public tests show the expected value in their messages.
close = functools.partial(checks.assert_number_close, reveal=True)


@pytest.mark.points(0)
@pytest.mark.task("static")
def test_no_banned_apis(static_scan, chapter):
    """The module parses and calls none of the chapter's banned APIs (F.cross_entropy, torch.optim.AdamW, ...)."""
    checks.static_clean(static_scan, chapter.module)


# --- schedules ----------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("schedules")
def test_cosine_schedule_landmarks(student):
    """cosine_schedule at step 0, mid warm-up, the end of warm-up, mid decay, the end and after."""
    kwargs = {"max_lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}
    landmarks = {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.55, 110: 0.1, 500: 0.1}
    for step, expected in landmarks.items():
        close(student.call("cosine_schedule", step, **kwargs), expected, tolerances.SCHEDULE,
              what=f"cosine_schedule({step}, max_lr=1, min_lr=0.1, warmup_steps=10, total_steps=110)", scale=1.0,
              hint="max_lr * step / warmup_steps, then min_lr + (max_lr - min_lr) * (1 + cos(pi * p)) / 2")


@pytest.mark.points(1)
@pytest.mark.task("schedules")
def test_noam_schedule_peaks_at_warmup(student):
    """noam_schedule rises until step == warmup_steps, where it equals d_model^-0.5 * warmup^-0.5, then falls."""
    values = {step: student.call("noam_schedule", step, d_model=512, warmup_steps=4000) for step in (3999, 4000, 4001)}
    peak = 512 ** -0.5 * 4000 ** -0.5
    close(values[4000], peak, tolerances.SCHEDULE, scale=peak, what="noam_schedule(4000, d_model=512, "
          "warmup_steps=4000)", hint="factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)")
    if not values[3999] < values[4000] > values[4001]:
        checks.fail(f"noam_schedule should peak at step 4000: got {values[3999]} at 3999, {values[4000]} at 4000, "
                    f"{values[4001]} at 4001")


@pytest.mark.points(1)
@pytest.mark.task("schedules")
def test_schedules_reject_bad_steps(student):
    """A negative step (cosine) and step 0 (Noam counts from 1) raise ValueError."""
    checks.expect_value_error(lambda: student.call("cosine_schedule", -1, max_lr=1.0, min_lr=0.0, warmup_steps=10,
                                                   total_steps=100), what="cosine_schedule(-1, ...)")
    checks.expect_value_error(lambda: student.call("noam_schedule", 0, d_model=512, warmup_steps=4000),
                              what="noam_schedule(0, ...)")


# --- cross-entropy ------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("cross_entropy")
def test_cross_entropy_of_uniform_logits_is_log_vocab(student):
    """Equal logits over V classes give a loss of log V, whatever the targets."""
    loss = student.call("cross_entropy", torch.zeros(3, 4, 7), torch.randint(0, 7, (3, 4)))
    close(loss, math.log(7), tolerances.cross_entropy(torch.float32), what="cross_entropy(zeros(3, 4, 7), targets)")


@pytest.mark.points(1)
@pytest.mark.task("cross_entropy")
def test_cross_entropy_golden(student, snapshot):
    """cross_entropy on fixed (2, 5, 11) logits of scale 5, two targets ignored, matches the golden loss."""
    targets = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(3))
    targets[0, 1] = targets[1, 4] = -100
    t = snapshot.inputs(logits=randn((2, 5, 11), seed=2, scale=5.0), targets=targets)
    loss = student.call("cross_entropy", t["logits"], t["targets"])
    snapshot.assert_match({"loss": checks.check_tensor(loss, what="cross_entropy(...)", shape=())},
                          {torch.float32: tolerances.cross_entropy(torch.float32)},
                          hint="mean over the targets that are not ignore_index only")


@pytest.mark.points(1)
@pytest.mark.task("cross_entropy")
def test_cross_entropy_is_stable_for_huge_logits(student):
    """Logits of +-1e4 give the exact, finite loss (the log-sum-exp trick)."""
    logits = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 1e4]])
    loss = student.call("cross_entropy", logits, torch.tensor([0, 1]))
    checks.assert_finite(checks.check_tensor(loss, what="cross_entropy", shape=()), what="cross_entropy at 1e4")
    close(loss, 5e3, tolerances.cross_entropy(torch.float32), what="cross_entropy([[1e4, -1e4, 0], [0, 0, 1e4]], [0, 1])",
          hint="subtract each row's max before exp: exp(1e4) overflows")


# --- clipping -----------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("clip_grad_norm")
def test_clip_grad_norm_scales_to_max_norm(student):
    """Gradients (3, 4) and (12,) have global norm 13; clipping to 1 returns 13 and scales both by 1/13."""
    objects = {"a": {"cls": "parameter", "module": HARNESS, "init": {"data": torch.zeros(2), "grad": torch.tensor([3.0, 4.0])}},
               "b": {"cls": "parameter", "module": HARNESS, "init": {"data": torch.zeros(1), "grad": torch.tensor([12.0])}}}
    result = student.run(objects=objects, calls=[{"fn": "clip_grad_norm", "args": [[obj("a"), obj("b")], 1.0]}],
                         attrs=["a.grad", "b.grad"])
    close(result.output, 13.0, tolerances.CLIP[torch.float32], what="the returned norm (before clipping)")
    tol = tolerances.CLIP[torch.float32]
    coef = 1.0 / (13.0 + 1e-6)
    checks.assert_close(result.attrs["a.grad"], torch.tensor([3.0, 4.0]) * coef, tol, what="a.grad", reveal=True,
                        hint="multiply every gradient by max_norm / (norm + eps)")
    checks.assert_close(result.attrs["b.grad"], torch.tensor([12.0]) * coef, tol, what="b.grad", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("clip_grad_norm")
def test_clip_grad_norm_leaves_small_gradients(student):
    """A global norm below max_norm changes nothing (the coefficient is clamped at 1)."""
    objects = {"a": {"cls": "parameter", "module": HARNESS, "init": {"data": torch.zeros(2), "grad": torch.tensor([0.3, 0.4])}}}
    result = student.run(objects=objects, calls=[{"fn": "clip_grad_norm", "args": [[obj("a")], 1.0]}], attrs=["a.grad"])
    close(result.output, 0.5, tolerances.CLIP[torch.float32], what="the returned norm")
    checks.assert_equal(result.attrs["a.grad"], torch.tensor([0.3, 0.4]), what="a.grad after clipping to 1.0",
                        reveal=True, hint="never scale gradients up: clamp the coefficient at 1")


# --- AdamW --------------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("AdamW")
def test_adamw_first_step_is_lr_times_sign(student):
    """With no weight decay, Adam's first step moves each weight by about -lr * sign(grad) (bias correction)."""
    grad = torch.tensor([4.0, -0.01, 2.5], dtype=torch.float64)
    objects = {"p": {"cls": "parameter", "module": HARNESS, "init": {"data": torch.zeros(3, dtype=torch.float64),
                                                                      "grad": grad}},
               "opt": {"cls": "AdamW", "init": {"params": [obj("p")], "lr": 0.1, "weight_decay": 0.0}}}
    result = student.run(objects=objects, calls=[{"fn": "opt.step", "discard": True}], attrs=["p"])
    expected = -0.1 * grad / (grad.abs() + 1e-8)  # m_hat = g, sqrt(v_hat) = |g|
    checks.assert_close(result.attrs["p"], expected, tolerances.ADAMW, what="p after one step", reveal=True,
                        hint="without bias correction the first step is far smaller than lr")


@pytest.mark.points(1)
@pytest.mark.task("AdamW")
def test_adamw_golden_steps(student, snapshot):
    """Five AdamW steps (lr 0.01, weight decay 0.1) on fixed weights and gradients match the golden weights."""
    t = snapshot.inputs(p=randn((3, 4), seed=4, dtype=torch.float64),
                        **{f"g{i}": randn((3, 4), seed=10 + i, dtype=torch.float64) for i in range(5)})
    objects = {"p": {"cls": "parameter", "module": HARNESS, "init": {"data": t["p"]}},
               "opt": {"cls": "AdamW", "init": {"params": [obj("p")], "lr": 0.01, "weight_decay": 0.1}}}
    calls = []
    for i in range(5):
        calls += [{"fn": "set_grads", "module": HARNESS, "args": [[obj("p")], [t[f"g{i}"]]]},
                  {"fn": "opt.step", "discard": True}]
    result = student.run(objects=objects, calls=calls, attrs=["p"])
    snapshot.assert_match({"p": result.attrs["p"]}, {torch.float64: tolerances.ADAMW},
                          hint="decay the weights by lr * weight_decay first, apart from the Adam update")


# --- train_step ---------------------------------------------------------------------------------


def step_request(micro: list, *, state: dict, vocab: int, d_model: int, **kwargs) -> dict:
    """A request running train_step once on the harness's tiny model with the harness's SGD."""
    objects = {"model": {"cls": "tiny_lm", "module": HARNESS,
                         "init": {"vocab_size": vocab, "d_model": d_model, "state_dict": state}},
               "params": {"cls": "parameters", "module": HARNESS, "init": {"module": obj("model")}},
               "opt": {"cls": "sgd", "module": HARNESS, "init": {"params": obj("params"), "lr": 0.5}}}
    return {"objects": objects, "calls": [{"fn": "train_step", "args": [obj("model"), micro, obj("opt")], "kwargs": kwargs},
                                          {"fn": "model.state_dict"}]}


@pytest.mark.points(1)
@pytest.mark.task("train_step")
def test_train_step_accumulation_equals_one_big_batch(student):
    """Two micro-batches of 3 rows give the same weights as one step on the 6 rows together."""
    state = {"0.weight": randn((6, 4), seed=1), "2.weight": randn((4, 4), seed=2), "2.bias": randn((4,), seed=3),
             "4.weight": randn((6, 4), seed=4), "4.bias": randn((6,), seed=5)}
    x = torch.randint(0, 6, (6, 5), generator=torch.Generator().manual_seed(6))
    y = torch.randint(0, 6, (6, 5), generator=torch.Generator().manual_seed(7))
    split = student.run(**step_request([(x[:3], y[:3]), (x[3:], y[3:])], state=state, vocab=6, d_model=4))
    whole = student.run(**step_request([(x, y)], state=state, vocab=6, d_model=4))
    for name, value in whole.outputs[1].items():
        checks.assert_close(split.outputs[1][name], value, tolerances.LAYER[torch.float32],
                            what=f"{name} after a step of 2 micro-batches vs one of the whole batch",
                            hint="divide each micro-batch's loss by the number of micro-batches before backward()")


# --- the trainer --------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("Trainer")
def test_trainer_writes_metrics_checkpoint_and_plot(student):
    """train() for 6 steps with out_dir logs a record per step and an evaluation, and writes its three files."""
    config = {"max_steps": 6, "warmup_steps": 2, "eval_every": 3, "eval_batches": 2, "checkpoint_every": 3,
              "max_lr": 0.01, "min_lr": 0.001, "out_dir": "run", "progress": False}
    objects = {"model": {"cls": "tiny_lm", "module": HARNESS, "init": {"vocab_size": 8, "d_model": 8}},
               "batches": {"cls": "batch_source", "module": HARNESS,
                           "init": {"vocab_size": 8, "batch_size": 4, "seq_len": 6}},
               "config": {"cls": "TrainConfig", "init": config}}
    result = student.run(objects=objects, calls=[{"fn": "train", "args": [obj("model"), obj("batches"), obj("config")],
                                                  "store": "trainer"},
                                                 {"fn": "files", "module": HARNESS, "args": ["run"]}],
                         attrs=["trainer.history", "trainer.step"])
    if result.outputs[1] != ["checkpoint.pt", "loss.png", "metrics.jsonl"]:
        checks.fail(f"out_dir holds {result.outputs[1]}, expected checkpoint.pt, loss.png and metrics.jsonl")
    history = result.attrs["trainer.history"]
    steps = [r.get("step") for r in history if "loss" in r]
    evals = [r.get("step") for r in history if "val_loss" in r]
    if steps != [1, 2, 3, 4, 5, 6] or evals != [3, 6] or result.attrs["trainer.step"] != 6:
        checks.fail(f"expected loss records for steps 1..6 and evaluations at 3 and 6; got loss steps {steps}, "
                    f"evaluations {evals}, trainer.step {result.attrs['trainer.step']}")


# --- scaling laws -------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("scaling_laws")
def test_scaling_law_examples(student):
    """training_flops(70e9, 1.4e12) = 5.88e23; chinchilla_loss(70e9, 1.4e12) = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28."""
    close(student.call("training_flops", 70e9, 1.4e12), 5.88e23, tolerances.SCALING, what="training_flops(70e9, 1.4e12)")
    expected = 1.69 + 406.4 / 70e9 ** 0.34 + 410.7 / 1.4e12 ** 0.28
    close(student.call("chinchilla_loss", 70e9, 1.4e12), expected, tolerances.SCALING,
          what="chinchilla_loss(70e9, 1.4e12)")


@pytest.mark.points(1)
@pytest.mark.task("scaling_laws")
def test_compute_optimal_spends_the_budget(student):
    """compute_optimal(1e21) returns (N, D) with 6 * N * D = 1e21."""
    result = student.call("compute_optimal", 1e21)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        checks.fail(f"compute_optimal should return (n_params, n_tokens), got {result!r}")
    close(6 * float(result[0]) * float(result[1]), 1e21, tolerances.SCALING, what="6 * N * D for compute_optimal(1e21)")
