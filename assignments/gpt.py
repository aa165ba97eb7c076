# Generated from reference_solutions/gpt.py by `nox -s stubs`; fill in every NotImplementedError.
"""Chapter 07, the capstone: a GPT assembled from your own chapter 02-06 modules.

Everything the model computes comes from code you wrote earlier in the course: attention and
its key/value cache (chapter 02), positions (03), the feed-forward network (04), the norms (05)
and the loss (06). This module only wires them into a decoder-only language model in the
style of nanoGPT and Llama, initializes it, and samples text from it, one token at a time,
through the cache.

    idx (B, T) -> embedding (+ positions) -> n_layer x Block -> norm -> lm_head -> logits (B, T, V)

    Block(x) = x + attn(attn_norm(x)),  then  x + ffn(ffn_norm(x))        (pre-norm residuals)

Notation used in the shape comments:
    B   batch size
    T   sequence length of this call, S the keys it attends to (cached ones included)
    L   positions already in the cache (the new tokens sit at L, L + 1, ...)
    D   d_model, V vocab_size, F the feed-forward width d_ff
    H   query heads, Hkv key/value heads, R = H // Hkv, Dh head dim (D // H)

Conventions (the course contract):
    * batch first; every boolean mask means True = may attend;
    * parameter names are fixed (see `GPT`), so a `state_dict` moves between the reference and
      your model unchanged;
    * bad arguments raise ValueError naming the argument and its value.

Your chapter modules are imported by their file names (`multi_head_attention.py`, ...), so keep
them beside this file. `F.scaled_dot_product_attention` is allowed here, for the fused path only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from feedforward import FeedForward, SwiGLU
from multi_head_attention import KVCache, MultiHeadAttention, causal_mask
from normalization import LayerNorm, RMSNorm
from positional_encoding import LearnedPositionalEmbedding, RotaryEmbedding, alibi_bias, sinusoidal_encoding
from training_loop import cross_entropy

POSITIONS = ("rope", "learned", "sinusoidal", "alibi")
NORMS = ("rmsnorm", "layernorm")
FFNS = ("swiglu", "gelu")
SWIGLU_MULTIPLE_OF = 64  # the default SwiGLU width is rounded up to this (Llama uses 256 at its sizes)


@dataclass(kw_only=True)
class GPTConfig:
    """Every hyperparameter of a `GPT`, in one place (as Llama's `ModelArgs`); keyword arguments only.

    Fields:
        vocab_size: number of token ids V.
        block_size: the context length: the longest sequence `forward` accepts, and the window
            `generate` keeps.
        n_layer: number of blocks.
        n_head: query heads H; must divide ``d_model``.
        n_kv_head: key/value heads (grouped-query attention); default ``n_head``; must divide
            ``n_head``.
        d_model: model width D.
        d_ff: feed-forward width; default: Llama's rule ``swiglu_hidden_dim(d_model,
            multiple_of=64)`` for ``ffn="swiglu"``, ``4 * d_model`` for ``ffn="gelu"``.
        dropout: dropout probability on the embeddings, the attention weights, each sublayer's
            output; active only in training mode. In ``[0, 1)``.
        pos: ``"rope"`` (rotary, in every attention layer), ``"learned"`` (GPT-2's table),
            ``"sinusoidal"`` (the 2017 table, not learned) or ``"alibi"`` (a bias on the scores).
        norm: ``"rmsnorm"`` or ``"layernorm"``.
        ffn: ``"swiglu"`` (Llama's gated FFN) or ``"gelu"`` (GPT-2's two-layer FFN with GELU).
        tie_embeddings: the output layer reuses the token embedding's weight (one Parameter).
        bias: biases in every Linear layer and in LayerNorm (GPT-2: True; Llama: False).
        fused_attention: run attention through ``F.scaled_dot_product_attention`` (flash
            kernels on a GPU) with the same weights; the outputs equal the unfused path's.

    Raises:
        ValueError: naming the field and its value: a size that is not positive, ``d_model`` not
            divisible by ``n_head``, ``n_kv_head`` not dividing ``n_head``, an odd head dim with
            rope (or an odd ``d_model`` with sinusoidal positions), ``dropout`` outside
            ``[0, 1)``, or an unknown ``pos``, ``norm`` or ``ffn``.

    Example:
        >>> GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, d_model=64).head_dim
        16
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_kv_head: int | None = None  # None: as many as n_head (plain multi-head attention)
    d_model: int
    d_ff: int | None = None  # None: chosen by `ffn` (see above)
    dropout: float = 0.0
    pos: str = "rope"
    norm: str = "rmsnorm"
    ffn: str = "swiglu"
    tie_embeddings: bool = True
    bias: bool = False
    fused_attention: bool = False

    def __post_init__(self) -> None:
        # YOUR CODE HERE
        raise NotImplementedError('GPTConfig.__post_init__: check every size is positive, the head counts divide, pos/norm/ffn are known; ValueError names the field')

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads actually used (``n_kv_head``, or ``n_head`` when it is None)."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head


