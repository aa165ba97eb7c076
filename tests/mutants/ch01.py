"""Chapter 01 mutants: plausible student bugs in `transformer_full.py`.

Each mutant is a small text edit of `reference_solutions/transformer_full.py` that changes
behaviour on some valid input chapter 01's graders send. ``VALID_VARIANTS`` are correct
solutions written another way (positions computed on the fly or kept in the state_dict, an
output layer tied by sharing the Parameter, einsum or F.linear logits, dropout only where the
paper puts it): each must keep full marks.
"""

from __future__ import annotations

from . import Mutant

MUTANTS: list[Mutant] = [
    # --- positions, embeddings, masks --------------------------------------------------------
    Mutant(
        name="sin_cos_swapped",
        tasks=('positions',),
        description="cos in the even columns and sin in the odd ones",
        old="table[:, 0::2] = torch.sin(position * frequency)",
        new="table[:, 0::2] = torch.cos(position * frequency)",
        also=(("table[:, 1::2] = torch.cos(position * frequency)", "table[:, 1::2] = torch.sin(position * frequency)"),),
    ),
    Mutant(
        name="embedding_not_scaled",
        tasks=('embeddings',),
        description="the embedding is added to the positions without the sqrt(d_model) scale",
        old="scaled = self.embedding(tokens) * math.sqrt(self.d_model)  # (B, T, D)",
        new="scaled = self.embedding(tokens)  # (B, T, D)",
    ),
    Mutant(
        name="positions_scaled_too",
        tasks=('embeddings',),
        description="(embedding + positions) * sqrt(d_model): the positions are scaled as well",
        old="return self.embedding_dropout(scaled + self.positions[:length])  # (B, T, D)",
        new="return self.embedding_dropout(scaled + self.positions[:length] * math.sqrt(self.d_model))  # (B, T, D)",
    ),
    Mutant(
        name="embedding_default_init",
        tasks=('embeddings',),
        description="the embedding keeps nn.Embedding's N(0, 1) initialisation",
        old="        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)\n",
        new="",
    ),
    Mutant(
        name="no_max_seq_len_check",
        tasks=('embeddings',),
        description="longer sequences are not refused (the position table's slice silently comes up short)",
        old="        if length > self.max_seq_len:\n            raise ValueError",
        new="        if length > self.max_seq_len + 1000:\n            raise ValueError",
    ),
    Mutant(
        name="padding_mask_not_inverted",
        tasks=('masks',),
        description="the course's mask (True = real) passed as key_padding_mask (True = ignore)",
        old="return None if attention_mask is None else ~attention_mask.bool()  # (B, T)",
        new="return None if attention_mask is None else attention_mask.bool()  # (B, T)",
    ),
    Mutant(
        name="future_mask_blocks_the_past",
        tasks=('masks',),
        description="the causal mask blocks the keys before each query instead of after",
        old="return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)  # (T, T)",
        new="return torch.ones(length, length, dtype=torch.bool, device=device).tril(-1)  # (T, T)",
    ),
    Mutant(
        name="no_heads_check",
        tasks=('EncoderLayer', 'DecoderLayer', 'Transformer'),
        description="an indivisible d_model reaches nn.MultiheadAttention, which raises AssertionError",
        old="    if num_heads < 1 or d_model % num_heads:\n        raise ValueError",
        new="    if num_heads < 1:\n        raise ValueError",
    ),
    # --- layers --------------------------------------------------------------------------------
    Mutant(
        name="encoder_residual_missing",
        tasks=('EncoderLayer',),
        description="post-norm encoder layer normalizes the attention output without adding x back",
        old="x = self.norm1(x + self.self_attention_block(x, ignore, blocked))  # (B, T, D)\n        return self.norm2(x + self.feed_forward_block(x))  # (B, T, D)\n        ### END",
        new="x = self.norm1(self.self_attention_block(x, ignore, blocked))  # (B, T, D)\n        return self.norm2(x + self.feed_forward_block(x))  # (B, T, D)\n        ### END",
    ),
    Mutant(
        name="encoder_norm_placement_swapped",
        tasks=('EncoderLayer',),
        description="EncoderLayer wires pre-norm when norm_first is False and post-norm when it is True",
        old="        blocked = future_mask(x.shape[1], x.device) if is_causal else None  # (T, T) or None\n        if self.norm_first:",
        new="        blocked = future_mask(x.shape[1], x.device) if is_causal else None  # (T, T) or None\n        if not self.norm_first:",
    ),
    Mutant(
        name="prenorm_normalizes_the_stream",
        tasks=('EncoderLayer',),
        description="pre-norm encoder layer writes the normalized x back into the stream: x = norm(x); x = x + attn(x)",
        old="            x = x + self.self_attention_block(self.norm1(x), ignore, blocked)  # (B, T, D)\n            return x + self.feed_forward_block(self.norm2(x))",
        new="            x = self.norm1(x)\n            x = x + self.self_attention_block(x, ignore, blocked)  # (B, T, D)\n            return x + self.feed_forward_block(self.norm2(x))",
    ),
    Mutant(
        name="no_relu",
        tasks=('EncoderLayer',),
        description="the feed-forward network has no activation between its linears",
        old="hidden = self.dropout(torch.relu(self.linear1(h)))  # (B, T, F)",
        new="hidden = self.dropout(self.linear1(h))  # (B, T, F)",
    ),
    Mutant(
        name="decoder_no_causal_mask",
        tasks=('DecoderLayer',),
        description="decoder self-attention without the causal mask",
        old="        blocked = future_mask(x.shape[1], x.device)  # (T, T)\n",
        new="        blocked = None  # (T, T)\n",
    ),
    Mutant(
        name="cross_attention_to_the_decoder",
        tasks=('DecoderLayer',),
        description="cross-attention attends to the decoder's own states instead of the memory",
        old="out, _ = self.cross_attn(h, memory, memory, key_padding_mask=memory_ignore, need_weights=False)",
        new="out, _ = self.cross_attn(h, h, h, need_weights=False)",
    ),
    Mutant(
        name="prenorm_memory_normalized",
        tasks=('DecoderLayer',),
        description="pre-norm decoder layer runs the memory through norm2 before cross-attention",
        old="x = x + self.cross_attention_block(self.norm2(x), memory, memory_ignore)  # (B, T, D)",
        new="x = x + self.cross_attention_block(self.norm2(x), self.norm2(memory), memory_ignore)  # (B, T, D)",
    ),
    Mutant(
        name="decoder_norms_misnamed",
        tasks=('DecoderLayer',),
        description="post-norm decoder layer uses norm3 after cross-attention and norm2 after the FFN",
        old="x = self.norm2(x + self.cross_attention_block(x, memory, memory_ignore))  # (B, T, D)\n        return self.norm3(",
        new="x = self.norm3(x + self.cross_attention_block(x, memory, memory_ignore))  # (B, T, D)\n        return self.norm2(",
    ),
    Mutant(
        name="no_dropout_in_layers",
        tasks=('EncoderLayer',),
        description="the layers never drop anything (dropout not passed on)",
        old="        self.dropout = nn.Dropout(dropout)\n        self.norm_first = norm_first\n        ### END SOLUTION\n\n    def forward(self, x: Tensor, attention_mask",
        new="        self.dropout = nn.Dropout(0.0)\n        self.norm_first = norm_first\n        ### END SOLUTION\n\n    def forward(self, x: Tensor, attention_mask",
        also=(("        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)\n"
               "        self.linear1",
               "        self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)\n        self.linear1"),),
    ),
    # --- models ------------------------------------------------------------------------------
    Mutant(
        name="source_mask_not_in_cross_attention",
        tasks=('Transformer',),
        description="the source's padding mask reaches the encoder but not the decoder's cross-attention",
        old="x = layer(x, memory, tgt_attention_mask, src_attention_mask)  # (B, T, D)",
        new="x = layer(x, memory, tgt_attention_mask)  # (B, T, D)",
    ),
    Mutant(
        name="untied_output",
        tasks=('Transformer',),
        description="a separate output projection instead of the tied embedding",
        old="        self.embedding_dropout = nn.Dropout(dropout)\n",
        new="        self.embedding_dropout = nn.Dropout(dropout)\n        self.output = nn.Linear(d_model, vocab_size, bias=False)\n",
        also=(("return h @ self.embedding.weight.T  # (B, T, V)", "return self.output(h)  # (B, T, V)"),),
    ),
    Mutant(
        name="prenorm_without_final_norm",
        tasks=('Transformer',),
        description="a pre-norm encoder stack returns the stream without its final norm",
        old="return x if self.encoder_norm is None else self.encoder_norm(x)",
        new="return x",
    ),
    Mutant(
        name="final_norms_in_postnorm",
        tasks=('Transformer',),
        description="encoder_norm and decoder_norm exist (and run) in post-norm models too",
        old="self.encoder_norm = nn.LayerNorm(d_model) if norm_first else None\n        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else None",
        new="self.encoder_norm = nn.LayerNorm(d_model)\n        self.decoder_norm = nn.LayerNorm(d_model)",
    ),
    Mutant(
        name="encoder_only_causal",
        tasks=('EncoderOnly',),
        description="EncoderOnly masks the future as a decoder does",
        old="stream = layer(stream, attention_mask)  # (B, T, D)",
        new="stream = layer(stream, attention_mask, is_causal=True)  # (B, T, D)",
    ),
    Mutant(
        name="decoder_only_not_causal",
        tasks=('DecoderOnly',),
        description="DecoderOnly runs its layers without the causal mask",
        old="stream = layer(stream, attention_mask, is_causal=True)  # (B, T, D)",
        new="stream = layer(stream, attention_mask)  # (B, T, D)",
    ),
    # --- parameter counts ----------------------------------------------------------------------
    Mutant(
        name="count_tied_twice",
        tasks=('count_parameters',),
        description="count_parameters counts a tied weight once per name",
        old="return sum([p.numel() for p in model.parameters()])",
        new="return sum([p.numel() for p in model.parameters(remove_duplicate=False)])",
    ),
    Mutant(
        name="closed_form_two_decoder_norms",
        tasks=('transformer_parameter_count',),
        description="the closed form gives the decoder layer two norms, not three",
        old="decoder_layer = 2 * attention + feed_forward + 3 * layer_norm",
        new="decoder_layer = 2 * attention + feed_forward + 2 * layer_norm",
    ),
    Mutant(
        name="closed_form_untied_output",
        tasks=('transformer_parameter_count',),
        description="the closed form counts a separate output matrix (V x D) on top of the embedding",
        old="return vocab_size * d_model + num_layers * (encoder_layer + decoder_layer)",
        new="return 2 * vocab_size * d_model + num_layers * (encoder_layer + decoder_layer)",
    ),
    # --- dropout: in training only, in the handout's place (issue 21) -----------------------------
    Mutant(
        name="encoder_attention_output_not_dropped",
        tasks=('EncoderLayer',),
        description="the encoder's self-attention output is added without dropout (the FFN's still drops)",
        old="out, _ = self.self_attn(h, h, h, key_padding_mask=ignore, attn_mask=blocked, need_weights=False)  # (B, T, D)\n"
            "        return self.dropout(out)",
        new="out, _ = self.self_attn(h, h, h, key_padding_mask=ignore, attn_mask=blocked, need_weights=False)  # (B, T, D)\n"
            "        return out",
    ),
    Mutant(
        name="encoder_dropout_on_the_residual_sum",
        tasks=('EncoderLayer',),
        description="the encoder drops the FFN's residual sum, norm2(dropout(x + ffn(x))), not the FFN's output",
        old="return self.norm2(x + self.feed_forward_block(x))  # (B, T, D)",
        new="return self.norm2(self.dropout(x + self.feed_forward_block(x)))  # (B, T, D)",
        also=(("return self.dropout(self.linear2(hidden))  # (B, T, D)", "return self.linear2(hidden)  # (B, T, D)"),),
    ),
    Mutant(
        name="decoder_cross_attention_not_dropped",
        tasks=('DecoderLayer',),
        description="the decoder's cross-attention output is added without dropout",
        old="out, _ = self.cross_attn(h, memory, memory, key_padding_mask=memory_ignore, need_weights=False)  # (B, T, D)\n"
            "        return self.dropout(out)",
        new="out, _ = self.cross_attn(h, memory, memory, key_padding_mask=memory_ignore, need_weights=False)  # (B, T, D)\n"
            "        return out",
    ),
    Mutant(
        name="encoder_attention_weights_not_dropped",
        tasks=('EncoderLayer',),
        description="the encoder's nn.MultiheadAttention is built without dropout (its weights are never dropped)",
        old="self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)\n"
            "        self.linear1",
        new="self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)\n        self.linear1",
    ),
    Mutant(
        name="encoder_dropout_always_on",
        tasks=('EncoderLayer',),
        description="the encoder's dropout ignores self.training (F.dropout(t, p) keeps dropping in eval mode)",
        old="        self.dropout = nn.Dropout(dropout)\n        self.norm_first = norm_first\n        ### END SOLUTION\n\n"
            "    def forward(self, x: Tensor, attention_mask",
        new="        self.dropout = lambda t: nn.functional.dropout(t, dropout)\n        self.norm_first = norm_first\n"
            "        ### END SOLUTION\n\n    def forward(self, x: Tensor, attention_mask",
    ),
    Mutant(
        name="embedding_not_dropped",
        tasks=('EncoderOnly',),
        description="the embedded tokens plus positions enter the first layer without dropout",
        old="return self.embedding_dropout(scaled + self.positions[:length])  # (B, T, D)",
        new="return scaled + self.positions[:length]  # (B, T, D)",
    ),
    Mutant(
        name="embedding_dropout_before_positions",
        tasks=('DecoderOnly',),
        description="dropout on the scaled embedding before the positions are added, not on the sum",
        old="return self.embedding_dropout(scaled + self.positions[:length])  # (B, T, D)",
        new="return self.embedding_dropout(scaled) + self.positions[:length]  # (B, T, D)",
    ),
    Mutant(
        name="dropout_only_on_sublayer_outputs",
        tasks=("EncoderLayer", "DecoderLayer"),
        description="no dropout inside the FFN (the paper drops only each sublayer's output; the handout's "
                    "ffn(x) = linear2(drop(relu(linear1(x)))) drops the hidden units too)",
        old="hidden = self.dropout(torch.relu(self.linear1(h)))  # (B, T, F)",
        new="hidden = torch.relu(self.linear1(h))  # (B, T, F)",
        also=(("widened = self.dropout(torch.relu(self.linear1(h)))  # (B, T, F)",
               "widened = torch.relu(self.linear1(h))  # (B, T, F)"),),
    ),
    Mutant(
        name="positions_in_state_dict",
        tasks=("embeddings",),
        description="the position table is a persistent buffer under a name of the student's own (the "
                    "handout keeps it out of the state_dict)",
        old='self.register_buffer("positions", sinusoidal_positions(max_seq_len, d_model), persistent=False)  # (P, D)',
        new='self.register_buffer("pe", sinusoidal_positions(max_seq_len, d_model))  # (P, D)',
        also=(("scaled + self.positions[:length]", "scaled + self.pe[:length]"),),
    ),
    Mutant(
        name="encoder_layer_ignores_is_causal",
        tasks=("EncoderLayer",),
        description="EncoderLayer never builds the causal mask: is_causal=True attends to later positions",
        old="blocked = future_mask(x.shape[1], x.device) if is_causal else None  # (T, T) or None",
        new="blocked = None  # (T, T) or None",
    ),
]

