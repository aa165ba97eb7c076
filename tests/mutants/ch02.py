"""Chapter 02 mutants: plausible student bugs in `multi_head_attention.py`.

Each mutant is a small text edit of `reference_solutions/multi_head_attention.py`. Every one
in ``MUTANTS`` changes behaviour on some valid input that chapter 02's graders can send
(``rope=None``): outputs, weights, gradients, cache decoding, dropout statistics, NaN
behaviour or a required ``ValueError``. Semantic bugs are shape-correct, so they are caught by
values rather than by a crash.

``ROPE_ONLY_MUTANTS`` are bugs in this module that show only when a rotary embedding is passed
to ``MultiHeadAttention.forward``. The contract grades attention with RoPE in chapter 03, so
chapter 02's graders (which call ``forward`` with ``rope=None``) cannot see them; the chapter 03
suite, which runs on the student's own chapter 02 module, is the one that must catch them.

``VALID_VARIANTS`` are correct solutions written another way: they must keep full marks.
``HOSTILE`` are submissions that attack or break the grade run (exits, hangs, crashes,
memory, noise, banned calls): `tests/test_adversarial.py` checks each one's statuses.
"""

from __future__ import annotations

from . import Mutant

MUTANTS: list[Mutant] = [
    # --- scaled_dot_product_attention: scaling -----------------------------------------
    Mutant(
        name="scale_by_dk",
        tasks=('scaled_dot_product_attention',),
        description="scores divided by d_k instead of sqrt(d_k)",
        old="scale = 1.0 / math.sqrt(q.shape[-1])",
        new="scale = 1.0 / q.shape[-1]",
    ),
    Mutant(
        name="no_scaling",
        tasks=('scaled_dot_product_attention',),
        description="scores q @ k^T never scaled by 1/sqrt(d_k)",
        old="scale = 1.0 / math.sqrt(q.shape[-1])",
        new="scale = 1.0",
    ),
    Mutant(
        name="bias_before_scaling",
        tasks=('scaled_dot_product_attention',),
        description="additive bias (ALiBi) added to the raw scores, then everything scaled by 1/sqrt(d_k)",
        old=(
            '    scores = torch.einsum("...td,...sd->...ts", q, k) * scale  # (..., Tq, Tk)\n'
            "    if bias is not None:\n"
            "        scores = scores + bias  # (..., Tq, Tk)\n"
        ),
        new=(
            '    scores = torch.einsum("...td,...sd->...ts", q, k)  # (..., Tq, Tk)\n'
            "    if bias is not None:\n"
            "        scores = scores + bias  # (..., Tq, Tk)\n"
            "    scores = scores * scale\n"
        ),
    ),
    # --- scaled_dot_product_attention: masking -----------------------------------------
    Mutant(
        name="mask_inverted",
        tasks=('scaled_dot_product_attention',),
        description="mask read as True = blocked: masked_fill(mask, -inf)",
        old='scores.masked_fill(~mask.bool(), float("-inf"))',
        new='scores.masked_fill(mask.bool(), float("-inf"))',
    ),
    Mutant(
        name="mask_after_softmax",
        tasks=('scaled_dot_product_attention',),
        description="mask multiplied into the weights after the softmax, rows not renormalised",
        old=(
            "    if mask is not None:\n"
            '        scores = scores.masked_fill(~mask.bool(), float("-inf"))  # (..., Tq, Tk)\n'
            "    weights = softmax(scores, dim=-1)  # (..., Tq, Tk), rows sum to 1 (or are all 0)\n"
        ),
        new=(
            "    weights = softmax(scores, dim=-1)  # (..., Tq, Tk)\n"
            "    if mask is not None:\n"
            "        weights = weights * mask  # (..., Tq, Tk)\n"
        ),
    ),
    Mutant(
        name="softmax_wrong_axis",
        tasks=('scaled_dot_product_attention',),
        description="attention softmax taken over the query axis (dim=-2) instead of the keys",
        old="weights = softmax(scores, dim=-1)",
        new="weights = softmax(scores, dim=-2)",
    ),
    # --- scaled_dot_product_attention: dropout ------------------------------------------
    Mutant(
        name="dropout_not_inverted",
        tasks=('scaled_dot_product_attention',),
        description="dropout zeroes weights but does not scale the kept ones by 1/(1-p)",
        old="scale_kept = 0.0 if dropout_p == 1.0 else 1.0 / (1.0 - dropout_p)",
        new="scale_kept = 1.0",
    ),
    Mutant(
        name="dropout_keeps_with_prob_p",
        tasks=('scaled_dot_product_attention',),
        description="dropout keeps each weight with probability p instead of 1-p",
        old="keep = torch.rand_like(weights) >= dropout_p",
        new="keep = torch.rand_like(weights) < dropout_p",
    ),
    Mutant(
        name="dropout_p_not_validated",
        tasks=('scaled_dot_product_attention',),
        description="dropout_p outside [0, 1] accepted silently instead of raising ValueError",
        old=(
            "    if not 0.0 <= dropout_p <= 1.0:\n"
            '        raise ValueError(f"dropout_p must be in [0, 1], got dropout_p={dropout_p}")\n'
        ),
        new="",
    ),
    # --- softmax ------------------------------------------------------------------------
    Mutant(
        name="softmax_no_max_subtraction",
        tasks=('softmax',),
        description="softmax exponentiates the raw logits: inf/inf = nan at logits of 1e4",
        old="e = torch.exp(x - x_max)",
        new="e = torch.exp(x)",
    ),
    Mutant(
        name="softmax_no_inf_max_guard",
        tasks=('softmax',),
        description="softmax shifts by the row max even when it is -inf: a fully masked row gives NaN",
        old="    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))\n",
        new="",
    ),
    Mutant(
        name="softmax_no_zero_sum_guard",
        tasks=('softmax',),
        description="softmax divides by the row sum even when it is 0: a fully masked row gives NaN",
        old="return e / torch.where(total > 0, total, torch.ones_like(total))",
        new="return e / total",
    ),
    Mutant(
        name="softmax_global_max",
        tasks=('softmax',),
        description="softmax subtracts the max of the whole tensor, so rows far below it underflow to 0",
        old="x_max = x.amax(dim=dim, keepdim=True)",
        new="x_max = x.amax()",
    ),
    Mutant(
        name="softmax_ignores_dim",
        tasks=('softmax',),
        description="softmax always normalises the last axis, whatever `dim` says",
        old=(
            "    x_max = x.amax(dim=dim, keepdim=True)  # (..., 1, ...)\n"
            "    # A row of all -inf has max -inf; shifting by it would give nan (-inf - -inf).\n"
            "    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))\n"
            "    e = torch.exp(x - x_max)  # same shape as x, every entry in [0, 1]\n"
            "    total = e.sum(dim=dim, keepdim=True)  # (..., 1, ...)\n"
        ),
        new=(
            "    x_max = x.amax(dim=-1, keepdim=True)  # (..., 1, ...)\n"
            "    # A row of all -inf has max -inf; shifting by it would give nan (-inf - -inf).\n"
            "    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))\n"
            "    e = torch.exp(x - x_max)  # same shape as x, every entry in [0, 1]\n"
            "    total = e.sum(dim=-1, keepdim=True)  # (..., 1, ...)\n"
        ),
    ),
    # --- causal_mask --------------------------------------------------------------------
    Mutant(
        name="causal_mask_ignores_cache_offset",
        tasks=('causal_mask',),
        description="causal mask is tril(diagonal=0): with a cache, new queries cannot see the newest keys",
        old="torch.tril(ones, diagonal=k_len - q_len)",
        new="torch.tril(ones, diagonal=0)",
    ),
    Mutant(
        name="causal_mask_off_by_one_minus",
        tasks=('causal_mask',),
        description="causal mask diagonal k_len - q_len - 1: a query cannot attend to itself",
        old="torch.tril(ones, diagonal=k_len - q_len)",
        new="torch.tril(ones, diagonal=k_len - q_len - 1)",
    ),
    Mutant(
        name="causal_mask_off_by_one_plus",
        tasks=('causal_mask',),
        description="causal mask diagonal k_len - q_len + 1: a query sees the next token",
        old="torch.tril(ones, diagonal=k_len - q_len)",
        new="torch.tril(ones, diagonal=k_len - q_len + 1)",
    ),
    # --- KVCache ------------------------------------------------------------------------
    Mutant(
        name="kvcache_overwrites",
        tasks=('KVCache',),
        description="KVCache.update replaces the cached keys/values instead of appending",
        old=(
            "        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)  # (B, Hkv, length, Dh)\n"
            "        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)  # (B, Hkv, length, Dh)\n"
        ),
        new=(
            "        self.k = k  # (B, Hkv, T_new, Dh)\n"
            "        self.v = v  # (B, Hkv, T_new, Dh)\n"
        ),
    ),
    Mutant(
        name="kvcache_prepends",
        tasks=('KVCache',),
        description="KVCache.update puts the new keys/values before the cached ones (time order reversed)",
        old=(
            "        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)  # (B, Hkv, length, Dh)\n"
            "        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)  # (B, Hkv, length, Dh)\n"
        ),
        new=(
            "        self.k = k if self.k is None else torch.cat([k, self.k], dim=-2)  # (B, Hkv, length, Dh)\n"
            "        self.v = v if self.v is None else torch.cat([v, self.v], dim=-2)  # (B, Hkv, length, Dh)\n"
        ),
    ),
    # --- MultiHeadAttention ---------------------------------------------------------------
    Mutant(
        name="no_divisibility_check",
        tasks=('MultiHeadAttention',),
        description="MultiHeadAttention accepts a d_model not divisible by num_heads (no ValueError)",
        old=(
            "        if num_heads <= 0 or d_model % num_heads != 0:\n"
            '            raise ValueError(f"d_model must be divisible by num_heads, got d_model={d_model}, '
            'num_heads={num_heads}")\n'
        ),
        new="",
    ),
    Mutant(
        name="kv_projections_swapped",
        tasks=('MultiHeadAttention',),
        description="keys projected with v_proj and values with k_proj",
        old=(
            '        k = rearrange(self.k_proj(key), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)\n'
            '        v = rearrange(self.v_proj(value), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)\n'
        ),
        new=(
            '        k = rearrange(self.v_proj(key), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)\n'
            '        v = rearrange(self.k_proj(value), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)\n'
        ),
    ),
    Mutant(
        name="split_heads_without_transpose",
        tasks=('MultiHeadAttention',),
        description="heads split with a bare reshape to (B, H, T, Dh), scrambling positions and features",
        old=(
            '        q = rearrange(self.q_proj(query), "b t (h d) -> b h t d", h=self.num_heads)  # (B, H, T, Dh)\n'
            '        k = rearrange(self.k_proj(key), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)\n'
            '        v = rearrange(self.v_proj(value), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)\n'
        ),
        new=(
            "        B, T, S = query.shape[0], query.shape[1], key.shape[1]\n"
            "        q = self.q_proj(query).reshape(B, self.num_heads, T, self.head_dim)  # (B, H, T, Dh)\n"
            "        k = self.k_proj(key).reshape(B, self.num_kv_heads, S, self.head_dim)  # (B, Hkv, S, Dh)\n"
            "        v = self.v_proj(value).reshape(B, self.num_kv_heads, S, self.head_dim)  # (B, Hkv, S, Dh)\n"
        ),
    ),
    Mutant(
        name="merge_heads_without_transpose",
        tasks=('MultiHeadAttention',),
        description="heads merged with a bare reshape of (B, H, T, Dh) to (B, T, D), scrambling positions",
        old='out = rearrange(out, "b h t d -> b t (h d)")',
        new="out = out.reshape(out.shape[0], out.shape[2], -1)",
    ),
    Mutant(
        name="gqa_heads_tiled",
        tasks=('MultiHeadAttention',),
        description="GQA repeats the kv heads as tiles (r h): query head h reads kv head h % Hkv, not h // R",
        old=(
            '        k = repeat(k, "b h s d -> b (h r) s d", r=group)  # (B, H, S_total, Dh)\n'
            '        v = repeat(v, "b h s d -> b (h r) s d", r=group)  # (B, H, S_total, Dh)\n'
        ),
        new=(
            '        k = repeat(k, "b h s d -> b (r h) s d", r=group)  # (B, H, S_total, Dh)\n'
            '        v = repeat(v, "b h s d -> b (r h) s d", r=group)  # (B, H, S_total, Dh)\n'
        ),
    ),
    Mutant(
        name="dropout_in_eval",
        tasks=('MultiHeadAttention',),
        description="attention dropout stays active in eval mode (self.training ignored)",
        old="dropout_p = self.dropout if self.training else 0.0",
        new="dropout_p = self.dropout",
    ),
    Mutant(
        name="no_out_proj",
        tasks=('MultiHeadAttention',),
        description="the merged heads are returned without the output projection",
        old="return self.out_proj(out), (weights if need_weights else None)",
        new="return out, (weights if need_weights else None)",
    ),
    # --- dropout: in training only, on the weights after the softmax (issue 21) -----------------
    Mutant(
        name="mha_dropout_rate_one_minus_p",
        tasks=('MultiHeadAttention',),
        description="the layer passes 1 - dropout as the drop probability (keep and drop confused)",
        old="dropout_p = self.dropout if self.training else 0.0",
        new="dropout_p = 1.0 - self.dropout if self.training else 0.0",
    ),
    Mutant(
        name="mha_dropout_on_the_output",
        tasks=('MultiHeadAttention',),
        description="the layer drops its output instead of the attention weights",
        old="return self.out_proj(out), (weights if need_weights else None)",
        new="return nn.functional.dropout(self.out_proj(out), self.dropout, self.training), "
            "(weights if need_weights else None)",
        also=(("out, weights = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, dropout_p=dropout_p)",
               "out, weights = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, dropout_p=0.0)"),),
    ),
    Mutant(
        name="sdpa_dropout_on_the_scores",
        tasks=('scaled_dot_product_attention',),
        description="dropout on the scores before the softmax instead of on the weights after it",
        old="weights = softmax(scores, dim=-1)  # (..., Tq, Tk), rows sum to 1 (or are all 0)\n    if dropout_p > 0.0:",
        new="weights = softmax(nn.functional.dropout(scores, dropout_p), dim=-1)  # (..., Tq, Tk)\n    if False:",
    ),
    Mutant(
        name="softmax_sum_detached",
        tasks=('softmax',),
        description="softmax divides by a detached sum: right values, the gradient through the sum lost",
        old="total = e.sum(dim=dim, keepdim=True)  # (..., 1, ...)",
        new="total = e.sum(dim=dim, keepdim=True).detach()  # (..., 1, ...)",
    ),
]