def build_norm(config: GPTConfig) -> nn.Module:
    """The norm `config.norm` names, over ``d_model``: your `RMSNorm(d_model)` or
    `LayerNorm(d_model, bias=config.bias)` (default eps)."""
    # YOUR CODE HERE
    raise NotImplementedError('build_norm: RMSNorm(d_model) or LayerNorm(d_model, bias=config.bias), from your normalization.py')


def build_ffn(config: GPTConfig) -> nn.Module:
    """The feed-forward network `config.ffn` names: your `SwiGLU(d_model, d_ff,
    multiple_of=64, bias, dropout)` (submodules ``w1`` gate, ``w3`` up, ``w2`` down) or your
    `FeedForward(d_model, d_ff, activation="gelu", dropout, bias)` (``fc1``, ``fc2``)."""
    # YOUR CODE HERE
    raise NotImplementedError('build_ffn: SwiGLU or FeedForward from your feedforward.py, passing d_ff (None picks the default), bias and dropout')


def fused_attention(attn: MultiHeadAttention, x: Tensor, config: GPTConfig, *, bias: Tensor | None = None,
                    rope: nn.Module | None = None, kv_cache: KVCache | None = None) -> Tensor:
    """Causal self-attention with ``attn``'s own weights, through ``F.scaled_dot_product_attention``.

    The same computation as ``attn(x, mask=causal_mask(T, S), bias=bias, rope=rope,
    kv_cache=kv_cache)[0]``, but the softmax(QK^T)V part runs in PyTorch's fused kernel (flash
    attention on a GPU, which never stores the (T, S) scores):

    1. project with ``attn.q_proj``, ``attn.k_proj``, ``attn.v_proj`` and split the heads:
       q ``(B, H, T, Dh)``, k and v ``(B, Hkv, T, Dh)`` (head counts from ``config``);
    2. with ``rope``, rotate q and k at their absolute positions ``L .. L+T-1``, where ``L`` is
       ``kv_cache.length`` (0 without a cache);
    3. with a cache, append k and v with ``kv_cache.update`` (S = L + T keys from then on);
    4. repeat each key/value head R = H // Hkv times (query head h reads kv head h // R);
    5. attend: ``is_causal=True`` when there is neither a cache nor a bias; otherwise pass the
       mask explicitly as ``attn_mask``, because ``is_causal`` aligns its triangle to the top
       left and a cached query i sits at position L + i: a boolean ``causal_mask(T, S)``, or,
       with ALiBi's float ``bias`` (H, T, S), the bias with ``-inf`` where the mask is False;
    6. merge the heads and apply ``attn.out_proj``.

    Dropout on the attention weights (``config.dropout``) applies in training mode only.

    Shapes:
        ``x`` ``(B, T, D)`` -> ``(B, T, D)``.
    """
    # YOUR CODE HERE
    raise NotImplementedError('fused_attention: q/k/v projections and heads, rope at positions L.., kv_cache.update, repeat_interleave kv heads, SDPA, out_proj')


