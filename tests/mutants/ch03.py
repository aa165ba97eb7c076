"""Chapter 03 mutants: plausible student bugs in `positional_encoding.py`.

Each mutant is a small text edit of `reference_solutions/positional_encoding.py` that changes
behaviour on some valid input chapter 03's graders send. ``ATTENTION_MUTANTS`` are edits of
chapter 02's `multi_head_attention.py` that show only when RoPE is passed to attention (chapter
02's own graders cannot see them; chapter 03 grades attention with RoPE).

``VALID_VARIANTS`` are correct solutions written another way (float32 angles as Hugging Face
computes them, the `exp(-log(base) ...)` form of the 2017 code, `rotate_half`, a cumulative
product for the slopes, float64 outputs): each must keep full marks.
"""

from __future__ import annotations

from . import Mutant

MUTANTS: list[Mutant] = [
    # --- sinusoidal_encoding -----------------------------------------------------------------
    Mutant(
        name="sinusoid_exponent_i_over_d",
        tasks=('sinusoidal_encoding',),
        description="frequency exponent i/d_model instead of 2i/d_model",
        old="inv_freq = base ** (-two_i / d_model)",
        new="inv_freq = base ** (-(two_i / 2) / d_model)",
    ),
    Mutant(
        name="sinusoid_sin_cos_swapped",
        tasks=('sinusoidal_encoding',),
        description="cos in the even columns and sin in the odd ones",
        old="table = torch.stack([angles.sin(), angles.cos()], dim=-1)",
        new="table = torch.stack([angles.cos(), angles.sin()], dim=-1)",
    ),
    Mutant(
        name="sinusoid_concatenated",
        tasks=('sinusoidal_encoding',),
        description="all sines first, then all cosines ([sin | cos]) instead of interleaved columns",
        old='return rearrange(table, "p half two -> p (half two)").float()',
        new='return rearrange(table, "p half two -> p (two half)").float()',
    ),
    Mutant(
        name="sinusoid_cos_uses_its_own_column",
        tasks=('sinusoidal_encoding',),
        description="the cosine column 2i+1 uses the exponent (2i+1)/d_model, so a pair mixes two frequencies",
        old="table = torch.stack([angles.sin(), angles.cos()], dim=-1)",
        new="table = torch.stack([angles.sin(), torch.outer(positions, base ** (-(two_i + 1) / d_model)).cos()], dim=-1)",
    ),
    Mutant(
        name="sinusoid_ignores_base",
        tasks=('sinusoidal_encoding',),
        description="the base argument is ignored (always 10000)",
        old="inv_freq = base ** (-two_i / d_model)",
        new="inv_freq = 10000.0 ** (-two_i / d_model)",
    ),
    Mutant(
        name="sinusoid_accepts_odd_d_model",
        tasks=('sinusoidal_encoding',),
        description="no check for an odd d_model (the last column is silently dropped)",
        old='    if d_model <= 0 or d_model % 2 != 0:\n        raise ValueError(f"d_model must be a positive even number, got d_model={d_model}")\n',
        new="    d_model = d_model - d_model % 2\n",
    ),
    # --- SinusoidalPositionalEncoding -----------------------------------------------------------
    Mutant(
        name="sinusoid_buffer_persistent",
        tasks=('SinusoidalPositionalEncoding',),
        description="the table is saved in the state_dict (persistent buffer)",
        old='self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)',
        new='self.register_buffer("pe", sinusoidal_encoding(max_len, d_model))',
    ),
    Mutant(
        name="sinusoid_dropout_in_eval",
        tasks=('SinusoidalPositionalEncoding',),
        description="dropout applied in eval mode too",
        old="self.dropout = nn.Dropout(dropout)",
        new="self.dropout = lambda t: nn.functional.dropout(t, dropout, training=True)",
    ),
    Mutant(
        name="sinusoid_table_scaled",
        tasks=('SinusoidalPositionalEncoding',),
        description="the table multiplied by sqrt(d_model) before adding (confusing it with the token embedding's scale)",
        old="return self.dropout(x + self.pe[:seq_len].to(x.dtype))",
        new="return self.dropout(x + self.pe[:seq_len].to(x.dtype) * x.shape[-1] ** 0.5)",
    ),
    # --- LearnedPositionalEmbedding -------------------------------------------------------------
    Mutant(
        name="learned_positions_from_one",
        tasks=('LearnedPositionalEmbedding',),
        description="positions counted from 1",
        old="positions = torch.arange(seq_len, device=x.device)  # (T,)\n        return x + self.embedding",
        new="positions = torch.arange(1, seq_len + 1, device=x.device)  # (T,)\n        return x + self.embedding",
    ),
    Mutant(
        name="learned_no_length_check",
        tasks=('LearnedPositionalEmbedding',),
        description="no check against max_len (nn.Embedding raises IndexError instead of ValueError)",
        old=('        if seq_len > self.max_len:\n'
             '            raise ValueError(f"sequence length {seq_len} exceeds max_len={self.max_len}")\n'
             '        positions = torch.arange(seq_len, device=x.device)'),
        new="        positions = torch.arange(seq_len, device=x.device)",
    ),
    Mutant(
        name="learned_rejects_exactly_max_len",
        tasks=('LearnedPositionalEmbedding',),
        description="off by one: a sequence of exactly max_len is rejected",
        old="        if seq_len > self.max_len:\n            raise ValueError(f\"sequence length {seq_len} exceeds max_len={self.max_len}\")\n        positions",
        new="        if seq_len >= self.max_len:\n            raise ValueError(f\"sequence length {seq_len} exceeds max_len={self.max_len}\")\n        positions",
    ),
    # --- RotaryEmbedding --------------------------------------------------------------------------
    Mutant(
        name="rope_rotate_half_sign_flipped",
        tasks=('RotaryEmbedding',),
        description="rotate_half's sign flipped: every pair turns by -angle",
        old="rotated_a = a * cos - b * sin",
        new="rotated_a = a * cos + b * sin",
        also=(("rotated_b = a * sin + b * cos", "rotated_b = -a * sin + b * cos"),),
    ),
    Mutant(
        name="rope_one_sign_wrong",
        tasks=('RotaryEmbedding',),
        description="both terms added: (a cos + b sin, a sin + b cos) is not a rotation",
        old="rotated_a = a * cos - b * sin",
        new="rotated_a = a * cos + b * sin",
    ),
    Mutant(
        name="rope_interleaved_ignored",
        tasks=('RotaryEmbedding',),
        description="interleaved=True pairs dims as the half-split convention does",
        old="self.interleaved = interleaved",
        new="self.interleaved = False",
    ),
    Mutant(
        name="rope_pairs_mixed",
        tasks=('RotaryEmbedding',),
        description="pairs read as (2i, 2i+1) but written back as halves",
        old='        if self.interleaved:\n            return rearrange(torch.stack([rotated_a, rotated_b], dim=-1), "... t half two -> ... t (half two)")\n',
        new="",
    ),
    Mutant(
        name="rope_ignores_positions",
        tasks=('RotaryEmbedding',),
        description="the positions argument is ignored: rows always sit at 0..T-1 (breaks decoding with a cache)",
        old="        if positions is None:\n            positions = torch.arange(seq_len, device=x.device)  # (T,)\n",
        new="        positions = torch.arange(seq_len, device=x.device)  # (T,)\n",
    ),
    Mutant(
        name="rope_exponent_i_over_d",
        tasks=('RotaryEmbedding',),
        description="theta_i = base^(-i/head_dim) instead of base^(-2i/head_dim)",
        old="theta = self.base ** (-two_i / self.head_dim)",
        new="theta = self.base ** (-(two_i / 2) / self.head_dim)",
    ),
    Mutant(
        name="rope_half_precision_angles",
        tasks=('RotaryEmbedding',),
        description="angles computed in float16: far positions overflow and near ones lose precision",
        old="angles = torch.outer(positions.to(torch.float64), theta)",
        new="angles = torch.outer(positions.to(torch.float16), theta.to(torch.float16)).to(torch.float64)",
    ),
    Mutant(
        name="rope_table_length_limit",
        tasks=('RotaryEmbedding',),
        description="positions clamped to a precomputed table of 4096 rows",
        old="angles = torch.outer(positions.to(torch.float64), theta)",
        new="angles = torch.outer(positions.clamp(max=4095).to(torch.float64), theta)",
    ),
    Mutant(
        name="rope_accepts_odd_head_dim",
        tasks=('RotaryEmbedding',),
        description="no check for an odd head_dim",
        old='        if head_dim <= 0 or head_dim % 2 != 0:\n            raise ValueError(f"head_dim must be a positive even number, got head_dim={head_dim}")\n',
        new="",
    ),
    # --- alibi_slopes -----------------------------------------------------------------------------
    Mutant(
        name="slopes_geometric_for_any_count",
        tasks=('alibi_slopes',),
        description="2^(-8k/n) for every head count, ignoring the paper's rule for non-powers of two",
        old="slopes = powers_of_two(n) + powers_of_two(2 * n)[0::2][: num_heads - n]",
        new="slopes = powers_of_two(num_heads)",
    ),
    Mutant(
        name="slopes_fill_without_skipping",
        tasks=('alibi_slopes',),
        description="the extra heads take consecutive slopes of the 2n sequence, not every other one",
        old="slopes = powers_of_two(n) + powers_of_two(2 * n)[0::2][: num_heads - n]",
        new="slopes = powers_of_two(n) + powers_of_two(2 * n)[: num_heads - n]",
    ),
    Mutant(
        name="slopes_reversed",
        tasks=('alibi_slopes',),
        description="slopes in increasing order (smallest slope on head 0)",
        old="return torch.tensor(slopes, dtype=torch.float64).float()",
        new="return torch.tensor(slopes[::-1], dtype=torch.float64).float()",
    ),
    # --- alibi_bias -------------------------------------------------------------------------------
    Mutant(
        name="alibi_bias_sign_wrong",
        tasks=('alibi_bias',),
        description="bias +slope * distance: farther keys get higher scores",
        old="return -alibi_slopes(num_heads)[:, None, None] * distance",
        new="return alibi_slopes(num_heads)[:, None, None] * distance",
    ),
    Mutant(
        name="alibi_no_cache_offset",
        tasks=('alibi_bias',),
        description="queries placed at 0..q_len-1 even when k_len > q_len (a cache)",
        old="query_pos = torch.arange(k_len - q_len, k_len)[:, None]",
        new="query_pos = torch.arange(q_len)[:, None]",
    ),
    Mutant(
        name="alibi_signed_distance",
        tasks=('alibi_bias',),
        description="distance pos_i - j without the absolute value (future keys get a bonus)",
        old="distance = (query_pos - key_pos).abs().float()",
        new="distance = (query_pos - key_pos).float()",
    ),
    # --- dropout's place (issue 21) ----------------------------------------------------------------
    Mutant(
        name="sinusoid_dropout_before_adding",
        tasks=('SinusoidalPositionalEncoding',),
        description="dropout on x before the table is added, dropout(x) + PE[:T], not on the sum",
        old="return self.dropout(x + self.pe[:seq_len].to(x.dtype))",
        new="return self.dropout(x) + self.pe[:seq_len].to(x.dtype)",
    ),
    Mutant(
        name="sinusoid_dropout_never_applied",
        tasks=('SinusoidalPositionalEncoding',),
        description="the dropout module is built but forward never applies it",
        old="return self.dropout(x + self.pe[:seq_len].to(x.dtype))",
        new="return x + self.pe[:seq_len].to(x.dtype)",
    ),
    Mutant(
        name="sinusoid_float64_table",
        tasks=('sinusoidal_encoding',),
        description="sinusoidal_encoding returns the float64 table it computed, not the float32 the handout promises",
        old='return rearrange(table, "p half two -> p (half two)").float()',
        new='return rearrange(table, "p half two -> p (half two)")',
    ),
]