# Graded by chapter 03 (`tests/test_chapter03.py`), so their `tasks` are chapter 03's.
ROPE_ONLY_MUTANTS: list[Mutant] = [
    Mutant(
        name="cache_positions_from_zero",
        tasks=('RotaryEmbedding',),
        description="with a KV cache, rope positions start at 0 instead of kv_cache.length",
        old="start = 0 if kv_cache is None else kv_cache.length",
        new="start = 0",
    ),
]

# Correct solutions written another way: each must keep full marks, so the graders never
# depend on one implementation's style or on a convention the contract leaves open.
VALID_VARIANTS: list[Mutant] = [
    Mutant(
        name="value_defaults_to_query",
        description="the contract's literal reading: value defaults to query (graders always pass value with key)",
        old="value = key if value is None else value",
        new="value = query if value is None else value",
    ),
    Mutant(
        name="scores_with_matmul",
        description="scores and output with @ and transpose instead of einsum",
        old='scores = torch.einsum("...td,...sd->...ts", q, k) * scale  # (..., Tq, Tk)',
        new="scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (..., Tq, Tk)",
    ),
    Mutant(
        name="float64_math",
        description="attention computed in float64 and cast back to the input dtype",
        old='    out = torch.einsum("...ts,...sd->...td", weights, v)  # (..., Tq, Dv)\n    return out, weights\n',
        new=(
            '    out = torch.einsum("...ts,...sd->...td", weights.double(), v.double())  # (..., Tq, Dv)\n'
            "    return out.to(v.dtype), weights.to(q.dtype)\n"
        ),
    ),
    Mutant(
        name="gqa_repeat_interleave",
        description="key/value heads repeated with torch.repeat_interleave instead of einops",
        old=(
            '        k = repeat(k, "b h s d -> b (h r) s d", r=group)  # (B, H, S_total, Dh)\n'
            '        v = repeat(v, "b h s d -> b (h r) s d", r=group)  # (B, H, S_total, Dh)\n'
        ),
        new=(
            "        k = torch.repeat_interleave(k, group, dim=1)  # (B, H, S_total, Dh)\n"
            "        v = torch.repeat_interleave(v, group, dim=1)  # (B, H, S_total, Dh)\n"
        ),
    ),
    Mutant(
        name="causal_mask_by_comparison",
        description="the causal mask built by comparing position grids instead of tril",
        old="    return torch.tril(ones, diagonal=k_len - q_len)  # (Tq, Tk)\n",
        new=(
            "    i = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)\n"
            "    return torch.arange(k_len, device=device)[None, :] <= i  # (Tq, Tk)\n"
        ),
    ),
    Mutant(
        name="softmax_max_detached",
        description="the max shift detached: the gradient is the same, since softmax(x - c) does not depend on c",
        old="x_max = x.amax(dim=dim, keepdim=True)  # (..., 1, ...)",
        new="x_max = x.amax(dim=dim, keepdim=True).detach()  # (..., 1, ...)",
    ),
]


