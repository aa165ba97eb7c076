"""Chapter 06 mutants: plausible student bugs in `training_loop.py`.

Each mutant is a small text edit of `reference_solutions/training_loop.py` that changes
behaviour on some valid input chapter 06's graders send. ``VALID_VARIANTS`` are correct
solutions written another way (a float32 schedule, torch.logsumexp, float64 loss math, one
norm over the concatenated gradients, PyTorch's lerp form of Adam): each must keep full marks.
"""

from __future__ import annotations

from . import Mutant

MUTANTS: list[Mutant] = [
    # --- schedules ----------------------------------------------------------------------------
    Mutant(
        name="warmup_off_by_one",
        tasks=('schedules',),
        description="the warm-up counts steps from 1: max_lr * (step + 1) / warmup_steps",
        old="return max_lr * step / warmup_steps",
        new="return max_lr * (step + 1) / warmup_steps",
    ),
    Mutant(
        name="cosine_over_total_steps",
        tasks=('schedules',),
        description="the cosine runs over all total_steps instead of the decay steps after the warm-up",
        old="progress = (step - warmup_steps) / (total_steps - warmup_steps)  # in [0, 1)",
        new="progress = step / total_steps",
    ),
    Mutant(
        name="cosine_ignores_min_lr",
        tasks=('schedules',),
        description="the cosine decays to 0 instead of min_lr",
        old="return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))",
        new="return max_lr * 0.5 * (1.0 + math.cos(math.pi * progress))",
    ),
    Mutant(
        name="cosine_rises_after_the_end",
        tasks=('schedules',),
        description="no min_lr phase: past total_steps the cosine comes back up",
        old="    if step >= total_steps:\n        return min_lr\n    if step >= warmup_steps:",
        new="    if step >= warmup_steps and total_steps > warmup_steps:",
    ),
    Mutant(
        name="noam_wrong_exponent",
        tasks=('schedules',),
        description="Noam's warm-up term uses warmup_steps ** -0.5",
        old="step * warmup_steps ** -1.5",
        new="step * warmup_steps ** -0.5",
    ),
    # --- cross-entropy ------------------------------------------------------------------------
    Mutant(
        name="ce_ignored_counted_in_mean",
        tasks=('cross_entropy',),
        description="the mean divides by every target, ignored ones included",
        old="return (losses.sum() / keep.sum()).to(logits.dtype)",
        new="return (losses.sum() / keep.numel()).to(logits.dtype)",
    ),
    Mutant(
        name="ce_no_max_shift",
        tasks=('cross_entropy',),
        description="log-sum-exp without subtracting the max: exp overflows for large logits",
        old="top = z.amax(dim=-1, keepdim=True).detach()  # (B*T, 1); a constant shift, no gradient needed",
        new="top = torch.zeros_like(z[:, :1])  # (B*T, 1)",
    ),
    Mutant(
        name="ce_detached_log_norm",
        tasks=('cross_entropy',),
        description="the log-normalizer is detached, so the gradient misses the softmax term",
        old="log_norm = top.squeeze(-1) + torch.log(torch.exp(z - top).sum(dim=-1))  # (B*T,)",
        new="log_norm = (top.squeeze(-1) + torch.log(torch.exp(z - top).sum(dim=-1))).detach()  # (B*T,)",
    ),
    # --- clipping -----------------------------------------------------------------------------
    Mutant(
        name="clip_coefficient_not_clamped",
        tasks=('clip_grad_norm',),
        description="the clip coefficient is not clamped at 1: small gradients are scaled up",
        old="coef = torch.clamp(max_norm / (total + eps), max=1.0)  # () never scales gradients up",
        new="coef = max_norm / (total + eps)  # ()",
    ),
    Mutant(
        name="clip_sums_the_norms",
        tasks=('clip_grad_norm',),
        description="the global norm is the sum of the per-gradient norms, not their L2 norm",
        old="total = torch.linalg.vector_norm(per_grad)  # ()",
        new="total = per_grad.sum()  # ()",
    ),
    Mutant(
        name="clip_returns_clipped_norm",
        tasks=('clip_grad_norm',),
        description="clip_grad_norm returns the norm after clipping",
        old="        g.mul_(coef.to(g.device, g.dtype))\n    return total",
        new="        g.mul_(coef.to(g.device, g.dtype))\n    return total * coef",
    ),
    # --- AdamW --------------------------------------------------------------------------------
    Mutant(
        name="adamw_decay_coupled_into_gradient",
        tasks=('AdamW',),
        description="weight decay added to the gradient (Adam + L2), not applied to the weights",
        old=("                p.mul_(1.0 - lr * decay)  # decoupled weight decay\n"
             "                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)\n"
             "                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)"),
        new=("                g = p.grad + decay * p  # L2 regularisation through the gradient\n"
             "                m.mul_(beta1).add_(g, alpha=1.0 - beta1)\n"
             "                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)"),
    ),
    Mutant(
        name="adamw_no_bias_correction",
        tasks=('AdamW',),
        description="no bias correction of m and v",
        old=("                denom = (v / (1.0 - beta2 ** t)).sqrt_().add_(eps)  # sqrt(v_hat) + eps\n"
             "                p.addcdiv_(m, denom, value=-lr / (1.0 - beta1 ** t))"),
        new=("                denom = v.sqrt().add_(eps)  # sqrt(v) + eps\n"
             "                p.addcdiv_(m, denom, value=-lr)"),
    ),
    Mutant(
        name="adamw_eps_inside_sqrt",
        tasks=('AdamW',),
        description="eps inside the square root: sqrt(v_hat + eps)",
        old="denom = (v / (1.0 - beta2 ** t)).sqrt_().add_(eps)  # sqrt(v_hat) + eps",
        new="denom = (v / (1.0 - beta2 ** t) + eps).sqrt_()  # sqrt(v_hat + eps)",
    ),
    Mutant(
        name="adamw_lr_read_once",
        tasks=('AdamW',),
        description="the learning rate is read from the defaults, so a scheduler's changes are ignored",
        old='lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]',
        new='lr, (beta1, beta2), eps, decay = self.defaults["lr"], group["betas"], group["eps"], group["weight_decay"]',
    ),
    Mutant(
        name="adamw_decays_params_without_grad",
        tasks=('AdamW',),
        description="weight decay applied to parameters that have no gradient",
        old="                if p.grad is None:\n                    continue\n",
        new="                if p.grad is None:\n                    p.mul_(1.0 - lr * decay)\n                    continue\n",
    ),
    # --- train_step ---------------------------------------------------------------------------
    Mutant(
        name="accumulation_loss_not_divided",
        tasks=('train_step',),
        description="each micro-batch loss is not divided by the number of micro-batches",
        old="            scaled = loss / count",
        new="            scaled = loss",
    ),
    Mutant(
        name="no_zero_grad",
        tasks=('train_step',),
        description="gradients are never zeroed, so every step adds the previous step's",
        old="    optimizer.zero_grad()  # to None: the first backward writes rather than adds\n",
        new="",
    ),
    Mutant(
        name="clip_before_unscale",
        tasks=('train_step',),
        description="the gradients are clipped while still multiplied by the scaler's scale",
        old=("        if scaler is not None:\n            scaler.unscale_(optimizer)\n"
             "        clip_grad_norm(model.parameters(), max_grad_norm)"),
        new=("        clip_grad_norm(model.parameters(), max_grad_norm)\n"
             "        if scaler is not None:\n            scaler.unscale_(optimizer)"),
    ),
    Mutant(
        name="train_step_returns_last_loss",
        tasks=('train_step',),
        description="train_step returns the last micro-batch's loss instead of the mean",
        old="    return total / count",
        new="    return loss.item()",
    ),
    Mutant(
        name="autocast_never_enabled",
        tasks=('train_step',),
        description="autocast_dtype is accepted but the forward pass never runs under autocast",
        old="enabled=autocast_dtype is not None):",
        new="enabled=False):",
    ),
    # --- the trainer --------------------------------------------------------------------------
    Mutant(
        name="checkpoint_without_data_rng",
        tasks=('Trainer',),
        description="resuming does not restore the data generator, so later batches differ",
        old='        self.generator.set_state(state["data_rng"])\n',
        new="",
    ),
    Mutant(
        name="checkpoint_without_optimizer",
        tasks=('Trainer',),
        description="resuming restarts the optimizer's moments from zero",
        old='        self.optimizer.load_state_dict(state["optimizer"])\n',
        new="",
    ),
    Mutant(
        name="trainer_never_sets_lr",
        tasks=('Trainer',),
        description="the trainer never applies the schedule: the rate stays at max_lr",
        old='            for group in self.optimizer.param_groups:\n                group["lr"] = lr\n',
        new="",
    ),
    Mutant(
        name="evaluate_in_train_mode",
        tasks=('Trainer',),
        description="evaluation leaves dropout on",
        old="        self.model.eval()\n        generator = torch.Generator().manual_seed(self.config.seed + 1)",
        new="        generator = torch.Generator().manual_seed(self.config.seed + 1)",
    ),
    # --- scaling laws -------------------------------------------------------------------------
    Mutant(
        name="chinchilla_exponents_swapped",
        tasks=('scaling_laws',),
        description="alpha applied to D and beta to N",
        old="return E + A / n_params ** alpha + B / n_tokens ** beta",
        new="return E + A / n_params ** beta + B / n_tokens ** alpha",
    ),
    Mutant(
        name="flops_forward_only",
        tasks=('scaling_laws',),
        description="training FLOPs counted as 2ND (the forward pass only)",
        old="return 6 * n_params * n_tokens",
        new="return 2 * n_params * n_tokens",
    ),
    Mutant(
        name="compute_optimal_wrong_exponent",
        tasks=('scaling_laws',),
        description="N_opt grows as (C/6)^(alpha/(alpha+beta)) instead of beta/(alpha+beta)",
        old="n_opt = g * (flops / 6.0) ** (b / (a + b))",
        new="n_opt = g * (flops / 6.0) ** (a / (a + b))",
    ),
    # --- a fit that must be robust to outliers (issue 21) --------------------------------------
    Mutant(
        name="fit_chinchilla_squared_error",
        tasks=('scaling_laws',),
        description="fit_chinchilla minimizes the squared error of the log-loss residuals, not the Huber loss",
        old="return _huber(torch.logsumexp(terms, dim=0) - log_l, delta).sum(-1)",
        new="return (0.5 * (torch.logsumexp(terms, dim=0) - log_l) ** 2).sum(-1)",
    ),
    Mutant(
        name="fit_chinchilla_huber_delta_one",
        tasks=('scaling_laws',),
        description="the Huber loss with delta = 1 (quadratic for every residual a fit meets)",
        old="return _huber(torch.logsumexp(terms, dim=0) - log_l, delta).sum(-1)",
        new="return _huber(torch.logsumexp(terms, dim=0) - log_l, 1.0).sum(-1)",
    ),
]

