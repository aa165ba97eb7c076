"""Chapter 07 mutants: plausible student bugs in `gpt.py`.

Each mutant is a small text edit of `reference_solutions/gpt.py` that changes behaviour on
some valid input chapter 07's graders send. ``VALID_VARIANTS`` are correct solutions written
another way (kv heads repeated by expand, an explicit mask instead of ``is_causal``, top-k by
sorting, float64 sampling, the learned table through its own forward, fresh caches after the
crop): each must keep full marks.
"""

from __future__ import annotations

from . import Mutant

MUTANTS: list[Mutant] = [
    # --- the model ----------------------------------------------------------------------------
    Mutant(
        name="no_causal_mask",
        tasks=("GPT",),
        description="attention without the causal mask: every position sees the future",
        old="mask = causal_mask(t, start + t, device=idx.device)  # (T, S): query i sits at position L + i",
        new="mask = None",
    ),
    Mutant(
        name="post_norm",
        tasks=("GPT",),
        description="post-norm blocks (the 2017 paper's norm(x + sublayer(x))) instead of pre-norm",
        old="h = self.attn_norm(x)  # (B, T, D)",
        new="h = x  # (B, T, D)",
        also=(("        x = x + self.dropout(attended)  # (B, T, D)\n        return x + self.ffn(self.ffn_norm(x))  # (B, T, D)",
               "        x = self.attn_norm(x + self.dropout(attended))  # (B, T, D)\n"
               "        return self.ffn_norm(x + self.ffn(x))  # (B, T, D)"),),
    ),
    Mutant(
        name="no_ffn_residual",
        tasks=("GPT",),
        description="the feed-forward output replaces the stream instead of being added to it",
        old="return x + self.ffn(self.ffn_norm(x))  # (B, T, D)",
        new="return self.ffn(self.ffn_norm(x))  # (B, T, D)",
    ),
    Mutant(
        name="embeddings_not_tied",
        tasks=("GPT",),
        description="tie_embeddings ignored: lm_head keeps its own weight",
        old="self.lm_head.weight = self.embedding.weight  # one Parameter, two names",
        new="pass",
    ),
    Mutant(
        name="tied_by_copy",
        tasks=("GPT",),
        description="the embedding copied into lm_head once (two Parameters that drift apart) instead of shared",
        old="self.lm_head.weight = self.embedding.weight  # one Parameter, two names",
        new="self.lm_head.weight = nn.Parameter(self.embedding.weight.detach().clone())",
    ),
    Mutant(
        name="no_final_norm",
        tasks=("GPT",),
        description="the final norm is built but never applied",
        old="logits = self.lm_head(self.norm(x))  # (B, T, V)",
        new="logits = self.lm_head(x)  # (B, T, V)",
    ),
    Mutant(
        name="rope_never_passed",
        tasks=("GPT",),
        description="the shared RotaryEmbedding is built but not passed to the blocks (no positions at all)",
        old="x = block(x, mask=mask, bias=bias, rope=self.rope, kv_cache=cache)  # (B, T, D)",
        new="x = block(x, mask=mask, bias=bias, rope=None, kv_cache=cache)  # (B, T, D)",
    ),
    Mutant(
        name="loss_shifted_again",
        tasks=("GPT",),
        description="the loss shifts the already-shifted targets once more (Hugging Face's internal shift)",
        old="loss = cross_entropy(logits.reshape(b * t, -1), targets.reshape(b * t))  # ()",
        new="loss = cross_entropy(logits[:, :-1].reshape(b * (t - 1), -1), targets[:, 1:].reshape(b * (t - 1)))  # ()",
    ),
    Mutant(
        name="residual_init_scale_ignored",
        tasks=("GPT",),
        description="out_proj and the FFN's down projection keep std 0.02, without 1/sqrt(2 * n_layer)",
        old="residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)",
        new="residual_std = 0.02",
    ),
    Mutant(
        name="biases_not_zeroed",
        tasks=("GPT",),
        description="Linear biases keep nn.Linear's uniform initialization",
        old="                nn.init.zeros_(module.bias)\n",
        new="                pass\n",
    ),
    Mutant(
        name="tied_embedding_subtracted",
        tasks=("GPT",),
        description="num_parameters() drops the token embedding even when it is the (tied) output layer",
        old="if not self.config.tie_embeddings:",
        new="if True:",
    ),
    Mutant(
        name="flops_attention_term_halved",
        tasks=("GPT",),
        description="flops_per_token counts attention's forward only: 6 * n_layer * d_model * block_size",
        old="12 * c.n_layer * c.d_model * c.block_size",
        new="6 * c.n_layer * c.d_model * c.block_size",
    ),
    # --- generation ---------------------------------------------------------------------------
    Mutant(
        name="cache_positions_at_zero",
        tasks=("generate",),
        description="with a cache, the new token's learned/sinusoidal position restarts at 0",
        old="positions = torch.arange(start, start + t, device=idx.device)  # (T,)",
        new="positions = torch.arange(t, device=idx.device)  # (T,)",
        also=(("x = x + self.position_table[start:start + t].to(x.dtype)  # (B, T, D)",
               "x = x + self.position_table[:t].to(x.dtype)  # (B, T, D)"),),
    ),
    Mutant(
        name="crop_missing",
        tasks=("generate",),
        description="after the window is full the whole sequence is recomputed, past block_size",
        old="logits, _ = self(idx[:, -block_size:])  # (B, block_size, V)",
        new="logits, _ = self(idx)  # (B, block_size, V)",
    ),
    Mutant(
        name="crop_one_short",
        tasks=("generate",),
        description="the crop keeps block_size - 1 tokens",
        old="logits, _ = self(idx[:, -block_size:])  # (B, block_size, V)",
        new="logits, _ = self(idx[:, -(block_size - 1):])  # (B, block_size, V)",
    ),
    Mutant(
        name="top_k_off_by_one",
        tasks=("generate",),
        description="top_k keeps the k + 1 largest logits",
        old="kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, [-1]]",
        new="kth = torch.topk(logits, min(top_k + 1, logits.shape[-1]), dim=-1).values[:, [-1]]",
    ),
    Mutant(
        name="temperature_after_softmax",
        tasks=("generate",),
        description="the probabilities are divided by the temperature (multinomial renormalizes: no effect)",
        old="    logits = logits / temperature  # (B, V)\n",
        new="",
        also=(("probs = F.softmax(logits, dim=-1)  # (B, V)", "probs = F.softmax(logits, dim=-1) / temperature  # (B, V)"),),
    ),
    Mutant(
        name="global_rng_sampling",
        tasks=("generate",),
        description="torch.multinomial without the generator (torch's global random stream)",
        old="return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)",
        new="return torch.multinomial(probs, num_samples=1)  # (B, 1)",
    ),
    Mutant(
        name="greedy_samples",
        tasks=("generate",),
        description="temperature 0 is treated as a tiny temperature and still samples (on float ties)",
        old="    if temperature == 0:\n        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)\n",
        new="    if temperature == 0:\n        temperature = 1.0\n",
    ),
    # --- the fused path -----------------------------------------------------------------------
    Mutant(
        name="fused_without_causal",
        tasks=("fused",),
        description="the fused path calls SDPA with is_causal=False",
        old="out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)  # (B, H, T, Dh)",
        new="out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=False)  # (B, H, T, Dh)",
    ),
    Mutant(
        name="fused_is_causal_with_cache",
        tasks=("fused",),
        description="the fused path always uses is_causal=True, whose triangle is top-left aligned under a cache",
        old="    if bias is None and s == t:\n",
        new="    if bias is None:\n",
    ),
    Mutant(
        name="fused_gqa_tiled",
        tasks=("fused",),
        description="kv heads tiled (k.repeat) instead of interleaved: query head h reads kv head h % Hkv",
        old="k = k.repeat_interleave(h // h_kv, dim=1)  # (B, H, S, Dh)",
        new="k = k.repeat(1, h // h_kv, 1, 1)  # (B, H, S, Dh)",
        also=(("v = v.repeat_interleave(h // h_kv, dim=1)  # (B, H, S, Dh)", "v = v.repeat(1, h // h_kv, 1, 1)  # (B, H, S, Dh)"),),
    ),
    Mutant(
        name="fused_dropout_in_eval_too",
        tasks=("fused",),
        description="the fused path passes dropout_p=config.dropout whatever the mode",
        old="dropout_p = config.dropout if attn.training else 0.0",
        new="dropout_p = config.dropout",
    ),
    Mutant(
        name="fused_dropout_on_the_output",
        tasks=("fused",),
        description="the fused path drops entries of SDPA's output instead of the attention weights",
        old="    out = out.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, D)\n    return attn.out_proj(out)",
        new="    out = F.dropout(out, dropout_p)\n    out = out.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, D)\n"
            "    return attn.out_proj(out)",
        also=(("out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)",
               "out = F.scaled_dot_product_attention(q, k, v, is_causal=True)"),
              ("out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)",
               "out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)")),
    ),
    Mutant(
        name="fused_without_dropout",
        tasks=("fused",),
        description="the fused path never drops attention weights, in training either",
        old="dropout_p = config.dropout if attn.training else 0.0",
        new="dropout_p = 0.0",
    ),
    Mutant(
        name="fused_alibi_dropped",
        tasks=("fused",),
        description="the fused path ignores ALiBi's bias",
        old="mask = allowed if bias is None else bias.to(q.dtype).masked_fill(~allowed, float(\"-inf\"))",
        new="mask = allowed",
    ),
    Mutant(
        name="fused_rope_at_zero",
        tasks=("fused",),
        description="the fused path rotates cached queries and keys from position 0",
        old="positions = torch.arange(start, start + t, device=x.device)  # (T,)",
        new="positions = torch.arange(t, device=x.device)  # (T,)",
    ),
    # --- dropout: in training only, in the handout's places (issue 21) ----------------------------
    Mutant(
        name="gpt_embedding_not_dropped",
        tasks=('GPT',),
        description="the embedded tokens enter the first block without dropout",
        old="        x = self.dropout(x)  # (B, T, D)\n",
        new="",
    ),
    Mutant(
        name="block_dropout_on_the_residual_sum",
        tasks=('GPT',),
        description="the block drops the attention residual's sum, dropout(x + attn(...)), not attention's output",
        old="x = x + self.dropout(attended)  # (B, T, D)",
        new="x = self.dropout(x + attended)  # (B, T, D)",
    ),
    Mutant(
        name="block_ffn_dropped_twice",
        tasks=('GPT',),
        description="the block drops the FFN's output again, on top of the FFN's own dropout",
        old="return x + self.ffn(self.ffn_norm(x))  # (B, T, D)",
        new="return x + self.dropout(self.ffn(self.ffn_norm(x)))  # (B, T, D)",
    ),
    Mutant(
        name="block_attention_weights_not_dropped",
        tasks=('GPT',),
        description="the block builds MultiHeadAttention without dropout (its weights are never dropped)",
        old="self.attn = MultiHeadAttention(config.d_model, config.n_head, config.n_kv_head, dropout=config.dropout,",
        new="self.attn = MultiHeadAttention(config.d_model, config.n_head, config.n_kv_head,",
    ),
    Mutant(
        name="ffn_built_without_dropout",
        tasks=('GPT',),
        description="build_ffn leaves the FFN's dropout at its default 0",
        old="return FeedForward(config.d_model, config.d_ff, activation=\"gelu\", dropout=config.dropout, bias=config.bias)",
        new="return FeedForward(config.d_model, config.d_ff, activation=\"gelu\", bias=config.bias)",
        also=(("multiple_of=SWIGLU_MULTIPLE_OF, bias=config.bias,\n                      dropout=config.dropout)",
               "multiple_of=SWIGLU_MULTIPLE_OF, bias=config.bias)"),),
    ),
    Mutant(
        name="gpt_dropout_always_on",
        tasks=('GPT',),
        description="the model's embedding dropout ignores self.training (F.dropout(x, p) in eval mode too)",
        old="        x = self.dropout(x)  # (B, T, D)\n",
        new="        x = F.dropout(x, self.config.dropout)  # (B, T, D)\n",
    ),
    Mutant(
        name="config_odd_head_dim_refused_for_every_pos",
        tasks=("GPT",),
        description="GPTConfig refuses an odd head_dim whatever pos is (only RoPE needs pairs)",
        old='if self.pos == "rope" and self.head_dim % 2 != 0:',
        new='if self.head_dim % 2 != 0:',
    ),
    Mutant(
        name="position_table_persistent",
        tasks=("GPT",),
        description="the sinusoidal table is a persistent buffer: it lands in the state_dict",
        old='self.register_buffer("position_table", table, persistent=False)',
        new='self.register_buffer("position_table", table)',
    ),
]