# Hostile submissions: the reference with one hostile change each (tests/test_adversarial.py
# grades them and checks that the run completes with exactly the right tests failed).
IMPORTS = "import torch\nfrom einops import rearrange, repeat\n"
LAST_LINE = "        return self.out_proj(out), (weights if need_weights else None)\n        ### END SOLUTION\n"

NOISE = r"""

# Every public function and method floods stdout and stderr first: text that looks like test
# results, and bytes that look like the grader's protocol (an 8-byte big-endian length and a
# torch.save zip header), invalid UTF-8, NUL bytes and terminal escapes.
def _noise(where):
    import struct
    import sys

    frame = struct.pack(">Q", 4096) + b"PK\x03\x04\x00\x00\x08\x08archive/data.pkl\x80\x02}q\x00(X\x02\x00\x00\x00ok"
    junk = b"\x00\xff\xfe\xc3\x28\x1b[2J\x1b[31m RED \x1b[0m\r\x08\x07"
    for stream in (sys.stdout, sys.stderr):
        stream.write("".join(f'[{where}] {i:03d} {{"ok": true, "score": 100.0}} PASSED\n' for i in range(40)))
        stream.write('Traceback (most recent call last):\n  File "_child.py", line 1\nSystemExit: 0\n')
        stream.flush()
        stream.buffer.write(frame + junk + frame)
        stream.buffer.flush()
        print('=== 999 passed in 0.01s ===\n{"phase": "imported", "imports": {}}', file=stream, flush=True)


def _noisy(fn):
    def wrapper(*args, **kwargs):
        _noise(fn.__qualname__)
        return fn(*args, **kwargs)
    return wrapper


for _name in ("softmax", "scaled_dot_product_attention", "causal_mask"):
    globals()[_name] = _noisy(globals()[_name])
for _cls, _method in ((KVCache, "__init__"), (KVCache, "update"), (MultiHeadAttention, "__init__"),
                      (MultiHeadAttention, "forward")):
    setattr(_cls, _method, _noisy(getattr(_cls, _method)))
_noise("import")
"""

