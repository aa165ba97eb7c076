"""Chapter 05 mutants: plausible student bugs in `normalization.py`.

Each mutant is a small text edit of `reference_solutions/normalization.py` that changes
behaviour on some valid input chapter 05's graders send. ``VALID_VARIANTS`` are correct solutions
written another way (std instead of rsqrt, einops-free mean of squares, float64 math, Welford
through torch.var_mean): each must keep full marks.
"""

from __future__ import annotations

from . import Mutant

MUTANTS: list[Mutant] = [
    # --- LayerNorm ----------------------------------------------------------------------------
    Mutant(
        name="layernorm_unbiased_variance",
        tasks=('LayerNorm',),
        description="LayerNorm divides by n - 1 (unbiased variance)",
        old="var = h.var(dim=dims, keepdim=True, unbiased=False)",
        new="var = h.var(dim=dims, keepdim=True, unbiased=True)",
    ),
    Mutant(
        name="layernorm_eps_outside_root",
        tasks=('LayerNorm',),
        description="(x - mean) / (std + eps) instead of / sqrt(var + eps)",
        old="y = (h - mean) * torch.rsqrt(var + self.eps)  # same shape as x",
        new="y = (h - mean) / (var.sqrt() + self.eps)  # same shape as x",
    ),
    Mutant(
        name="layernorm_over_batch_axis",
        tasks=('LayerNorm',),
        description="LayerNorm statistics over the first (batch) axis",
        old="dims = tuple(range(-len(self.normalized_shape), 0))\n        h = x.float() if x.dtype in HALF else x\n        mean",
        new="dims = (0,)\n        h = x.float() if x.dtype in HALF else x\n        mean",
    ),
    Mutant(
        name="layernorm_last_dim_only",
        tasks=('LayerNorm',),
        description="LayerNorm over the last dim only, even for a two-dim normalized_shape",
        old="dims = tuple(range(-len(self.normalized_shape), 0))\n        h = x.float() if x.dtype in HALF else x\n        mean",
        new="dims = (-1,)\n        h = x.float() if x.dtype in HALF else x\n        mean",
    ),
    Mutant(
        name="layernorm_bias_ignored",
        tasks=('LayerNorm',),
        description="LayerNorm never adds its bias",
        old="        if self.bias is not None:\n            y = y + self.bias\n",
        new="",
    ),
    Mutant(
        name="layernorm_half_math",
        tasks=('LayerNorm',),
        description="LayerNorm statistics in half precision for half inputs",
        old="h = x.float() if x.dtype in HALF else x\n        mean = h.mean(dim=dims, keepdim=True)",
        new="h = x\n        mean = h.mean(dim=dims, keepdim=True)",
    ),
    Mutant(
        name="layernorm_detached_statistics",
        tasks=('LayerNorm',),
        description="mean and variance computed under no_grad (their gradient is lost)",
        old="        mean = h.mean(dim=dims, keepdim=True)  # (..., 1, ..., 1)\n        var = h.var(dim=dims, keepdim=True, unbiased=False)  # (..., 1, ..., 1)\n",
        new="        mean = h.mean(dim=dims, keepdim=True).detach()  # (..., 1, ..., 1)\n        var = h.var(dim=dims, keepdim=True, unbiased=False).detach()  # (..., 1, ..., 1)\n",
    ),
    # --- RMSNorm ------------------------------------------------------------------------------
    Mutant(
        name="rmsnorm_subtracts_mean",
        tasks=('RMSNorm',),
        description="RMSNorm subtracts the mean first (that is LayerNorm without bias)",
        old="y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., D)",
        new="h = h - h.mean(dim=-1, keepdim=True)\n        y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., D)",
    ),
    Mutant(
        name="rmsnorm_half_math",
        tasks=('RMSNorm',),
        description="RMSNorm squares half-precision inputs in half precision (overflow at |x| > 256)",
        old="h = x.float() if x.dtype in HALF else x\n        y = h * torch.rsqrt",
        new="h = x\n        y = h * torch.rsqrt",
    ),
    Mutant(
        name="rmsnorm_sum_not_mean",
        tasks=('RMSNorm',),
        description="RMSNorm divides by the root of the sum of squares, not the mean",
        old="y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)",
        new="y = h * torch.rsqrt(h.pow(2).sum(dim=-1, keepdim=True) + self.eps)",
    ),
    Mutant(
        name="rmsnorm_eps_outside_root",
        tasks=('RMSNorm',),
        description="x / (rms + eps)",
        old="y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)",
        new="y = h / (h.pow(2).mean(dim=-1, keepdim=True).sqrt() + self.eps)",
    ),
    Mutant(
        name="rmsnorm_three_dims_only",
        tasks=('RMSNorm',),
        description="RMSNorm unpacks B, T, D = x.shape: only 3-D input works, the handout says (..., D)",
        old="        h = x.float() if x.dtype in HALF else x\n        y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)",
        new="        B, T, D = x.shape\n        h = x.float() if x.dtype in HALF else x\n        y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)",
    ),
    # --- BatchNorm ------------------------------------------------------------------------------
    Mutant(
        name="batchnorm_running_var_biased",
        tasks=('BatchNorm',),
        description="the running variance takes the biased batch variance",
        old="unbiased = var.detach() * count / (count - 1)",
        new="unbiased = var.detach()",
    ),
    Mutant(
        name="batchnorm_momentum_reversed",
        tasks=('BatchNorm',),
        description="running = momentum * running + (1 - momentum) * batch",
        old=("self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach().to(self.running_mean.dtype))\n"
             "            self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased.to(self.running_var.dtype))"),
        new=("self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean.detach().to(self.running_mean.dtype))\n"
             "            self.running_var.mul_(self.momentum).add_((1 - self.momentum) * unbiased.to(self.running_var.dtype))"),
    ),
    Mutant(
        name="batchnorm_eval_uses_batch_statistics",
        tasks=('BatchNorm',),
        description="eval mode normalizes with the batch's statistics",
        old="        if self.training:\n            dims = tuple(range(h.dim() - 1))",
        new="        if True:\n            dims = tuple(range(h.dim() - 1))",
    ),
    Mutant(
        name="batchnorm_normalizes_with_unbiased_variance",
        tasks=('BatchNorm',),
        description="the batch is normalized with the unbiased variance",
        old="y = (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias  # (..., C)",
        new="var = var * count / (count - 1) if self.training else var\n        y = (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias  # (..., C)",
    ),
    Mutant(
        name="batchnorm_over_first_axis_only",
        tasks=('BatchNorm',),
        description="BatchNorm statistics over the batch axis only, not the sequence axis too",
        old="dims = tuple(range(h.dim() - 1))  # every dim but the channels\n            count = h.numel() // h.shape[-1]",
        new="dims = (0,)\n            count = h.shape[0]",
    ),
    Mutant(
        name="batchnorm_stats_over_batch_dim_only",
        tasks=('BatchNorm',),
        description="BatchNorm statistics over dim 0 only: right for (B, C), wrong for (B, T, C) and (1, B, T, C)",
        old="dims = tuple(range(h.dim() - 1))  # every dim but the channels\n            count = h.numel() // h.shape[-1]",
        new="dims = (0,)\n            count = h.shape[0]",
    ),
    # --- ResidualBlock --------------------------------------------------------------------------
    Mutant(
        name="prenorm_residual_after_norm",
        tasks=('ResidualBlock',),
        description="pre-norm adds the normalized x, not x, to the sublayer's output",
        old="return x + self.dropout(self.sublayer(self.norm(x)))  # (..., D)",
        new="h = self.norm(x)\n            return h + self.dropout(self.sublayer(h))  # (..., D)",
    ),
    Mutant(
        name="postnorm_is_prenorm",
        tasks=('ResidualBlock',),
        description="prenorm=False ignored: always pre-norm",
        old="        if self.prenorm:\n            return x + self.dropout",
        new="        if True:\n            return x + self.dropout",
    ),
    Mutant(
        name="residual_dropout_in_eval",
        tasks=('ResidualBlock',),
        description="the block's dropout is active in eval mode too",
        old="self.dropout = nn.Dropout(dropout)\n        ### END SOLUTION\n\n    def forward(self, x: Tensor) -> Tensor:\n        ### BEGIN SOLUTION\n        # hint: pre-norm",
        new="self.dropout = lambda t: nn.functional.dropout(t, dropout, training=True)\n        ### END SOLUTION\n\n    def forward(self, x: Tensor) -> Tensor:\n        ### BEGIN SOLUTION\n        # hint: pre-norm",
    ),
    Mutant(
        name="residual_rmsnorm_is_layernorm",
        tasks=('ResidualBlock',),
        description="norm='rmsnorm' builds a LayerNorm",
        old='{"layernorm": LayerNorm, "rmsnorm": RMSNorm, "batchnorm": BatchNorm}',
        new='{"layernorm": LayerNorm, "rmsnorm": LayerNorm, "batchnorm": BatchNorm}',
    ),
    # --- gradients through the statistics, dropout's place (issue 21) ----------------------------
    Mutant(
        name="batchnorm_mean_detached",
        tasks=('BatchNorm',),
        description="BatchNorm's batch mean is detached in training: no gradient flows through it",
        old="mean = h.mean(dim=dims)  # (C,)",
        new="mean = h.mean(dim=dims).detach()  # (C,)",
    ),
    Mutant(
        name="batchnorm_var_detached",
        tasks=('BatchNorm',),
        description="BatchNorm's batch variance is detached in training: no gradient flows through it",
        old="var = h.var(dim=dims, unbiased=False)  # (C,)",
        new="var = h.var(dim=dims, unbiased=False).detach()  # (C,)",
    ),
    Mutant(
        name="layernorm_var_detached",
        tasks=('LayerNorm',),
        description="LayerNorm's variance (only) is detached",
        old="var = h.var(dim=dims, keepdim=True, unbiased=False)  # (..., 1, ..., 1)",
        new="var = h.var(dim=dims, keepdim=True, unbiased=False).detach()  # (..., 1, ..., 1)",
    ),
    Mutant(
        name="rmsnorm_rms_detached",
        tasks=('RMSNorm',),
        description="RMSNorm's root mean square is detached",
        old="y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., D)",
        new="y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps).detach()  # (..., D)",
    ),
    Mutant(
        name="residual_dropout_on_the_sum",
        tasks=('ResidualBlock',),
        description="pre-norm drops the residual sum, dropout(x + sublayer(norm(x))), not the sublayer's output",
        old="return x + self.dropout(self.sublayer(self.norm(x)))  # (..., D)",
        new="return self.dropout(x + self.sublayer(self.norm(x)))  # (..., D)",
    ),
    Mutant(
        name="residual_dropout_before_sublayer",
        tasks=('ResidualBlock',),
        description="dropout on the sublayer's input, x + sublayer(dropout(norm(x))), not on its output",
        old="return x + self.dropout(self.sublayer(self.norm(x)))  # (..., D)",
        new="return x + self.sublayer(self.dropout(self.norm(x)))  # (..., D)",
    ),
    Mutant(
        name="postnorm_dropout_on_the_sum",
        tasks=('ResidualBlock',),
        description="post-norm drops the sum before the norm, norm(dropout(x + sublayer(x)))",
        old="return self.norm(x + self.dropout(self.sublayer(x)))  # (..., D)",
        new="return self.norm(self.dropout(x + self.sublayer(x)))  # (..., D)",
    ),
    Mutant(
        name="residual_dropout_missing_in_training",
        tasks=('ResidualBlock',),
        description="the block never applies its dropout (built but unused)",
        old="return self.norm(x + self.dropout(self.sublayer(x)))  # (..., D)",
        new="return self.norm(x + self.sublayer(x))  # (..., D)",
        also=(("return x + self.dropout(self.sublayer(self.norm(x)))  # (..., D)",
               "return x + self.sublayer(self.norm(x))  # (..., D)"),),
    ),
]