class Block(nn.Module):
    """One pre-norm transformer block: ``x + attn(attn_norm(x))``, then ``x + ffn(ffn_norm(x))``.

    Submodules (their names are ``state_dict`` keys):
        attn_norm: the norm before attention (`build_norm`)
        attn:      your `MultiHeadAttention(d_model, n_head, n_kv_head, dropout, bias)`
        ffn_norm:  the norm before the feed-forward network
        ffn:       your `SwiGLU` or `FeedForward` (`build_ffn`)

    The residual stream itself never passes through a norm (that is what makes deep pre-norm
    stacks train without warm-up tricks). Attention's output goes through dropout before it is
    added (the FFN applies its own).

    Shapes:
        ``forward(x, mask=None, bias=None, rope=None, kv_cache=None)``: ``x`` ``(B, T, D)`` ->
        ``(B, T, D)``. ``mask`` is the boolean causal mask ``(T, S)``, ``bias`` ALiBi's
        ``(H, T, S)`` or None, ``rope`` the shared `RotaryEmbedding` or None, ``kv_cache`` this
        block's `KVCache` or None; with ``config.fused_attention`` attention runs through
        `fused_attention` (which builds its own mask) instead of ``attn.forward``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError('Block.__init__: attn_norm, attn (MultiHeadAttention with n_kv_head, dropout, bias), ffn_norm, ffn, a Dropout; keep config')

    def forward(self, x: Tensor, mask: Tensor | None = None, bias: Tensor | None = None,
                rope: nn.Module | None = None, kv_cache: KVCache | None = None) -> Tensor:
        # YOUR CODE HERE
        raise NotImplementedError('Block.forward: x = x + dropout(attention of attn_norm(x)) (fused or attn.forward); x = x + ffn(ffn_norm(x))')


def sample_next_token(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
    """Pick the next token from the last position's logits.

    ``temperature == 0`` is greedy: the argmax. Otherwise divide the logits by ``temperature``
    (below 1 sharpens, above 1 flattens), keep only the ``top_k`` largest (the others get
    ``-inf``) when ``top_k`` is given, softmax, and draw one token with
    ``torch.multinomial(probs, 1, generator=generator)``: all randomness comes from
    ``generator``, so the same generator state gives the same tokens.

    Shapes:
        ``logits`` ``(B, V)`` -> ``(B, 1)`` long.

    Raises:
        ValueError: a negative ``temperature``, or ``top_k < 1``.

    Example:
        >>> sample_next_token(torch.tensor([[0.0, 3.0, 1.0]]), temperature=0)
        tensor([[1]])
    """
    # YOUR CODE HERE
    raise NotImplementedError('sample_next_token: argmax when temperature == 0; else logits / temperature, mask below the k-th largest with -inf, softmax, multinomial')


class GPT(nn.Module):
    """A decoder-only transformer language model, built from your chapter 02-05 modules.

    Submodules and parameters (their names are ``state_dict`` keys):
        embedding:  ``nn.Embedding(vocab_size, d_model)``, the token embedding
        positions:  your `LearnedPositionalEmbedding(block_size, d_model)`, only for
                    ``pos="learned"``; ``pos="sinusoidal"`` adds ``sinusoidal_encoding(block_size,
                    d_model)`` kept as a non-persistent buffer (not in the ``state_dict``);
                    ``pos="rope"`` shares one ``rope = RotaryEmbedding(head_dim)`` across all
                    blocks; ``pos="alibi"`` computes ``alibi_bias`` per call (nothing stored)
        blocks:     ``nn.ModuleList`` of ``n_layer`` `Block`
        norm:       the final norm, after the last block
        lm_head:    ``nn.Linear(d_model, vocab_size, bias=False)``; with ``tie_embeddings`` its
                    ``weight`` IS ``embedding.weight`` (one Parameter under two names)

    Initialization (nanoGPT, GPT-2): every Linear and Embedding weight ~ N(0, 0.02), every bias
    0, norms at their defaults (weight 1, bias 0); and the two projections that write into the
    residual stream in each block, ``attn.out_proj.weight`` and the FFN's down projection
    (``ffn.w2.weight`` or ``ffn.fc2.weight``), ~ N(0, 0.02 / sqrt(2 * n_layer)): the stream
    receives 2 * n_layer such additions, so this keeps its variance from growing with depth.
    With these weights the initial loss is close to ln(vocab_size), a uniform guess.

    Methods:
        ``forward(idx, targets=None, kv_caches=None) -> (logits, loss)``
        ``generate(idx, max_new_tokens, temperature=1.0, top_k=None, generator=None) -> idx``
        ``num_parameters(non_embedding=True)``, ``flops_per_token()``

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, d_model=64))
        >>> logits, loss = model(torch.arange(8)[None], torch.arange(1, 9)[None])  # (1, 8) each
        >>> tuple(logits.shape), round(loss.item(), 1)  # about ln(65) = 4.17 before training
        ((1, 8, 65), 4.2)
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError('GPT.__init__: embedding, the position module/buffer `config.pos` needs, blocks, norm, lm_head (tied?), then init_weights()')

    def init_weights(self) -> None:
        """nanoGPT's initialization (see the class docstring), in place."""
        # YOUR CODE HERE
        raise NotImplementedError('GPT.init_weights: normal_(0, 0.02) every Linear/Embedding weight, zero biases; out_proj and w2/fc2 with std 0.02 / sqrt(2 * n_layer)')

    def forward(self, idx: Tensor, targets: Tensor | None = None,
                kv_caches: list[KVCache] | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits for every position, and the loss when ``targets`` are given.

        Args:
            idx: token ids ``(B, T)``, long.
            targets: ``(B, T)`` long, the next token at each position (``-100`` is ignored);
                the loss is your chapter 06 ``cross_entropy`` over all ``B * T`` positions.
            kv_caches: one `KVCache` per block, for decoding: ``idx`` then holds the new tokens
                only, which sit at positions ``L .. L+T-1`` with ``L = kv_caches[0].length``, and
                attend to the cached ones too. None: a plain forward from position 0.

        Returns:
            ``(logits, loss)``: logits ``(B, T, V)`` in the model's dtype; loss a scalar, or
            None without targets.

        Raises:
            ValueError: if ``L + T > block_size`` (the position table, and the context the model
                was trained on, end there).
        """
        # YOUR CODE HERE
        raise NotImplementedError('GPT.forward: embed, add positions L..L+T-1 (or build the rope/alibi inputs), causal mask (T, L+T), blocks, norm, lm_head, loss')

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Extend ``idx`` by ``max_new_tokens`` tokens, sampled one at a time through KV caches.

        1. Prefill: one `KVCache` per block; run the last ``block_size`` tokens of ``idx``
           through the model with the caches.
        2. Each step: `sample_next_token` from the last position's logits (``temperature``,
           ``top_k``, ``generator``), append it, then run only that token through the caches
           (it sits at position ``L``, after the ``L`` cached ones).
        3. Once the sequence would exceed ``block_size`` tokens, the cache cannot grow: crop
           to the last ``block_size`` tokens and recompute their logits with a plain forward
           (positions restart at 0, exactly as a model that only ever sees its last
           ``block_size`` tokens), for this and every later step (nanoGPT's crop).

        The tokens equal those of recomputing ``forward(idx[:, -block_size:])`` from scratch
        at every step; the cache only saves the work. Call ``model.eval()`` first (dropout).

        Args:
            idx: ``(B, T0)`` long, ``T0 >= 1`` (it may be longer than ``block_size``).
            max_new_tokens: how many tokens to add (0 returns ``idx``).
            temperature, top_k, generator: as in `sample_next_token`.

        Returns:
            ``(B, T0 + max_new_tokens)`` long: ``idx`` followed by the new tokens.
        """
        # YOUR CODE HERE
        raise NotImplementedError('GPT.generate: caches = [KVCache() per block]; prefill idx[:, -block_size:]; loop: sample, append, feed one token (or crop and recompute)')

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Number of parameters, each tensor once (a tied weight counts once).

        With ``non_embedding`` (the convention of Kaplan et al. and nanoGPT), leave out the
        learned position table, and the token embedding unless it is tied: a tied embedding
        is also the output layer, whose matrix multiply is real compute.
        """
        # YOUR CODE HERE
        raise NotImplementedError('GPT.num_parameters: sum numel over self.parameters() (unique tensors); subtract positions and an untied embedding')

    def flops_per_token(self) -> int:
        """Training FLOPs per token: ``6 N + 12 * n_layer * d_model * block_size``.

        The estimate of the PaLM paper (appendix B), as nanoGPT's ``estimate_mfu`` uses it:
        ``N = num_parameters(non_embedding=True)``; each parameter costs 2 FLOPs per token in
        the forward pass (a multiply and an add) and 4 in the backward, hence 6N; attention's
        QK^T and weights @ V add ``2 * 2 * d_model * block_size`` per layer forward, times 3
        with the backward. Divide a GPU's measured FLOP/s by this to get the model FLOPs
        utilization (MFU).
        """
        # YOUR CODE HERE
        raise NotImplementedError('GPT.flops_per_token: 6 * num_parameters() + 12 * n_layer * d_model * block_size')