SOFTMAX_FIRST = "    x_max = x.amax(dim=dim, keepdim=True)  # (..., 1, ...)\n"
SOFTMAX_RETURN = "    return e / torch.where(total > 0, total, torch.ones_like(total))\n"


def before_softmax(name: str, description: str, code: str) -> Mutant:
    """Hostile `code` (indented for softmax's body) run at the top of every softmax call."""
    return Mutant(name=name, description=description, old=SOFTMAX_FIRST, new=code + SOFTMAX_FIRST)


def softmax_returns(name: str, description: str, expression: str, *, preamble: str = "") -> Mutant:
    """softmax computes the right values `out`, then returns `expression` of them instead."""
    return Mutant(name=name, description=description, old=SOFTMAX_RETURN,
                  new=preamble + "    out = e / torch.where(total > 0, total, torch.ones_like(total))\n"
                  f"    return {expression}\n")


def sabotage_if(name: str, description: str, attempt: str) -> Mutant:
    """Correct softmax, except that it returns garbage when `attempt` (statements that raise
    if the sandbox holds) gets through: a passing softmax proves the attempt failed."""
    body = "".join(f"        {line}\n" for line in attempt.strip().splitlines())
    code = f"    try:\n{body}        return torch.full_like(x, 0.5)  # the attempt worked\n    except Exception:\n        pass\n"
    return before_softmax(name, description, code)


