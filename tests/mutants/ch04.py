"""Chapter 04 mutants: plausible student bugs in `feedforward.py`.

Each mutant is a small text edit of `reference_solutions/feedforward.py` that changes behaviour
on some valid input chapter 04's graders send. ``VALID_VARIANTS`` are correct solutions
written another way (clamp for ReLU, the sigmoid written out, a 10-digit constant, erfc, float64
math): each must keep full marks.
"""

from __future__ import annotations

from . import Mutant

MUTANTS: list[Mutant] = [
    # --- activations --------------------------------------------------------------------------
    Mutant(
        name="gelu_tanh_constant_wrong",
        tasks=('gelu',),
        description="tanh GELU with 0.0447 for 0.044715",
        old="inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)",
        new="inner = math.sqrt(2.0 / math.pi) * (x + 0.0447 * x**3)",
    ),
    Mutant(
        name="gelu_tanh_sqrt_pi_over_2",
        tasks=('gelu',),
        description="tanh GELU with sqrt(pi / 2) for sqrt(2 / pi)",
        old="inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)",
        new="inner = math.sqrt(math.pi / 2.0) * (x + 0.044715 * x**3)",
    ),
    Mutant(
        name="gelu_tanh_is_sigmoid_1702",
        tasks=('gelu',),
        description="the 'tanh' approximation written as x * sigmoid(1.702 x), a different approximation",
        old="        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)\n        return 0.5 * x * (1.0 + torch.tanh(inner))",
        new="        return x * torch.sigmoid(1.702 * x)",
    ),
    Mutant(
        name="gelu_is_silu",
        tasks=('gelu',),
        description="GELU computed as x * sigmoid(x) (that is SiLU)",
        old="        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))",
        new="        return x * torch.sigmoid(x)",
    ),
    Mutant(
        name="gelu_missing_sqrt2",
        tasks=('gelu',),
        description="erf(x) instead of erf(x / sqrt(2))",
        old="torch.erf(x / math.sqrt(2.0))",
        new="torch.erf(x)",
    ),
    Mutant(
        name="gelu_ignores_approximate",
        tasks=('gelu',),
        description="approximate='tanh' silently computes the exact form",
        old='    if approximate == "none":\n',
        new='    if approximate in ("none", "tanh"):\n',
    ),
    Mutant(
        name="gelu_unknown_approximate_is_tanh",
        tasks=('gelu',),
        description="any approximate other than 'none' silently computes the tanh form (no ValueError)",
        old='    if approximate == "tanh":\n',
        new="    else:\n",
    ),
    Mutant(
        name="silu_sigmoid_of_minus_x",
        tasks=('silu',),
        description="SiLU as x * sigmoid(-x)",
        old="return x * torch.sigmoid(x)\n    ### END SOLUTION\n\n\ndef gelu",
        new="return x * torch.sigmoid(-x)\n    ### END SOLUTION\n\n\ndef gelu",
    ),
    Mutant(
        name="relu_leaky",
        tasks=('relu',),
        description="leaky ReLU (0.01 x for negatives) instead of ReLU",
        old="return torch.where(x > 0, x, torch.zeros_like(x))",
        new="return torch.where(x > 0, x, 0.01 * x)",
    ),
    Mutant(
        name="silu_overflows_at_large_negative",
        tasks=('silu',),
        description="SiLU as x * exp(x) / (1 + exp(x)): inf / inf = NaN for large x",
        old="return x * torch.sigmoid(x)\n    ### END SOLUTION\n\n\ndef gelu",
        new="return x * torch.exp(x) / (1 + torch.exp(x))\n    ### END SOLUTION\n\n\ndef gelu",
    ),
    # --- FeedForward ----------------------------------------------------------------------------
    Mutant(
        name="feedforward_dropout_in_eval",
        tasks=('FeedForward',),
        description="dropout applied in eval mode too",
        old="return self.dropout(self.fc2(hidden))  # (..., D)",
        new="return nn.functional.dropout(self.fc2(hidden), self.dropout.p, training=True)  # (..., D)",
    ),
    Mutant(
        name="feedforward_functional_dropout_always_on",
        tasks=('FeedForward',),
        description="F.dropout(out, p) without training=self.training: F.dropout defaults to training=True",
        old="return self.dropout(self.fc2(hidden))  # (..., D)",
        new="return nn.functional.dropout(self.fc2(hidden), self.dropout.p)  # (..., D)",
    ),
    Mutant(
        name="feedforward_dropout_before_fc2",
        tasks=('FeedForward',),
        description="dropout on the hidden units, before fc2, instead of on the output",
        old="return self.dropout(self.fc2(hidden))  # (..., D)",
        new="return self.fc2(self.dropout(hidden))  # (..., D)",
    ),
    Mutant(
        name="feedforward_only_3d_input",
        tasks=('FeedForward',),
        description="`B, T, D = x.shape`: only (B, T, D) inputs work, not (..., D)",
        old="        hidden = self.fc1(x)  # (..., F)\n",
        new="        B, T, D = x.shape\n        hidden = self.fc1(x.reshape(B * T, D))  # (B*T, F)\n",
        also=(("return self.dropout(self.fc2(hidden))  # (..., D)",
               "return self.dropout(self.fc2(hidden)).reshape(B, T, D)  # (B, T, D)"),),
    ),
    Mutant(
        name="feedforward_bias_ignored",
        tasks=('FeedForward',),
        description="bias=False ignored: fc1 and fc2 always have biases",
        old="        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)\n        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)",
        new="        self.fc1 = nn.Linear(d_model, d_ff)\n        self.fc2 = nn.Linear(d_ff, d_model)",
    ),
    Mutant(
        name="feedforward_default_width_2x",
        tasks=('FeedForward',),
        description="d_ff defaults to 2 * d_model",
        old="d_ff = 4 * d_model if d_ff is None else d_ff",
        new="d_ff = 2 * d_model if d_ff is None else d_ff",
    ),
    Mutant(
        name="feedforward_silu_runs_gelu",
        tasks=('FeedForward',),
        description="activation='silu' falls through to GELU",
        old="        elif self.activation == \"silu\":\n            hidden = silu(hidden)\n",
        new="",
    ),
    Mutant(
        name="feedforward_unknown_activation_accepted",
        tasks=('FeedForward',),
        description="an unknown activation name silently means GELU",
        old='        if activation not in ACTIVATIONS:\n            raise ValueError(f"activation must be one of {ACTIVATIONS}, got activation={activation!r}")\n',
        new="",
    ),
    Mutant(
        name="feedforward_mixes_positions",
        tasks=('FeedForward',),
        description="the hidden layer is normalised over the sequence axis (mixes positions)",
        old="        hidden = self.fc1(x)  # (..., F)\n",
        new="        hidden = self.fc1(x)  # (..., F)\n        hidden = hidden - hidden.mean(dim=-2, keepdim=True)\n",
    ),
    # --- swiglu_hidden_dim and SwiGLU -------------------------------------------------------------
    Mutant(
        name="hidden_dim_rounded_down",
        tasks=('swiglu_hidden_dim',),
        description="hidden width rounded down to multiple_of instead of up",
        old="return multiple_of * ((hidden + multiple_of - 1) // multiple_of)",
        new="return multiple_of * (hidden // multiple_of)",
    ),
    Mutant(
        name="hidden_dim_not_rounded",
        tasks=('swiglu_hidden_dim',),
        description="hidden width never rounded to multiple_of",
        old="return multiple_of * ((hidden + multiple_of - 1) // multiple_of)",
        new="return hidden",
    ),
    Mutant(
        name="hidden_dim_ignores_multiplier",
        tasks=('swiglu_hidden_dim',),
        description="ffn_dim_multiplier ignored",
        old="        hidden = int(ffn_dim_multiplier * hidden)\n",
        new="        pass\n",
    ),
    Mutant(
        name="hidden_dim_two_thirds_of_d_model",
        tasks=('swiglu_hidden_dim',),
        description="two thirds of d_model instead of two thirds of 4 * d_model",
        old="hidden = int(2 * (4 * d_model) / 3)",
        new="hidden = int(2 * d_model / 3)",
    ),
    Mutant(
        name="swiglu_gate_and_up_swapped",
        tasks=('SwiGLU',),
        description="the SiLU on w3 (up) instead of w1 (gate): silu(w3 x) * w1 x",
        old="gated = silu(self.w1(x)) * self.w3(x)",
        new="gated = silu(self.w3(x)) * self.w1(x)",
    ),
    Mutant(
        name="swiglu_gelu_gate",
        tasks=('SwiGLU',),
        description="GEGLU instead of SwiGLU: the gate through GELU",
        old="gated = silu(self.w1(x)) * self.w3(x)",
        new="gated = gelu(self.w1(x)) * self.w3(x)",
    ),
    Mutant(
        name="swiglu_dropout_in_eval",
        tasks=('SwiGLU',),
        description="SwiGLU's dropout applied in eval mode too",
        old="return self.dropout(self.w2(gated))  # (..., D)",
        new="return nn.functional.dropout(self.w2(gated), self.dropout.p, training=True)  # (..., D)",
    ),
    Mutant(
        name="swiglu_dropout_before_w2",
        tasks=('SwiGLU',),
        description="SwiGLU's dropout on the gated hidden units, before w2, instead of on the output",
        old="return self.dropout(self.w2(gated))  # (..., D)",
        new="return self.w2(self.dropout(gated))  # (..., D)",
    ),
    Mutant(
        name="swiglu_only_3d_input",
        tasks=('SwiGLU',),
        description="SwiGLU with `B, T, D = x.shape`: only (B, T, D) inputs work, not (..., D)",
        old="gated = silu(self.w1(x)) * self.w3(x)",
        new="B, T, D = x.shape\n        x = x.view(B * T, D)\n        gated = silu(self.w1(x)) * self.w3(x)",
        also=(("return self.dropout(self.w2(gated))  # (..., D)",
               "return self.dropout(self.w2(gated)).view(B, T, D)  # (B, T, D)"),),
    ),
    Mutant(
        name="swiglu_default_width_4x",
        tasks=('SwiGLU',),
        description="SwiGLU's default width taken as 4 * d_model, the classic FFN's",
        old="d_ff = swiglu_hidden_dim(d_model, multiple_of) if d_ff is None else d_ff",
        new="d_ff = 4 * d_model if d_ff is None else d_ff",
    ),
    Mutant(
        name="swiglu_bias_ignored",
        tasks=('SwiGLU',),
        description="SwiGLU's bias argument ignored (never any biases)",
        old="        self.w1 = nn.Linear(d_model, d_ff, bias=bias)\n        self.w3 = nn.Linear(d_model, d_ff, bias=bias)\n        self.w2 = nn.Linear(d_ff, d_model, bias=bias)",
        new="        self.w1 = nn.Linear(d_model, d_ff, bias=False)\n        self.w3 = nn.Linear(d_model, d_ff, bias=False)\n        self.w2 = nn.Linear(d_ff, d_model, bias=False)",
    ),
    Mutant(
        name="swiglu_default_width_ignores_multiple_of",
        tasks=('SwiGLU',),
        description="SwiGLU's default width always rounds to 256",
        old="d_ff = swiglu_hidden_dim(d_model, multiple_of) if d_ff is None else d_ff",
        new="d_ff = swiglu_hidden_dim(d_model) if d_ff is None else d_ff",
    ),
    # --- parameter counts -------------------------------------------------------------------------
    Mutant(
        name="feedforward_count_without_biases",
        tasks=('feedforward_parameter_count',),
        description="feedforward_parameter_count forgets the biases",
        old="return 2 * d_model * d_ff + (d_ff + d_model if bias else 0)",
        new="return 2 * d_model * d_ff",
    ),
    Mutant(
        name="swiglu_count_three_d_ff_biases",
        tasks=('swiglu_parameter_count',),
        description="swiglu_parameter_count with bias=True counts 3 * d_ff biases (w2's bias has d_model)",
        old="return 3 * d_model * d_ff + (2 * d_ff + d_model if bias else 0)",
        new="return 3 * d_model * d_ff + (3 * d_ff if bias else 0)",
    ),
    Mutant(
        name="swiglu_count_two_matrices",
        tasks=('swiglu_parameter_count',),
        description="swiglu_parameter_count counts two matrices like the classic FFN",
        old="return 3 * d_model * d_ff + (2 * d_ff + d_model if bias else 0)",
        new="return 2 * d_model * d_ff + (2 * d_ff + d_model if bias else 0)",
    ),
]

