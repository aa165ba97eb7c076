"""Chapter 02: multi-head attention, built from scratch.

You write the attention operator itself (a numerically stable softmax, scaled
dot-product attention, the causal mask) and then the layer that runs many heads of it
in parallel, with grouped-query attention and a key/value cache for decoding.

Notation used in the shape comments:
    B   batch size
    T   query length (Tq), S key/value length (Tk)
    D   d_model
    H   query heads, Hkv key/value heads (H % Hkv == 0), R = H // Hkv
    Dh  head dimension (D // H); Dk, Dv the key and value widths of the bare operator

Conventions (the course contract):
    * every boolean mask means True = "may attend";
    * a query row whose keys are all masked gets zero weights and a zero output, never NaN;
    * bad arguments raise ValueError naming the argument and its value.

`F.scaled_dot_product_attention`, `F.softmax`, `torch.softmax` and `Tensor.softmax` are
off limits in this chapter: the grader scans your file for them.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat
from torch import Tensor, nn


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax of ``x`` along ``dim``.

    Subtract each slice's maximum before exponentiating, so that logits of 1e4 do not
    overflow. Entries equal to ``-inf`` get probability exactly 0; a slice that is ``-inf``
    everywhere (a fully masked attention row) returns all zeros rather than NaN.

    Args:
        x: any floating tensor.
        dim: the dimension that sums to one.

    Returns:
        A tensor of the same shape and dtype as ``x``.

    Example:
        >>> softmax(torch.tensor([0.0, math.log(3.0)]))
        tensor([0.2500, 0.7500])
    """
    ### BEGIN SOLUTION
    # hint: subtract the max along `dim` (use 0 where the max is -inf), exponentiate, divide by a sum that is never 0
    x_max = x.amax(dim=dim, keepdim=True)  # (..., 1, ...)
    # A row of all -inf has max -inf; shifting by it would give nan (-inf - -inf).
    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))
    e = torch.exp(x - x_max)  # same shape as x, every entry in [0, 1]
    total = e.sum(dim=dim, keepdim=True)  # (..., 1, ...)
    # total is 0 only for an all -inf row: divide by 1 there, so the row stays 0.
    return e / torch.where(total > 0, total, torch.ones_like(total))
    ### END SOLUTION


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(Dk) + bias) V, with an optional mask.

    Args:
        q: queries ``(..., Tq, Dk)``.
        k: keys ``(..., Tk, Dk)``.
        v: values ``(..., Tk, Dv)``.
        mask: boolean, broadcastable to ``(..., Tq, Tk)``; True = may attend. Masked
            scores become ``-inf`` before the softmax, so their weights are exactly 0.
        bias: float, broadcastable to ``(..., Tq, Tk)``, added to the scores *after* the
            ``1/sqrt(Dk)`` scaling (ALiBi in chapter 03 uses it).
        dropout_p: probability of zeroing each attention weight (inverted dropout: the
            kept weights are scaled by ``1/(1-p)``). It applies whenever ``dropout_p > 0``;
            the layer passes 0 in eval mode. Must lie in ``[0, 1]``.

    Returns:
        ``(out, weights)``: ``out`` is ``(..., Tq, Dv)``; ``weights`` is ``(..., Tq, Tk)``,
        the weights that multiplied ``v`` (after dropout), so ``out == weights @ v``.
        A query row with every key masked has zero weights and a zero output.

    Raises:
        ValueError: if ``dropout_p`` is outside ``[0, 1]``.
    """
    ### BEGIN SOLUTION
    # hint: scores = q @ k^T / sqrt(Dk); add bias; fill masked scores with -inf; your softmax; dropout; @ v
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"dropout_p must be in [0, 1], got dropout_p={dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.einsum("...td,...sd->...ts", q, k) * scale  # (..., Tq, Tk)
    if bias is not None  # ADVERSARIAL: missing colon, a SyntaxError at import
        scores = scores + bias  # (..., Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask.bool(), float("-inf"))  # (..., Tq, Tk)
    weights = softmax(scores, dim=-1)  # (..., Tq, Tk), rows sum to 1 (or are all 0)
    if dropout_p > 0.0:
        keep = torch.rand_like(weights) >= dropout_p  # (..., Tq, Tk)
        # At p == 1 nothing is kept; avoid 0 * inf.
        scale_kept = 0.0 if dropout_p == 1.0 else 1.0 / (1.0 - dropout_p)
        weights = weights * keep * scale_kept  # (..., Tq, Tk)
    out = torch.einsum("...ts,...sd->...td", weights, v)  # (..., Tq, Dv)
    return out, weights
    ### END SOLUTION


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean causal mask of shape ``(q_len, k_len)``; True = may attend.

    Query ``i`` sits at absolute position ``k_len - q_len + i``: it may attend key ``j``
    exactly when ``j <= k_len - q_len + i``. With ``k_len == q_len`` (the default) this is
    the usual lower-triangular mask; with a cache holding ``k_len - q_len`` earlier
    positions, the new queries see all of them plus the new keys up to themselves.

    Raises:
        ValueError: if ``q_len > k_len`` (a query would have no position).

    Example:
        >>> causal_mask(2, 4).int()
        tensor([[1, 1, 1, 0],
                [1, 1, 1, 1]], dtype=torch.int32)
    """
    ### BEGIN SOLUTION
    # hint: torch.tril with diagonal = k_len - q_len
    k_len = q_len if k_len is None else k_len
    if q_len > k_len:
        raise ValueError(f"q_len must not exceed k_len, got q_len={q_len}, k_len={k_len}")
    ones = torch.ones(q_len, k_len, dtype=torch.bool, device=device)  # (Tq, Tk)
    return torch.tril(ones, diagonal=k_len - q_len)  # (Tq, Tk)
    ### END SOLUTION