VALID_VARIANTS: list[Mutant] = [
    Mutant(
        name="cosine_in_float32_tensors",
        description="the cosine computed with torch.cos on a float32 tensor",
        old="return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))",
        new="return float(min_lr + (max_lr - min_lr) * 0.5 * (1.0 + torch.cos(torch.tensor(math.pi * progress))))",
    ),
    Mutant(
        name="ce_with_logsumexp",
        description="the log-normalizer from torch.logsumexp",
        old="log_norm = top.squeeze(-1) + torch.log(torch.exp(z - top).sum(dim=-1))  # (B*T,)",
        new="log_norm = torch.logsumexp(z, dim=-1)  # (B*T,)",
    ),
    Mutant(
        name="ce_in_float64",
        description="the loss computed in float64, returned in the logits' dtype",
        old="z = logits.float() if logits.dtype in HALF else logits",
        new="z = logits.double()",
    ),
    Mutant(
        name="clip_norm_of_concatenation",
        description="the global norm of all gradients flattened into one vector",
        old="total = torch.linalg.vector_norm(per_grad)  # ()",
        new="total = torch.cat([g.reshape(-1) for g in grads]).norm()  # ()",
    ),
    Mutant(
        name="adam_with_lerp",
        description="the first moment updated with lerp_, as PyTorch does",
        old="m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)",
        new="m.lerp_(p.grad, 1.0 - beta1)",
    ),
    Mutant(
        name="adam_denominator_torch_style",
        description="sqrt(v) / sqrt(1 - b2^t) + eps, PyTorch's order of operations",
        old="denom = (v / (1.0 - beta2 ** t)).sqrt_().add_(eps)  # sqrt(v_hat) + eps",
        new="denom = (v.sqrt() / math.sqrt(1.0 - beta2 ** t)).add_(eps)",
    ),
    Mutant(
        name="accumulation_by_multiplying",
        description="each micro-batch loss multiplied by 1 / k",
        old="            scaled = loss / count",
        new="            scaled = loss * (1.0 / count)",
    ),
]