VALID_VARIANTS: list[Mutant] = [
    Mutant(
        name="positions_on_the_fly",
        description="no position buffer: the table is computed in float64 at every call and cast to the stream's dtype",
        old='        self.register_buffer("positions", sinusoidal_positions(max_seq_len, d_model), persistent=False)  # (P, D)\n',
        new="",
        also=(("return self.embedding_dropout(scaled + self.positions[:length])  # (B, T, D)",
               "table = sinusoidal_positions(length, self.d_model).to(device=scaled.device, dtype=scaled.dtype)\n"
               "        return self.embedding_dropout(scaled + table)  # (B, T, D)"),),
    ),
    Mutant(
        name="tied_by_shared_parameter",
        description="an nn.Linear output layer whose weight is the embedding's Parameter",
        old="        self.embedding_dropout = nn.Dropout(dropout)\n",
        new="        self.embedding_dropout = nn.Dropout(dropout)\n        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)\n"
            "        self.lm_head.weight = self.embedding.weight\n",
        also=(("return h @ self.embedding.weight.T  # (B, T, V)", "return self.lm_head(h)  # (B, T, V)"),),
    ),
    Mutant(
        name="einsum_logits",
        description="the tied logits with einsum",
        old="return h @ self.embedding.weight.T  # (B, T, V)",
        new='return torch.einsum("btd,vd->btv", h, self.embedding.weight)  # (B, T, V)',
    ),
    Mutant(
        name="functional_linear_logits",
        description="the tied logits with F.linear",
        old="return h @ self.embedding.weight.T  # (B, T, V)",
        new="return torch.nn.functional.linear(h, self.embedding.weight)  # (B, T, V)",
    ),
    Mutant(
        name="causal_hint_with_mask",
        description="decoder self-attention passes is_causal=True beside the causal attn_mask",
        old="attended, _ = self.self_attn(h, h, h, key_padding_mask=ignore, attn_mask=blocked, need_weights=False)",
        new="attended, _ = self.self_attn(h, h, h, key_padding_mask=ignore, attn_mask=blocked, need_weights=False,\n"
            "                                     is_causal=True)",
    ),
    Mutant(
        name="residual_with_torch_add",
        description="the post-norm residual sums written with torch.add",
        old="x = self.norm1(x + self.self_attention_block(x, ignore, blocked))  # (B, T, D)\n        return self.norm2(x + self.feed_forward_block(x))  # (B, T, D)\n        ### END",
        new="x = self.norm1(torch.add(self.self_attention_block(x, ignore, blocked), x))  # (B, T, D)\n        return self.norm2(torch.add(self.feed_forward_block(x), x))  # (B, T, D)\n        ### END",
    ),
]