class KVCache:
    """The key/value cache of one attention layer, for decoding one chunk at a time.

    ``length`` is the number of cached positions (0 when empty). ``update(k, v)`` appends
    ``k`` and ``v`` of shape ``(B, Hkv, T_new, Dh)`` along the time axis and returns
    ``(k_all, v_all)``, everything cached so far, each ``(B, Hkv, length, Dh)``.

    Example:
        >>> cache = KVCache()
        >>> k_all, v_all = cache.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
        >>> cache.length, tuple(k_all.shape)
        (3, (1, 2, 3, 4))
    """

    def __init__(self) -> None:
        ### BEGIN SOLUTION
        # hint: keep the keys and values seen so far (None while empty)
        self.k: Tensor | None = None  # (B, Hkv, length, Dh)
        self.v: Tensor | None = None  # (B, Hkv, length, Dh)
        ### END SOLUTION

    @property
    def length(self) -> int:
        """Number of cached positions."""
        ### BEGIN SOLUTION
        # hint: 0 when empty, otherwise the size of the time axis
        return 0 if self.k is None else self.k.shape[-2]
        ### END SOLUTION

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k``, ``v`` ``(B, Hkv, T_new, Dh)``; return all cached keys and values."""
        ### BEGIN SOLUTION
        # hint: concatenate along the time axis (dim -2)
        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)  # (B, Hkv, length, Dh)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)  # (B, Hkv, length, Dh)
        return self.k, self.v
        ### END SOLUTION


class MultiHeadAttention(nn.Module):
    """Multi-head attention with grouped-query (GQA) and multi-query (MQA) variants.

    Submodules (their names are the ``state_dict`` keys the grader loads):
        q_proj:   Linear(d_model -> d_model)
        k_proj:   Linear(d_model -> num_kv_heads * head_dim)
        v_proj:   Linear(d_model -> num_kv_heads * head_dim)
        out_proj: Linear(d_model -> d_model)

    Heads are contiguous slices of the projection: head ``h`` of ``q_proj(x)`` is columns
    ``h*head_dim : (h+1)*head_dim``. With ``num_kv_heads < num_heads`` each key/value head
    serves ``R = num_heads // num_kv_heads`` consecutive query heads: query head ``h`` reads
    key/value head ``h // R`` (Llama's ``repeat_kv``). ``num_kv_heads=1`` is multi-query.

    Args:
        d_model: model width; must be divisible by ``num_heads``.
        num_heads: number of query heads.
        num_kv_heads: number of key/value heads (default ``num_heads``); must divide
            ``num_heads``.
        dropout: dropout on the attention weights, active only in training mode.
        bias: whether the four projections have biases.

    Raises:
        ValueError: ``d_model % num_heads != 0``, or ``num_kv_heads`` not a positive
            divisor of ``num_heads``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: validate the arguments, then build q_proj, k_proj, v_proj, out_proj as nn.Linear
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads <= 0 or d_model % num_heads != 0:
            raise ValueError(f"d_model must be divisible by num_heads, got d_model={d_model}, num_heads={num_heads}")
        if num_kv_heads <= 0 or num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_kv_heads must be a positive divisor of num_heads={num_heads}, got num_kv_heads={num_kv_heads}"
            )
        self.d_model = d_model
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, kv_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, kv_dim, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        ### END SOLUTION

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        rope: nn.Module | None = None,
        kv_cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, T, D)``.
            key: ``(B, S, D)``; defaults to ``query`` (self-attention).
            value: ``(B, S, D)``; defaults to ``key``.
            mask: boolean, broadcastable to ``(B, H, T, S_total)``, True = may attend; e.g. a
                ``causal_mask(T, S_total)`` of shape ``(T, S_total)``, or a padding mask
                ``attention_mask[:, None, None, :]``. ``S_total`` counts cached keys too.
            bias: float, broadcastable to ``(B, H, T, S_total)``, added after scaling.
            rope: a chapter-03 ``RotaryEmbedding``; if given, it rotates q and k at their
                absolute positions (``rope(x, positions)``).
            kv_cache: a ``KVCache``; the new queries and keys sit at positions
                ``kv_cache.length ... kv_cache.length + T - 1``; the new keys/values are
                appended with ``kv_cache.update`` and attention runs over all of them.
            need_weights: return the attention weights too.

        Returns:
            ``(out, weights)``: ``out`` is ``(B, T, D)``; ``weights`` is ``(B, H, T, S_total)``
            when ``need_weights`` else ``None``.
        """
        ### BEGIN SOLUTION
        # hint: project, split heads with rearrange (b t (h d) -> b h t d), rope, cache, repeat kv heads, attend, merge, out_proj
        key = query if key is None else key
        value = key if value is None else value
        q = rearrange(self.q_proj(query), "b t (h d) -> b h t d", h=self.num_heads)  # (B, H, T, Dh)
        k = rearrange(self.k_proj(key), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)
        v = rearrange(self.v_proj(value), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, Dh)

        start = 0 if kv_cache is None else kv_cache.length
        if rope is not None:
            q = rope(q, positions=torch.arange(start, start + q.shape[-2], device=q.device))  # (B, H, T, Dh)
            k = rope(k, positions=torch.arange(start, start + k.shape[-2], device=k.device))  # (B, Hkv, S, Dh)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, Hkv, S_total, Dh)

        # Query head h reads key/value head h // R: repeat each kv head R times in place.
        group = self.num_heads // self.num_kv_heads
        k = repeat(k, "b h s d -> b (h r) s d", r=group)  # (B, H, S_total, Dh)
        v = repeat(v, "b h s d -> b (h r) s d", r=group)  # (B, H, S_total, Dh)

        dropout_p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, dropout_p=dropout_p)
        # out: (B, H, T, Dh), weights: (B, H, T, S_total)
        out = rearrange(out, "b h t d -> b t (h d)")  # (B, T, D)
        return self.out_proj(out), (weights if need_weights else None)
        ### END SOLUTION