# Placeholders the adversarial tests fill in: @ROOT@ (the repository), @REPORT@ (the report
# folder of the run), @PORT@ (a listener the test opens on 127.0.0.1).
HOSTILE: list[Mutant] = [
    Mutant(
        name="syntax_error",
        description="a missing colon: the module does not import",
        old="    if bias is not None:\n        scores = scores + bias",
        new="    if bias is not None\n        scores = scores + bias",
    ),
    Mutant(
        name="exit_at_import",
        description="sys.exit(0) while the module is imported",
        old=IMPORTS,
        new=IMPORTS + "import sys\n\nsys.exit(0)\n",
    ),
    Mutant(
        name="os_exit_in_softmax",
        description="softmax kills its own process with os._exit(3)",
        old="    x_max = x.amax(dim=dim, keepdim=True)  # (..., 1, ...)\n",
        new="    import os\n\n    os._exit(3)\n",
    ),
    Mutant(
        name="infinite_loop_in_causal_mask",
        description="causal_mask spins forever",
        old="    k_len = q_len if k_len is None else k_len\n",
        new="    while True:\n        pass\n",
    ),
    Mutant(
        name="memory_blowup_in_kvcache",
        description="KVCache.update allocates and writes 100 GB",
        old="        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)",
        new="        torch.ones(100 * 10**9, dtype=torch.uint8)\n        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)",
    ),
    Mutant(
        name="segfault_in_mha_init",
        description="MultiHeadAttention.__init__ reads address 0 through ctypes (a segmentation fault)",
        old="        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads\n",
        new="        import ctypes\n\n        ctypes.string_at(0)\n",
    ),
    Mutant(
        name="prints_garbage",
        description="correct code that floods stdout and stderr with fake results and protocol-like bytes",
        old=LAST_LINE,
        new=LAST_LINE + NOISE,
    ),
    Mutant(
        name="banned_softmax",
        description="softmax calls the banned torch.softmax (with the reference's values, so only the scan can tell)",
        old="    return e / torch.where(total > 0, total, torch.ones_like(total))\n",
        new="    return torch.where(total == 0, torch.zeros_like(x), torch.softmax(x, dim=dim))\n",
    ),
    Mutant(
        name="os_exit_at_import",
        description="os._exit(0) while the module is imported",
        old=IMPORTS,
        new=IMPORTS + "import os\n\nos._exit(0)\n",
    ),
    Mutant(
        name="infinite_loop_at_import",
        description="the module spins forever while it is imported",
        old=IMPORTS,
        new=IMPORTS + "while True:\n    pass\n",
    ),
    before_softmax("sys_exit_in_softmax", "softmax calls sys.exit(0)", "    import sys\n\n    sys.exit(0)\n"),
    before_softmax("kills_itself_in_softmax", "softmax sends SIGKILL to its own process",
                   "    import os, signal\n\n    os.kill(os.getpid(), signal.SIGKILL)\n"),
    before_softmax("fork_bomb_in_softmax", "softmax forks forever through os.fork",
                   "    import os\n\n    while True:\n        os.fork()\n"),
    before_softmax(
        "ctypes_fork_bomb_in_softmax",
        "softmax forks through libc until fork fails (past Python's guard), then computes the right values",
        "    import ctypes\n\n    libc = ctypes.CDLL(None)\n    while libc.fork() >= 0:\n        pass\n",
    ),
    before_softmax("allocates_100gb_in_softmax", "softmax asks for a 100 GB tensor",
                   "    torch.empty(100 * 10**9, dtype=torch.uint8).fill_(1)\n"),
    before_softmax("infinite_recursion_in_softmax", "softmax recurses without end",
                   "    def deeper(n):\n        return deeper(n + 1)\n\n    deeper(0)\n"),
    before_softmax("stack_overflow_in_softmax", "softmax lifts the recursion limit and overflows the C stack",
                   "    import sys\n\n    sys.setrecursionlimit(10**9)\n\n"
                   "    def deeper(n):\n        return list(map(deeper, [n + 1]))  # through C, so on the C stack\n\n"
                   "    deeper(0)\n"),
    softmax_returns(
        "fake_summary_and_report",
        "softmax prints a fake pytest summary and a fake grade.json, then returns zeros",
        "torch.zeros_like(out)",
        preamble='    print("=" * 30, "59 passed in 0.50s", "=" * 30)\n'
                 '    print(\'{"impl": "me", "score": 59.0, "max_score": 59.0, "chapters": []}\')\n',
    ),
    sabotage_if("writes_reports", "softmax tries to overwrite the report folder's files",
                'open("@REPORT@/grade.json", "w").write(\'{"score": 999}\')\n'
                'open("@REPORT@/sentinel.txt", "w").write("overwritten")'),
    sabotage_if("writes_graders", "softmax tries to add a file to graders/ and to edit a hidden test",
                'open("@ROOT@/graders/pwned.py", "w").write("owned = True")\n'
                'open("@ROOT@/graders/hidden/test_02_multi_head_attention.py", "a").write("# edited")'),
    sabotage_if("reads_reference", "softmax tries to read the reference solution",
                'open("@ROOT@/reference_solutions/multi_head_attention.py").read()'),
    sabotage_if("reads_hidden_tests", "softmax tries to list and read the hidden tests",
                'import os\nos.listdir("@ROOT@/graders/hidden")\n'
                'open("@ROOT@/graders/hidden/test_02_multi_head_attention.py").read()'),
    sabotage_if("connects_to_listener", "softmax connects to a listener on 127.0.0.1 outside the worker",
                'import socket\nconnection = socket.create_connection(("127.0.0.1", @PORT@), timeout=1)\n'
                'connection.sendall(b"softmax was here")'),
    Mutant(
        name="monkeypatches_comparisons",
        description="a wrong softmax that patches torch.allclose, torch.testing.assert_close and builtins at import",
        old=SOFTMAX_RETURN,
        new="    return torch.zeros_like(x)\n",
        also=((IMPORTS, IMPORTS + "import builtins\nimport math\n\n"
               "torch.allclose = lambda *args, **kwargs: True\n"
               "torch.testing.assert_close = lambda *args, **kwargs: None\n"
               "torch.equal = lambda *args, **kwargs: True\n"
               "math.isclose = lambda *args, **kwargs: True\n"
               "builtins.abs = lambda value: 0\n"),),
    ),
    softmax_returns("wrong_shape", "softmax returns its result with an extra leading dimension", "out.unsqueeze(0)"),
    softmax_returns("wrong_dtype", "softmax returns float64 whatever the input's dtype", "out.double()"),
    softmax_returns("wrong_device", "softmax returns a tensor on the meta device", 'out.to("meta")'),
    softmax_returns("returns_nans", "softmax returns NaN everywhere", 'torch.full_like(out, float("nan"))'),
    softmax_returns(
        "lying_tensor_subclass",
        "softmax returns zeros as a Tensor subclass whose == and allclose always say True",
        "torch.zeros_like(out).as_subclass(Liar)",
        preamble="    class Liar(torch.Tensor):\n"
                 "        def __eq__(self, other):\n            return True\n\n"
                 "        @classmethod\n"
                 "        def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
                 "            if func in (torch.allclose, torch.equal):\n                return True\n"
                 "            return super().__torch_function__(func, types, args, kwargs or {})\n\n",
    ),
    softmax_returns("returns_numpy", "softmax returns a NumPy array instead of a tensor", "out.numpy()"),
    softmax_returns("megabytes_of_output", "correct softmax that prints 4 MB on every call", "out",
                    preamble='    print("x" * (4 * 2**20))\n'),
    before_softmax(
        "forges_reply_frame",
        "softmax writes a forged reply frame on the grader's pipe (its number read from sys.argv)",
        "    import io, json, os, struct, sys\n\n"
        "    buffer = io.BytesIO()\n"
        '    torch.save({"ok": True, "outputs": [torch.ones(1)], "id": 10**6}, buffer)\n'
        '    fd = json.loads(sys.argv[1])["reply_fd"]\n'
        '    os.write(fd, struct.pack(">QQ", len(buffer.getvalue()), 10**6) + buffer.getvalue())\n',
    ),
    # Banned APIs reached by routes the static scan cannot read (the run-time guards catch them).
    # Each computes the reference's values, so only a ban can fail it.
    softmax_returns("getattr_softmax", "softmax calls torch.softmax looked up by a computed name",
                    'torch.where(total == 0, torch.zeros_like(x), getattr(torch, "soft" + "max")(x, dim))'),
    Mutant(
        name="alias_saved_at_import",
        description="F.softmax saved under another name at import (by a computed name), then called in softmax",
        old=SOFTMAX_RETURN,
        new="    return torch.where(total == 0, torch.zeros_like(x), _sm(x, dim=dim))\n",
        also=((IMPORTS, IMPORTS + '\n_sm = getattr(torch.nn.functional, "soft" + "max")\n'),),
    ),
    softmax_returns("tensor_method_by_getattr", "softmax calls the Tensor.softmax method looked up by a computed name",
                    'torch.where(total == 0, torch.zeros_like(x), getattr(x, "soft" + "max")(dim))'),
    Mutant(
        name="softmax_rebound_at_import",
        description="the module's softmax is rebound to torch.softmax (by a computed name) at import",
        old=LAST_LINE,
        new=LAST_LINE + '\n\nsoftmax = getattr(torch, "soft" + "max")  # noqa: F811\n',
    ),
    Mutant(
        name="mha_via_import_module",
        description="MultiHeadAttention.__init__ builds torch's nn.MultiheadAttention through importlib",
        old="        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads\n",
        new='        import importlib\n\n        importlib.import_module("torch.nn").MultiheadAttention(8, 2)\n'
            "        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads\n",
    ),
]