# Bugs in chapter 02's module that only attention with RoPE reveals (chapter 03 grades them).
ATTENTION_MUTANTS: list[Mutant] = [
    Mutant(
        name="cache_positions_from_zero",
        tasks=('RotaryEmbedding',),
        description="with a KV cache, rope positions start at 0 instead of kv_cache.length",
        old="start = 0 if kv_cache is None else kv_cache.length",
        new="start = 0",
    ),
    Mutant(
        name="rope_on_values_too",
        tasks=('RotaryEmbedding',),
        description="rope applied to the values as well as the queries and keys",
        old="        if kv_cache is not None:\n            k, v = kv_cache.update(k, v)",
        new=("        if rope is not None:\n"
             "            v = rope(v, positions=torch.arange(start, start + v.shape[-2], device=v.device))\n"
             "        if kv_cache is not None:\n            k, v = kv_cache.update(k, v)"),
    ),
    Mutant(
        name="rope_on_queries_only",
        tasks=('RotaryEmbedding',),
        description="rope applied to the queries but not the keys",
        old="            k = rope(k, positions=torch.arange(start, start + k.shape[-2], device=k.device))  # (B, Hkv, S, Dh)\n",
        new="",
    ),
]

VALID_VARIANTS: list[Mutant] = [
    Mutant(
        name="float32_angles_like_hugging_face",
        description="RoPE angles, cos and sin computed in float32 (a float32 inv_freq, positions.float())",
        old="angles = torch.outer(positions.to(torch.float64), theta)",
        new="angles = torch.outer(positions.float(), theta.float())",
    ),
    Mutant(
        name="sinusoid_exp_log_float32",
        description="the 2017 code's div_term = exp(2i * -log(base) / d_model), all in float32",
        old=("    positions = torch.arange(max_len, dtype=torch.float64)  # (P,)\n"
             "    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,) the even indices 2i\n"
             "    inv_freq = base ** (-two_i / d_model)  # (D/2,)\n"),
        new=("    positions = torch.arange(max_len, dtype=torch.float32)  # (P,)\n"
             "    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)  # (D/2,)\n"
             "    inv_freq = torch.exp(two_i * (-math.log(base) / d_model))  # (D/2,)\n"),
    ),
    Mutant(
        name="rope_rotate_half",
        description="half-split RoPE as x * cos + rotate_half(x) * sin on full-width cos/sin (GPT-NeoX style)",
        old="        rotated_a = a * cos - b * sin  # (..., T, Dh/2)\n",
        new=("        if not self.interleaved:\n"
             "            full_cos, full_sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)\n"
             "            return x * full_cos + torch.cat([-b, a], dim=-1) * full_sin\n"
             "        rotated_a = a * cos - b * sin  # (..., T, Dh/2)\n"),
    ),
    Mutant(
        name="rope_complex_numbers",
        description="interleaved RoPE as complex multiplication by exp(i * angle) (Meta's Llama)",
        old="        if self.interleaved:\n            pairs = rearrange",
        new=("        if self.interleaved and x.dtype in (torch.float32, torch.float64):\n"
             "            z = torch.view_as_complex(rearrange(x, '... (h two) -> ... h two', two=2).contiguous())\n"
             "            turn = torch.polar(torch.ones_like(angles), angles).to(z.dtype)\n"
             "            return rearrange(torch.view_as_real(z * turn), '... h two -> ... (h two)')\n"
             "        if self.interleaved:\n            pairs = rearrange"),
    ),
    Mutant(
        name="slopes_cumprod_float32",
        description="slopes as a float32 cumulative product of the ratio",
        old="    slopes = powers_of_two(n) + powers_of_two(2 * n)[0::2][: num_heads - n]\n",
        new=("    base = torch.cumprod(torch.full((n,), 2.0 ** (-8.0 / n)), 0)\n"
             "    extra = torch.cumprod(torch.full((2 * n,), 2.0 ** (-4.0 / n)), 0)[0::2][: num_heads - n]\n"
             "    slopes = torch.cat([base, extra]).tolist()\n"),
    ),
    Mutant(
        name="alibi_bias_float64",
        description="alibi_bias returned in float64",
        old="distance = (query_pos - key_pos).abs().float()",
        new="distance = (query_pos - key_pos).abs().double()",
        also=(("return -alibi_slopes(num_heads)[:, None, None] * distance",
               "return -alibi_slopes(num_heads).double()[:, None, None] * distance"),),
    ),
    Mutant(
        name="learned_weight_slice",
        description="adds embedding.weight[:T] directly instead of looking positions up",
        old="return x + self.embedding(positions).to(x.dtype)",
        new="return x + self.embedding.weight[:seq_len].to(x.dtype)",
    ),
]
