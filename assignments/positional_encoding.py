# Generated from reference_solutions/positional_encoding.py by `nox -s stubs`; fill in every NotImplementedError.
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
    # YOUR CODE HERE
    raise NotImplementedError('sinusoidal_encoding: angles = positions (column) * base ** (-2i / d_model) (row); sin into even columns, cos into odd')


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
        # YOUR CODE HERE
        raise NotImplementedError('SinusoidalPositionalEncoding.__init__: register sinusoidal_encoding(max_len, d_model) as a buffer with persistent=False; build nn.Dropout')

    def forward(self, x: Tensor) -> Tensor:
        # YOUR CODE HERE
        raise NotImplementedError("SinusoidalPositionalEncoding.forward: check T against max_len, add the first T rows (in x's dtype), apply dropout")


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
        # YOUR CODE HERE
        raise NotImplementedError('LearnedPositionalEmbedding.__init__: one nn.Embedding(max_len, d_model) named `embedding`')

    def forward(self, x: Tensor) -> Tensor:
        # YOUR CODE HERE
        raise NotImplementedError('LearnedPositionalEmbedding.forward: reject T > max_len with ValueError, then add embedding(arange(T)) to x')


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
        # YOUR CODE HERE
        raise NotImplementedError('RotaryEmbedding.__init__: check head_dim is even; keep head_dim, base and interleaved (no parameters)')

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        # YOUR CODE HERE
        raise NotImplementedError('RotaryEmbedding.forward: angles = positions (float64) x theta_i; take cos/sin; rotate each (a, b) pair as the docstring says')


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
    # YOUR CODE HERE
    raise NotImplementedError("alibi_slopes: slopes for a power of two n are start ** (1..n) with start = 2 ** (-8/n); fill the rest from 2n's, every other")


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
    # YOUR CODE HERE
    raise NotImplementedError('alibi_bias: distance |pos_i - j| as a (q_len, k_len) grid, times -slopes (H, 1, 1)')
