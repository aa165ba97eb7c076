"""Chapter 03: positional encodings, four ways.

Attention on its own is blind to order: permute the tokens and the outputs permute with
them. This chapter gives the model positions, in the four ways the field has used:

    * sinusoidal (the 2017 paper): a fixed table of sines and cosines added to the input;
    * learned (BERT, GPT-2): a trained embedding per position, added to the input;
    * rotary, RoPE (RoFormer, Llama): queries and keys rotated by an angle that grows with
      position, so their dot product depends only on the distance between them;
    * ALiBi (BLOOM): no embedding at all, a penalty on the attention scores that grows
      linearly with distance, with a different slope per head.

Notation used in the shape comments:
    B   batch size
    T   sequence length (query length), S key length
    D   d_model
    H   heads, Dh head dimension (head_dim)
    P   positions in a table (max_len)

Conventions (the course contract):
    * positions are absolute token indices 0, 1, 2, ...; with a cache of length L the new
      tokens sit at L, L + 1, ...;
    * bad arguments (an odd ``d_model`` or ``head_dim``, a sequence longer than ``max_len``)
      raise ValueError naming the argument and its value.

Compute angles (position times frequency) in float64 and cast the result to the input's
dtype: at position 1e5 a float32 angle is already off by about 0.01 radians.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


def sinusoidal_encoding(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The sinusoidal position table of "Attention Is All You Need".

    Row ``p`` encodes position ``p``; column pairs ``(2i, 2i+1)`` hold one frequency::

        PE[p, 2i]   = sin(p / base ** (2i / d_model))
        PE[p, 2i+1] = cos(p / base ** (2i / d_model))

    so the first pair turns once every 2*pi positions and the last pair almost never.

    Args:
        max_len: number of positions (rows), 0, 1, ..., max_len - 1.
        d_model: width of the table (columns); must be even.
        base: the wavelength scale (10000 in the paper).

    Returns:
        A float32 tensor ``(max_len, d_model)`` with every entry in ``[-1, 1]``.

    Raises:
        ValueError: if ``d_model`` is odd or not positive, or ``max_len`` is negative.

    Example:
        >>> sinusoidal_encoding(2, 4)
        tensor([[0.0000, 1.0000, 0.0000, 1.0000],
                [0.8415, 0.5403, 0.0100, 0.9999]])
    """
    ### BEGIN SOLUTION
    # hint: angles = positions (column) * base ** (-2i / d_model) (row); sin into even columns, cos into odd
    if d_model <= 0 or d_model % 2 != 0:
        raise ValueError(f"d_model must be a positive even number, got d_model={d_model}")
    if max_len < 0:
        raise ValueError(f"max_len must be non-negative, got max_len={max_len}")
    positions = torch.arange(max_len, dtype=torch.float64)  # (P,)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,) the even indices 2i
    inv_freq = base ** (-two_i / d_model)  # (D/2,)
    angles = torch.outer(positions, inv_freq)  # (P, D/2)
    # Stack sin and cos on a last axis of 2 and flatten it: columns sin0, cos0, sin1, cos1, ...
    table = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (P, D/2, 2)
    return rearrange(table, "p half two -> p (half two)").float()  # (P, D)
    ### END SOLUTION


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to a batch of embeddings.

    The table is a buffer (it moves with ``.to(device)``) that is not saved in the
    ``state_dict``: it is recomputed from the arguments, never learned.

    Args:
        d_model: embedding width (even).
        max_len: longest sequence the table covers.
        dropout: dropout on the sum, active only in training mode.

    Shapes:
        ``forward(x)``: ``x`` is ``(B, T, D)``; returns ``dropout(x + PE[:T])``, same shape and
        dtype as ``x``.

    Raises:
        ValueError: an odd ``d_model`` (at construction), or ``T > max_len`` (in forward).
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: register sinusoidal_encoding(max_len, d_model) as a buffer with persistent=False; build nn.Dropout
        self.max_len = max_len
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)  # (P, D)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: check T against max_len, add the first T rows (in x's dtype), apply dropout
        seq_len = x.shape[-2]
        if seq_len > self.max_len:
            raise ValueError(f"sequence length {seq_len} exceeds max_len={self.max_len}")
        return self.dropout(x + self.pe[:seq_len].to(x.dtype))  # (B, T, D)
        ### END SOLUTION


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position (BERT, GPT-2).

    Submodule (its name is the ``state_dict`` key the grader loads):
        embedding: ``nn.Embedding(max_len, d_model)``; row ``p`` is position ``p``'s vector.

    Shapes:
        ``forward(x)``: ``x`` is ``(B, T, D)``; returns ``x + embedding.weight[:T]``, same shape.

    Raises:
        ValueError: in forward, if ``T > max_len``: a learned table has no row for
        position ``max_len`` or later. (``nn.Embedding`` itself would raise IndexError.)
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: one nn.Embedding(max_len, d_model) named `embedding`
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: reject T > max_len with ValueError, then add embedding(arange(T)) to x
        seq_len = x.shape[-2]
        if seq_len > self.max_len:
            raise ValueError(f"sequence length {seq_len} exceeds max_len={self.max_len}")
        positions = torch.arange(seq_len, device=x.device)  # (T,)
        return x + self.embedding(positions).to(x.dtype)  # (B, T, D)
        ### END SOLUTION


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE), applied to queries and keys inside attention.

    The head dimension is split into ``head_dim / 2`` pairs; pair ``i`` is rotated by the
    angle ``p * theta_i`` at position ``p``, with ``theta_i = base ** (-2i / head_dim)``::

        (a, b) -> (a cos(p theta_i) - b sin(p theta_i),  a sin(p theta_i) + b cos(p theta_i))

    A rotation keeps lengths, and the dot product of a query rotated for position ``m`` with a
    key rotated for position ``n`` depends only on ``m - n``. Which dimensions form a pair is
    a convention:

        * ``interleaved=False`` (GPT-NeoX, Hugging Face Llama): pair ``i`` is
          ``(x[i], x[i + head_dim/2])``, the two halves of the vector;
        * ``interleaved=True`` (RoFormer, Meta's Llama): pair ``i`` is ``(x[2i], x[2i+1])``.

    Both are the same rotation, on dimensions listed in a different order. There are no
    parameters, and no length limit: any position works.

    Args:
        head_dim: the last dimension of the inputs; must be even.
        base: the frequency base (10000 in RoFormer and Llama 2).
        interleaved: the pairing convention, as above.

    Shapes:
        ``forward(x, positions=None)``: ``x`` is ``(..., T, head_dim)``, e.g. ``(B, H, T, Dh)``;
        ``positions`` is a 1-D integer tensor of length ``T`` with each row's absolute
        position, default ``0, 1, ..., T-1``. Returns the rotated ``x``, same shape and dtype.

    Raises:
        ValueError: an odd ``head_dim``; ``positions`` not of shape ``(T,)``.

    Example:
        >>> rope = RotaryEmbedding(2)
        >>> rope(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # positions 0 and 1: turned by 0 and 1 rad
        tensor([[1.0000, 0.0000],
                [0.5403, 0.8415]])
    """

    def __init__(self, head_dim: int, base: float = 10000.0, interleaved: bool = False) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: check head_dim is even; keep head_dim, base and interleaved (no parameters)
        if head_dim <= 0 or head_dim % 2 != 0:
            raise ValueError(f"head_dim must be a positive even number, got head_dim={head_dim}")
        self.head_dim = head_dim
        self.base = base
        self.interleaved = interleaved
        ### END SOLUTION

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        ### BEGIN SOLUTION
        # hint: angles = positions (float64) x theta_i; take cos/sin; rotate each (a, b) pair as the docstring says
        seq_len = x.shape[-2]
        if positions is None:
            positions = torch.arange(seq_len, device=x.device)  # (T,)
        if positions.shape != (seq_len,):
            raise ValueError(f"positions must have shape ({seq_len},), got positions.shape={tuple(positions.shape)}")
        two_i = torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=x.device)  # (Dh/2,)
        theta = self.base ** (-two_i / self.head_dim)  # (Dh/2,)
        angles = torch.outer(positions.to(torch.float64), theta)  # (T, Dh/2), exact enough at 1e5
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # (T, Dh/2) each
        if self.interleaved:
            pairs = rearrange(x, "... t (half two) -> ... t half two", two=2)  # (..., T, Dh/2, 2)
            a, b = pairs[..., 0], pairs[..., 1]  # (..., T, Dh/2) each
        else:
            a, b = x[..., : self.head_dim // 2], x[..., self.head_dim // 2:]  # (..., T, Dh/2) each
        rotated_a = a * cos - b * sin  # (..., T, Dh/2)
        rotated_b = a * sin + b * cos  # (..., T, Dh/2)
        if self.interleaved:
            return rearrange(torch.stack([rotated_a, rotated_b], dim=-1), "... t half two -> ... t (half two)")
        return torch.cat([rotated_a, rotated_b], dim=-1)  # (..., T, Dh)
        ### END SOLUTION


def alibi_slopes(num_heads: int) -> Tensor:
    """The per-head slopes of ALiBi ("Train Short, Test Long", Press et al., 2022).

    For ``n`` heads, ``n`` a power of two, the slopes form a geometric sequence that starts
    at ``2 ** (-8 / n)`` and has that same ratio: for 8 heads, ``1/2, 1/4, ..., 1/256``.

    For other head counts, take the ``n`` slopes of the largest power of two ``n`` below
    ``num_heads``, then add the remaining ``num_heads - n`` from the sequence for ``2n``
    heads, taking every other one of those (its 1st, 3rd, 5th, ...).

    Returns:
        A float32 tensor ``(num_heads,)`` in that order: for a power of two, largest slope
        first; otherwise the ``n`` slopes, then the extra ones (6 heads: 1/4, 1/16, 1/64,
        1/256, 1/2, 1/8).

    Raises:
        ValueError: if ``num_heads < 1``.

    Example:
        >>> alibi_slopes(4)
        tensor([0.2500, 0.0625, 0.0156, 0.0039])
    """
    ### BEGIN SOLUTION
    # hint: slopes for a power of two n are start ** (1..n) with start = 2 ** (-8/n); fill the rest from 2n's, every other
    if num_heads < 1:
        raise ValueError(f"num_heads must be at least 1, got num_heads={num_heads}")

    def powers_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (k + 1) for k in range(n)]

    n = 2 ** math.floor(math.log2(num_heads))  # the largest power of two <= num_heads
    slopes = powers_of_two(n) + powers_of_two(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes, dtype=torch.float64).float()  # (H,)
    ### END SOLUTION


def alibi_bias(num_heads: int, q_len: int, k_len: int | None = None) -> Tensor:
    """ALiBi's additive attention bias: ``bias[h, i, j] = -slope_h * |pos_i - j|``.

    Query ``i`` sits at absolute position ``pos_i = k_len - q_len + i`` (the same rule as
    ``causal_mask`` in chapter 02), so with a cache holding ``k_len - q_len`` earlier
    positions the new queries are placed after them. Pass the result as ``bias=`` to chapter
    02's attention: it is added to the scores after the ``1/sqrt(Dk)`` scaling and broadcasts
    over the batch.

    Args:
        num_heads: number of heads (one slope each, from ``alibi_slopes``).
        q_len: number of queries.
        k_len: number of keys (default ``q_len``); at least ``q_len``.

    Returns:
        A float32 tensor ``(num_heads, q_len, k_len)``: 0 where ``j == pos_i``, more negative
        with distance in either direction.

    Raises:
        ValueError: if ``q_len > k_len``.

    Example:
        >>> alibi_bias(1, 3)
        tensor([[[-0.0000, -0.0039, -0.0078],
                 [-0.0039, -0.0000, -0.0039],
                 [-0.0078, -0.0039, -0.0000]]])
    """
    ### BEGIN SOLUTION
    # hint: distance |pos_i - j| as a (q_len, k_len) grid, times -slopes (H, 1, 1)
    k_len = q_len if k_len is None else k_len
    if q_len > k_len:
        raise ValueError(f"q_len must not exceed k_len, got q_len={q_len}, k_len={k_len}")
    query_pos = torch.arange(k_len - q_len, k_len)[:, None]  # (T, 1) absolute positions of the queries
    key_pos = torch.arange(k_len)[None, :]  # (1, S)
    distance = (query_pos - key_pos).abs().float()  # (T, S)
    return -alibi_slopes(num_heads)[:, None, None] * distance  # (H, T, S)
    ### END SOLUTION