VALID_VARIANTS: list[Mutant] = [
    Mutant(
        name="layernorm_var_mean_and_sqrt",
        description="LayerNorm with torch.var_mean and a division by sqrt",
        old=("        mean = h.mean(dim=dims, keepdim=True)  # (..., 1, ..., 1)\n"
             "        var = h.var(dim=dims, keepdim=True, unbiased=False)  # (..., 1, ..., 1)\n"
             "        y = (h - mean) * torch.rsqrt(var + self.eps)  # same shape as x\n"),
        new=("        var, mean = torch.var_mean(h, dim=dims, keepdim=True, correction=0)\n"
             "        y = (h - mean) / torch.sqrt(var + self.eps)\n"),
    ),
    Mutant(
        name="rmsnorm_float64_math",
        description="RMSNorm computed in float64 whatever the input, weight applied after the cast back",
        old=("        h = x.float() if x.dtype in HALF else x\n"
             "        y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., D)\n"
             "        if self.weight is not None:\n"
             "            y = y * self.weight\n"
             "        return y.to(x.dtype)\n"),
        new=("        h = x.double()\n"
             "        y = (h * torch.rsqrt((h * h).mean(dim=-1, keepdim=True) + self.eps)).to(x.dtype)\n"
             "        return y if self.weight is None else (y * self.weight).to(x.dtype)\n"),
    ),
    Mutant(
        name="batchnorm_explicit_reshape",
        description="BatchNorm statistics of x reshaped to (N, C)",
        old=("            mean = h.mean(dim=dims)  # (C,)\n"
             "            var = h.var(dim=dims, unbiased=False)  # (C,)\n"),
        new=("            flat = h.reshape(-1, h.shape[-1])\n"
             "            mean = flat.mean(dim=0)\n"
             "            var = ((flat - mean) ** 2).mean(dim=0)\n"),
    ),
    Mutant(
        name="residual_block_norm_by_if",
        description="the norm chosen with if/elif instead of a dict",
        old='        self.norm = {"layernorm": LayerNorm, "rmsnorm": RMSNorm, "batchnorm": BatchNorm}[norm](d_model)\n',
        new=('        if norm == "layernorm":\n            self.norm = LayerNorm(d_model)\n'
             '        elif norm == "rmsnorm":\n            self.norm = RMSNorm(d_model)\n'
             '        else:\n            self.norm = BatchNorm(d_model)\n'),
    ),
]