VALID_VARIANTS: list[Mutant] = [
    Mutant(
        name="relu_clamp",
        description="ReLU as x.clamp(min=0)",
        old="return torch.where(x > 0, x, torch.zeros_like(x))",
        new="return x.clamp(min=0)",
    ),
    Mutant(
        name="silu_written_out",
        description="SiLU as x / (1 + exp(-x))",
        old="return x * torch.sigmoid(x)\n    ### END SOLUTION\n\n\ndef gelu",
        new="return x / (1 + torch.exp(-x))\n    ### END SOLUTION\n\n\ndef gelu",
    ),
    Mutant(
        name="gelu_erfc",
        description="exact GELU as 0.5 * x * erfc(-x / sqrt(2)), which does not cancel for negative x",
        old="        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))",
        new="        return 0.5 * x * torch.erfc(-x / math.sqrt(2.0))",
    ),
    Mutant(
        name="gelu_tanh_ten_digit_constant",
        description="tanh GELU with sqrt(2/pi) written as 0.7978845608 and x * x * x",
        old="inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)",
        new="inner = 0.7978845608 * (x + 0.044715 * x * x * x)",
    ),
    Mutant(
        name="gelu_float64_math",
        description="GELU computed in float64 and cast back to x's dtype",
        old="        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))",
        new="        y = x.double()\n        return (0.5 * y * (1.0 + torch.erf(y / math.sqrt(2.0)))).to(x.dtype)",
    ),
    Mutant(
        name="hidden_dim_ceil_division",
        description="rounding up with math.ceil",
        old="return multiple_of * ((hidden + multiple_of - 1) // multiple_of)",
        new="return multiple_of * math.ceil(hidden / multiple_of)",
    ),
    Mutant(
        name="feedforward_functional_dropout",
        description="dropout as F.dropout(out, p, training=self.training)",
        old="return self.dropout(self.fc2(hidden))  # (..., D)",
        new="return nn.functional.dropout(self.fc2(hidden), self.dropout.p, training=self.training)  # (..., D)",
    ),
    Mutant(
        name="swiglu_own_dropout_mask",
        description="SwiGLU's dropout written out: a torch.rand mask, kept entries divided by (1 - p)",
        old="        return self.dropout(self.w2(gated))  # (..., D)\n",
        new=("        out = self.w2(gated)  # (..., D)\n"
             "        if self.training and self.dropout.p > 0:\n"
             "            keep = torch.rand_like(out) >= self.dropout.p  # (..., D)\n"
             "            out = out * keep / (1 - self.dropout.p)\n"
             "        return out\n"),
    ),
    Mutant(
        name="feedforward_flattens_leading_dims",
        description="x flattened to (N, D) for the linears and reshaped back to (..., D)",
        old="        hidden = self.fc1(x)  # (..., F)\n",
        new="        lead = x.shape[:-1]\n        hidden = self.fc1(x.reshape(-1, x.shape[-1]))  # (N, F)\n",
        also=(("return self.dropout(self.fc2(hidden))  # (..., D)",
               "return self.dropout(self.fc2(hidden)).reshape(*lead, -1)  # (..., D)"),),
    ),
    Mutant(
        name="feedforward_activation_table",
        description="activations looked up in a dict of functions",
        old=("        if self.activation == \"relu\":\n            hidden = relu(hidden)\n"
             "        elif self.activation == \"silu\":\n            hidden = silu(hidden)\n"
             "        else:\n"
             "            hidden = gelu(hidden, approximate=\"tanh\" if self.activation == \"gelu_tanh\" else \"none\")\n"),
        new=("        table = {\"relu\": relu, \"silu\": silu, \"gelu\": gelu,\n"
             "                 \"gelu_tanh\": lambda t: gelu(t, approximate=\"tanh\")}\n"
             "        hidden = table[self.activation](hidden)\n"),
    ),
]
