"""Chapter 01: the transformer of "Attention Is All You Need", wired from torch.nn blocks.

You build the architecture before rebuilding its parts: attention, norms and linears come
from ``torch.nn`` here (chapters 02-05 write them from scratch). Three shapes of model share
the same layers:

    * ``Transformer``: encoder-decoder (Vaswani et al., 2017; T5), e.g. translation;
    * ``EncoderOnly``: a bidirectional encoder (BERT), hidden states for every token;
    * ``DecoderOnly``: a causal stack (GPT), next-token logits for every position.

Each layer reads and writes the *residual stream* ``x`` of shape ``(B, T, D)``: a sublayer
(attention or the feed-forward network) computes an update, which is added back to ``x``.
Post-norm (the 2017 paper, the default) normalizes after each addition:
``x = norm(x + sublayer(x))``. Pre-norm (``norm_first=True``, GPT-2 onwards) normalizes the
sublayer's input and leaves the stream itself untouched: ``x = x + sublayer(norm(x))``, with
one final norm after the last layer.

Notation used in the shape comments:
    B   batch size
    S   source length (encoder input);  T  target length (decoder input)
    D   d_model;  F  d_ff, the feed-forward width;  V  vocabulary size

Conventions (the course contract):
    * batch first: activations are ``(B, T, D)``;
    * padding masks are named ``attention_mask``, shape ``(B, T)``, True (or 1) for real
      tokens and False for padding; pad at the end of a sequence (its first token is real);
      ``nn.MultiheadAttention`` wants the opposite (True = ignore), so convert;
    * bad arguments raise ValueError naming the argument and its value.

``nn.Transformer``, ``nn.TransformerEncoder(Layer)`` and ``nn.TransformerDecoder(Layer)`` are
off limits in this chapter: the grader scans your file for them.

Quick Start (from ``reference_solutions/``, or from ``assignments/`` once yours works)::

    >>> import torch
    >>> from transformer_full import Transformer
    >>> model = Transformer(vocab_size=100, d_model=32, num_heads=4, num_layers=2, d_ff=64)
    >>> src, tgt = torch.randint(0, 100, (2, 7)), torch.randint(0, 100, (2, 5))
    >>> model(src, tgt).shape
    torch.Size([2, 5, 100])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_positions(max_len: int, d_model: int) -> Tensor:
    """The fixed position table of the 2017 paper: ``(max_len, d_model)``, float32.

    Column pairs hold one frequency each::

        PE[p, 2i]   = sin(p / 10000 ** (2i / d_model))
        PE[p, 2i+1] = cos(p / 10000 ** (2i / d_model))

    Compute the angles in float64: at position 500, float32 angles are already off by about
    3e-5.

    Raises:
        ValueError: if ``d_model`` is odd or not positive.

    Example:
        >>> sinusoidal_positions(2, 4)
        tensor([[0.0000, 1.0000, 0.0000, 1.0000],
                [0.8415, 0.5403, 0.0100, 0.9999]])
    """
    ### BEGIN SOLUTION
    # hint: float64 angles p * 10000 ** (-2i / d_model); sin into columns 0::2, cos into 1::2
    if d_model <= 0 or d_model % 2:
        raise ValueError(f"d_model must be a positive even number for sinusoidal positions, got d_model={d_model}")
    position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))  # (D/2,)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)  # (P, D)
    table[:, 0::2] = torch.sin(position * frequency)  # (P, D/2) into the even columns
    table[:, 1::2] = torch.cos(position * frequency)  # (P, D/2) into the odd columns
    return table.float()
    ### END SOLUTION


def padding_to_ignore(attention_mask: Tensor | None) -> Tensor | None:
    """The course's padding mask (True = real token) as ``nn.MultiheadAttention``'s
    ``key_padding_mask`` (True = ignore this key); ``None`` stays ``None``.

    Example:
        >>> padding_to_ignore(torch.tensor([[1, 1, 0]]))
        tensor([[False, False,  True]])
    """
    ### BEGIN SOLUTION
    # hint: None stays None; otherwise the logical not of the mask as bool
    return None if attention_mask is None else ~attention_mask.bool()  # (B, T)
    ### END SOLUTION


def future_mask(length: int, device: torch.device | None = None) -> Tensor:
    """The causal mask in ``nn.MultiheadAttention``'s ``attn_mask`` convention: a bool
    ``(length, length)`` tensor, True where query ``i`` may NOT attend to key ``j`` (``j > i``).

    Example:
        >>> future_mask(3)
        tensor([[False,  True,  True],
                [False, False,  True],
                [False, False, False]])
    """
    ### BEGIN SOLUTION
    # hint: ones (length, length) of bool, strictly above the diagonal (triu with diagonal=1)
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)  # (T, T)
    ### END SOLUTION


def check_heads(d_model: int, num_heads: int) -> None:
    """Raise ValueError unless ``d_model`` splits evenly into ``num_heads`` heads."""
    ### BEGIN SOLUTION
    # hint: ValueError naming both values when num_heads < 1 or d_model % num_heads != 0
    if num_heads < 1 or d_model % num_heads:
        raise ValueError(f"d_model must be divisible by num_heads, got d_model={d_model}, num_heads={num_heads}")
    ### END SOLUTION


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention, then a position-wise feed-forward network, each in
    a residual connection with a LayerNorm.

    * post-norm (``norm_first=False``, the paper): ``x = norm1(x + drop(attn(x)))``, then
      ``x = norm2(x + drop(ffn(x)))``;
    * pre-norm (``norm_first=True``): ``x = x + drop(attn(norm1(x)))``, then
      ``x = x + drop(ffn(norm2(x)))``.

    ``ffn(x) = linear2(drop(relu(linear1(x))))``.

    Submodules (their names are the ``state_dict``'s keys): ``self_attn``
    (``nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)``),
    ``linear1`` (D -> F), ``linear2`` (F -> D), ``norm1``, ``norm2`` (``nn.LayerNorm(D)``).
    Dropout layers have no parameters: name them as you like.

    ``forward(x, attention_mask=None, is_causal=False)``: ``x`` is ``(B, T, D)``;
    ``attention_mask`` ``(B, T)`` marks the real tokens among the keys; ``is_causal=True``
    lets position ``i`` attend only to positions ``<= i`` (``DecoderOnly`` uses this layer
    so). Returns ``(B, T, D)``.

    Raises:
        ValueError: if ``d_model`` is not divisible by ``num_heads``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: check_heads; self_attn, linear1, linear2, norm1, norm2 as the docstring names them; a dropout; keep norm_first
        check_heads(d_model, num_heads)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first
        ### END SOLUTION

    def forward(self, x: Tensor, attention_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        ### BEGIN SOLUTION
        # hint: key_padding_mask from padding_to_ignore, attn_mask from future_mask when causal; wire the two sublayers per norm_first
        ignore = padding_to_ignore(attention_mask)  # (B, T) or None
        blocked = future_mask(x.shape[1], x.device) if is_causal else None  # (T, T) or None
        if self.norm_first:
            x = x + self.self_attention_block(self.norm1(x), ignore, blocked)  # (B, T, D)
            return x + self.feed_forward_block(self.norm2(x))  # (B, T, D)
        x = self.norm1(x + self.self_attention_block(x, ignore, blocked))  # (B, T, D)
        return self.norm2(x + self.feed_forward_block(x))  # (B, T, D)
        ### END SOLUTION

    def self_attention_block(self, h: Tensor, ignore: Tensor | None, blocked: Tensor | None) -> Tensor:
        """``drop(self_attn(h, h, h))`` with nn.MultiheadAttention's masks (True = ignore / may
        not attend); ``(B, T, D)`` -> ``(B, T, D)``, the update added to the stream."""
        ### BEGIN SOLUTION
        # hint: self_attn(h, h, h, key_padding_mask=..., attn_mask=..., need_weights=False) returns (out, None)
        out, _ = self.self_attn(h, h, h, key_padding_mask=ignore, attn_mask=blocked, need_weights=False)  # (B, T, D)
        return self.dropout(out)
        ### END SOLUTION

    def feed_forward_block(self, h: Tensor) -> Tensor:
        """``drop(linear2(drop(relu(linear1(h)))))``: ``(B, T, D)`` -> ``(B, T, F)`` -> ``(B, T, D)``."""
        ### BEGIN SOLUTION
        # hint: linear1, relu, dropout, linear2, dropout
        hidden = self.dropout(torch.relu(self.linear1(h)))  # (B, T, F)
        return self.dropout(self.linear2(hidden))  # (B, T, D)
        ### END SOLUTION


class DecoderLayer(nn.Module):
    """One decoder layer: causal self-attention, cross-attention to the encoder's output
    (``memory``), then the feed-forward network; each in a residual connection with a norm.

    * post-norm: ``x = norm1(x + drop(self_attn(x)))``; ``x = norm2(x + drop(cross_attn(x, memory)))``;
      ``x = norm3(x + drop(ffn(x)))``;
    * pre-norm: ``x = x + drop(self_attn(norm1(x)))``; ``x = x + drop(cross_attn(norm2(x), memory))``;
      ``x = x + drop(ffn(norm3(x)))``.

    In cross-attention the queries come from the decoder and the keys and values from
    ``memory`` (never normalized by this layer: the encoder's output is final).

    Submodules: ``self_attn`` and ``cross_attn`` (``nn.MultiheadAttention``, ``batch_first=True``),
    ``linear1``, ``linear2``, ``norm1``, ``norm2``, ``norm3``.

    ``forward(x, memory, attention_mask=None, memory_attention_mask=None)``: ``x`` is
    ``(B, T, D)``, ``memory`` ``(B, S, D)``; ``attention_mask`` ``(B, T)`` marks the decoder's
    real tokens, ``memory_attention_mask`` ``(B, S)`` the encoder's. Returns ``(B, T, D)``.

    Raises:
        ValueError: if ``d_model`` is not divisible by ``num_heads``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: as EncoderLayer, plus cross_attn and norm3
        check_heads(d_model, num_heads)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first
        ### END SOLUTION

    def forward(self, x: Tensor, memory: Tensor, attention_mask: Tensor | None = None,
                memory_attention_mask: Tensor | None = None) -> Tensor:
        ### BEGIN SOLUTION
        # hint: self-attention under future_mask with the decoder's padding; cross-attention reads memory with its padding
        ignore = padding_to_ignore(attention_mask)  # (B, T) or None
        memory_ignore = padding_to_ignore(memory_attention_mask)  # (B, S) or None
        blocked = future_mask(x.shape[1], x.device)  # (T, T)
        if self.norm_first:
            x = x + self.self_attention_block(self.norm1(x), ignore, blocked)  # (B, T, D)
            x = x + self.cross_attention_block(self.norm2(x), memory, memory_ignore)  # (B, T, D)
            return x + self.feed_forward_block(self.norm3(x))  # (B, T, D)
        x = self.norm1(x + self.self_attention_block(x, ignore, blocked))  # (B, T, D)
        x = self.norm2(x + self.cross_attention_block(x, memory, memory_ignore))  # (B, T, D)
        return self.norm3(x + self.feed_forward_block(x))  # (B, T, D)
        ### END SOLUTION

    def self_attention_block(self, h: Tensor, ignore: Tensor | None, blocked: Tensor) -> Tensor:
        """As ``EncoderLayer.self_attention_block``: ``(B, T, D)`` -> ``(B, T, D)``."""
        ### BEGIN SOLUTION
        # hint: as in EncoderLayer
        attended, _ = self.self_attn(h, h, h, key_padding_mask=ignore, attn_mask=blocked, need_weights=False)  # (B, T, D)
        return self.dropout(attended)
        ### END SOLUTION

    def cross_attention_block(self, h: Tensor, memory: Tensor, memory_ignore: Tensor | None) -> Tensor:
        """``drop(cross_attn(h, memory, memory))``: queries ``(B, T, D)`` from the decoder, keys and
        values ``(B, S, D)`` from the encoder; returns ``(B, T, D)``."""
        ### BEGIN SOLUTION
        # hint: cross_attn(query=h, key=memory, value=memory, key_padding_mask=the memory's)
        out, _ = self.cross_attn(h, memory, memory, key_padding_mask=memory_ignore, need_weights=False)  # (B, T, D)
        return self.dropout(out)
        ### END SOLUTION

    def feed_forward_block(self, h: Tensor) -> Tensor:
        """As ``EncoderLayer.feed_forward_block``."""
        ### BEGIN SOLUTION
        # hint: as in EncoderLayer
        widened = self.dropout(torch.relu(self.linear1(h)))  # (B, T, F)
        return self.dropout(self.linear2(widened))  # (B, T, D)
        ### END SOLUTION


class TokenModel(nn.Module):
    """What the three models share: tokens in, a residual stream, tied logits out.

    ``embed(tokens)``: ``embedding(tokens) * sqrt(d_model)`` plus the sinusoidal position of
    each column, then dropout; ``(B, T)`` integers -> ``(B, T, D)``. The scale brings the
    embedding, whose entries are about ``1/sqrt(D)`` (the initialization here), to the
    positions' scale, about 1. ``logits(h)``: the output layer reuses ``embedding.weight``
    (tied, no bias): ``h @ embedding.weight.T``, ``(B, T, D)`` -> ``(B, T, V)``.

    Submodules: ``embedding`` (``nn.Embedding(vocab_size, d_model)``, initialized
    ``normal(0, 1/sqrt(D))``). The position table is not a parameter and not in the
    ``state_dict``: a buffer registered with ``persistent=False`` (or computed on the fly).

    Raises:
        ValueError: an odd ``d_model``; ``embed`` on more than ``max_seq_len`` positions.
    """

    def __init__(self, vocab_size: int, d_model: int, max_seq_len: int, dropout: float) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: nn.Embedding with weights normal(0, d_model ** -0.5); sinusoidal_positions as a non-persistent buffer; a dropout
        self.embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)
        self.register_buffer("positions", sinusoidal_positions(max_seq_len, d_model), persistent=False)  # (P, D)
        self.embedding_dropout = nn.Dropout(dropout)
        self.d_model = d_model
        self.max_seq_len = max_seq_len
        ### END SOLUTION

    def embed(self, tokens: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: ValueError past max_seq_len; embedding * sqrt(d_model) + positions[:T], then dropout
        length = tokens.shape[1]
        if length > self.max_seq_len:
            raise ValueError(f"sequence length {length} exceeds max_seq_len={self.max_seq_len}")
        scaled = self.embedding(tokens) * math.sqrt(self.d_model)  # (B, T, D)
        return self.embedding_dropout(scaled + self.positions[:length])  # (B, T, D)
        ### END SOLUTION

    def logits(self, h: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: the tied output layer: h times the embedding matrix transposed (no bias)
        return h @ self.embedding.weight.T  # (B, T, V)
        ### END SOLUTION


class Transformer(TokenModel):
    """The encoder-decoder transformer of Vaswani et al. (2017).

    ``src`` runs through the encoder layers into ``memory``; ``tgt`` runs through the decoder
    layers (causal self-attention, cross-attention to ``memory``); the tied output layer turns
    the result into logits over the vocabulary. Source and target share one token embedding
    (a shared vocabulary, as in the paper's translation models).

    Submodules (the ``state_dict``'s keys): ``embedding`` (see ``TokenModel``),
    ``encoder_layers`` and ``decoder_layers`` (``nn.ModuleList`` of ``num_layers``
    ``EncoderLayer`` / ``DecoderLayer``), and, only when ``norm_first``, ``encoder_norm`` and
    ``decoder_norm`` (``nn.LayerNorm(D)`` after the last layer of each stack: pre-norm layers
    leave the stream unnormalized).

    ``forward(src, tgt, src_attention_mask=None, tgt_attention_mask=None)``: ``src`` ``(B, S)``,
    ``tgt`` ``(B, T)`` token ids; the masks ``(B, S)`` and ``(B, T)`` mark real tokens (the
    source mask also applies to cross-attention). Returns logits ``(B, T, V)``.

    ``encode(src, src_attention_mask=None)`` -> ``(B, S, D)`` and
    ``decode(tgt, memory, tgt_attention_mask=None, src_attention_mask=None)`` -> ``(B, T, D)``
    (before the output layer) are the two halves of ``forward``.

    Raises:
        ValueError: ``d_model`` not divisible by ``num_heads``, an odd ``d_model``, or a
        sequence longer than ``max_seq_len``.
    """

    def __init__(self, vocab_size: int, d_model: int = 512, num_heads: int = 8, num_layers: int = 6, d_ff: int = 2048,
                 max_seq_len: int = 512, dropout: float = 0.1, norm_first: bool = False) -> None:
        ### BEGIN SOLUTION
        # hint: check_heads; TokenModel.__init__; ModuleLists of EncoderLayer / DecoderLayer; the final norms only if norm_first
        check_heads(d_model, num_heads)
        super().__init__(vocab_size, d_model, max_seq_len, dropout)
        self.encoder_layers = nn.ModuleList(
            [EncoderLayer(d_model, num_heads, d_ff, dropout, norm_first) for _ in range(num_layers)])
        self.decoder_layers = nn.ModuleList(
            [DecoderLayer(d_model, num_heads, d_ff, dropout, norm_first) for _ in range(num_layers)])
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else None
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else None
        ### END SOLUTION

    def encode(self, src: Tensor, src_attention_mask: Tensor | None = None) -> Tensor:
        ### BEGIN SOLUTION
        # hint: embed, every encoder layer with the source mask, then encoder_norm if there is one
        x = self.embed(src)  # (B, S, D)
        for layer in self.encoder_layers:
            x = layer(x, src_attention_mask)  # (B, S, D)
        return x if self.encoder_norm is None else self.encoder_norm(x)
        ### END SOLUTION

    def decode(self, tgt: Tensor, memory: Tensor, tgt_attention_mask: Tensor | None = None,
               src_attention_mask: Tensor | None = None) -> Tensor:
        ### BEGIN SOLUTION
        # hint: embed, every decoder layer with memory and both masks, then decoder_norm if there is one
        x = self.embed(tgt)  # (B, T, D)
        for layer in self.decoder_layers:
            x = layer(x, memory, tgt_attention_mask, src_attention_mask)  # (B, T, D)
        return x if self.decoder_norm is None else self.decoder_norm(x)
        ### END SOLUTION

    def forward(self, src: Tensor, tgt: Tensor, src_attention_mask: Tensor | None = None,
                tgt_attention_mask: Tensor | None = None) -> Tensor:
        ### BEGIN SOLUTION
        # hint: encode, decode, then the tied logits
        memory = self.encode(src, src_attention_mask)  # (B, S, D)
        h = self.decode(tgt, memory, tgt_attention_mask, src_attention_mask)  # (B, T, D)
        return self.logits(h)  # (B, T, V)
        ### END SOLUTION


class EncoderOnly(TokenModel):
    """A BERT-style encoder: every token attends to every real token, in both directions.

    Same constructor as ``Transformer``. Submodules: ``embedding`` (see ``TokenModel``),
    ``layers`` (``nn.ModuleList`` of ``EncoderLayer``), ``norm`` (``nn.LayerNorm(D)``, only
    when ``norm_first``).

    ``forward(tokens, attention_mask=None)``: ``(B, T)`` -> hidden states ``(B, T, D)`` (a task
    head, such as BERT's masked-token classifier, goes on top).
    """

    def __init__(self, vocab_size: int, d_model: int = 512, num_heads: int = 8, num_layers: int = 6, d_ff: int = 2048,
                 max_seq_len: int = 512, dropout: float = 0.1, norm_first: bool = False) -> None:
        ### BEGIN SOLUTION
        # hint: check_heads; TokenModel.__init__; a ModuleList of EncoderLayer; norm only if norm_first
        check_heads(d_model, num_heads)
        super().__init__(vocab_size, d_model, max_seq_len, dropout)
        self.layers = nn.ModuleList([EncoderLayer(d_model, num_heads, d_ff, dropout, norm_first)
                                     for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model) if norm_first else None
        ### END SOLUTION

    def forward(self, tokens: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        ### BEGIN SOLUTION
        # hint: embed, every layer with the mask, then norm if there is one
        stream = self.embed(tokens)  # (B, T, D)
        for layer in self.layers:
            stream = layer(stream, attention_mask)  # (B, T, D)
        return stream if self.norm is None else self.norm(stream)
        ### END SOLUTION


class DecoderOnly(EncoderOnly):
    """A GPT-style language model: encoder-shaped layers (no cross-attention) under a causal
    mask, so the logits at position ``t`` depend only on tokens ``0..t``.

    Same constructor and submodules as ``EncoderOnly``; the output layer is tied to the
    embedding. ``forward(tokens, attention_mask=None)``: ``(B, T)`` -> logits ``(B, T, V)``.
    """

    def forward(self, tokens: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        ### BEGIN SOLUTION
        # hint: as EncoderOnly with is_causal=True in every layer, then the tied logits
        stream = self.embed(tokens)  # (B, T, D)
        for layer in self.layers:
            stream = layer(stream, attention_mask, is_causal=True)  # (B, T, D)
        stream = stream if self.norm is None else self.norm(stream)
        return self.logits(stream)  # (B, T, V)
        ### END SOLUTION


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model``, each tensor counted once (a tied weight is one
    tensor reached under two names).

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    ### BEGIN SOLUTION
    # hint: model.parameters() already visits each tensor once; sum their numel()
    return sum([p.numel() for p in model.parameters()])
    ### END SOLUTION


def transformer_parameter_count(vocab_size: int, d_model: int, num_layers: int, d_ff: int) -> int:
    """The closed form of ``count_parameters(Transformer(vocab_size, d_model, num_heads,
    num_layers, d_ff))`` with ``norm_first=False`` (pre-norm adds two final norms, 4 * D).

    Count per piece, with biases: an attention layer has its four D x D projections and
    their biases; a LayerNorm a weight and a bias of D each; the feed-forward network
    D x F + F + F x D + D; the embedding V x D, shared with the output layer. The number of
    heads does not appear: the heads split D, they do not add weights.

    Example:
        >>> transformer_parameter_count(10000, 512, 6, 2048)
        49258496
    """
    ### BEGIN SOLUTION
    # hint: V*D + L * (encoder layer + decoder layer); attention 4*D*D + 4*D, LayerNorm 2*D, FFN 2*D*F + F + D
    attention = 4 * d_model * d_model + 4 * d_model
    feed_forward = 2 * d_model * d_ff + d_ff + d_model
    layer_norm = 2 * d_model
    encoder_layer = attention + feed_forward + 2 * layer_norm
    decoder_layer = 2 * attention + feed_forward + 3 * layer_norm
    return vocab_size * d_model + num_layers * (encoder_layer + decoder_layer)
    ### END SOLUTION