VALID_VARIANTS: list[Mutant] = [
    Mutant(
        name="kv_heads_by_expand",
        description="kv heads repeated with expand + reshape (Llama's repeat_kv)",
        old="k = k.repeat_interleave(h // h_kv, dim=1)  # (B, H, S, Dh)",
        new="k = k[:, :, None].expand(b, h_kv, h // h_kv, *k.shape[-2:]).reshape(b, h, -1, dh)  # (B, H, S, Dh)",
        also=(("v = v.repeat_interleave(h // h_kv, dim=1)  # (B, H, S, Dh)",
               "v = v[:, :, None].expand(b, h_kv, h // h_kv, *v.shape[-2:]).reshape(b, h, -1, dh)  # (B, H, S, Dh)"),),
    ),
    Mutant(
        name="explicit_mask_always",
        description="the fused path always passes an explicit causal mask, never is_causal",
        old="    if bias is None and s == t:\n",
        new="    if False:\n",
    ),
    Mutant(
        name="einsum_merge",
        description="heads merged with einsum before the reshape",
        old="out = out.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, D)",
        new="out = torch.einsum(\"bhtd->bthd\", out).reshape(b, t, h * dh)  # (B, T, D)",
    ),
    Mutant(
        name="top_k_by_sort",
        description="the k-th largest logit found by sorting",
        old="kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, [-1]]",
        new="kth = logits.sort(dim=-1, descending=True).values[:, [min(top_k, logits.shape[-1]) - 1]]",
    ),
    Mutant(
        name="float64_loss",
        description="the loss computed in float64 and cast back",
        old="loss = cross_entropy(logits.reshape(b * t, -1), targets.reshape(b * t))  # ()",
        new="loss = cross_entropy(logits.reshape(b * t, -1).double(), targets.reshape(b * t)).to(logits.dtype)  # ()",
    ),
    Mutant(
        name="learned_positions_by_forward",
        description="without a cache, the learned table is added by LearnedPositionalEmbedding.forward",
        old="x = x + self.positions.embedding(positions)  # (B, T, D)",
        new="x = self.positions(x) if start == 0 else x + self.positions.embedding(positions)  # (B, T, D)",
    ),
    Mutant(
        name="fresh_caches_after_crop",
        description="once the window is full, every step re-prefills fresh caches with the last block_size tokens",
        old="                caches = None  # the window is full: crop and recompute from now on\n"
            "                logits, _ = self(idx[:, -block_size:])  # (B, block_size, V)",
        new="                caches = [KVCache() for _ in self.blocks]\n"
            "                logits, _ = self(idx[:, -block_size:], kv_caches=caches)  # (B, block_size, V)",
    ),
]
