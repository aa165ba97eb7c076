"""Chapter 07 hidden tests: the reference GPT as the oracle, your model's own consistency, and training.

Expected logits come from the reference GPT in float64 with the same weights; generation is
replayed here from your own model's logits (so a token differs only if your generate does);
the training run starts your GPT and the reference's from the same weights and batches.
Failure messages show your own values, the size and place of the error and the shrunk case,
never the expected values or this file's source.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields, is_dataclass, replace
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from graders import checks, strategies, tolerances
from graders.tolerances import DROPOUT_P, DROPOUT_SIGMAS
from graders.submission import obj

TASKS = ("GPT", "generate", "fused", "data", "training")
SECTIONS = {"GPT": "gpt", "generate": "generate", "fused": "fused-attention", "data": "data", "training": "training"}
HARNESS = "$harness"
GPT_HINT = ("pre-norm blocks: x + attn(attn_norm(x)), then x + ffn(ffn_norm(x)); a final norm; logits = "
            "lm_head(norm(x)); positions as config.pos says; the causal mask in every layer")


def shown(case) -> str:
    """`case` as its repr without its seed: a hidden message never carries one, since with the
    public strategies a seed rebuilds the input, and so the expected value."""
    if not is_dataclass(case):
        return re.sub(r",?\s*\w*seed\w*=[^,)]*", "", repr(case))
    kept = ", ".join(f"{f.name}={getattr(case, f.name)!r}" for f in fields(case) if "seed" not in f.name)
    return f"{type(case).__name__}({kept})"


def build(student, config: dict, *, calls: list, state: dict | None = None, dtype=torch.float64, objects=None,
          **kwargs):
    """`GPT(GPTConfig(**config))` in the worker, `state` loaded, then `calls`."""
    return student.module("GPT", {"config": obj("config")}, objects={"config": {"cls": "GPTConfig", "init": config}}
                          | (objects or {}), state_dict=state, dtype=dtype, calls=calls, **kwargs)


def reference_model(reference, config: dict, seed: int):
    """The reference GPT in float64, eval mode, with `strategies.gpt_state` weights; (model, state)."""
    model = reference.GPT(reference.GPTConfig(**config)).double().eval()
    return model, strategies.gpt_state(model, seed=seed)


def logits_of(output, *, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        checks.fail(f"{what}: forward should return (logits, loss), got {type(output).__name__}")
    return checks.check_tensor(output[0], what=f"{what}: logits", shape=shape)


# --- the model against the reference ------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("GPT")
@given(case=strategies.gpt_cases())
def test_gpt_matches_reference(student, reference, case):
    """Loaded with the same weights, your GPT's logits and loss equal the reference's, over every position
    scheme, norm, feed-forward network, head layout, tied or untied embeddings and biases."""
    config = case.config()
    model, state = reference_model(reference, config, case.seed)
    idx, targets = case.tokens(), case.tokens(offset=1)
    result = build(student, config, state=state, calls=[{"fn": "self.forward", "args": [idx, targets]}])
    logits = logits_of(result.output, what="forward(idx, targets)", shape=(case.batch, case.seq_len, case.vocab_size))
    with torch.no_grad():
        expected, expected_loss = model(idx, targets)
    tol = tolerances.gpt(case.block_size)
    checks.assert_close(logits, expected, tol, what=f"logits ({shown(case)})", hint=GPT_HINT)
    loss = checks.check_tensor(result.output[1], what="loss", shape=())
    checks.assert_close(loss, expected_loss, tol, what=f"loss ({shown(case)})",
                        hint="the loss is cross_entropy over all B * T positions against `targets` as given")


def dropout_case(case: strategies.GPTCase) -> strategies.GPTCase:
    """`case` grown to 4 sequences of 8 tokens and a width of at least 4: >= 128 entries to count."""
    return replace(case, batch=4, block_size=8, seq_len=8, head_dim=max(case.head_dim, 4 // case.n_head))


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@given(case=strategies.gpt_cases().map(dropout_case))
def test_dropout_only_in_training(student, reference, case):
    """With dropout=0.25, eval mode gives the reference's logits (dropout off); training mode does not."""
    config = case.config(dropout=DROPOUT_P)
    model, state = reference_model(reference, case.config(), case.seed)
    idx = case.tokens()
    shape = (case.batch, case.seq_len, case.vocab_size)
    result = build(student, config, state=state, train=True, calls=[
        {"fn": "self.forward", "args": [idx]}, {"fn": "self.eval", "discard": True},
        {"fn": "self.forward", "args": [idx]}])
    trained = logits_of(result.outputs[0], what="forward(idx) in training mode", shape=shape)
    evaluated = logits_of(result.outputs[2], what="forward(idx) in eval mode", shape=shape)
    with torch.no_grad():
        expected, _ = model(idx)
    tol = tolerances.gpt(case.block_size)
    if not torch.allclose(evaluated, expected, rtol=tol.rtol, atol=tol.atol):
        # Blame dropout only when the same model built with dropout=0 is right.
        free = build(student, case.config(), state=state, calls=[{"fn": "self.forward", "args": [idx]}]).output
        free = logits_of(free, what="forward(idx) with dropout=0", shape=shape)
        hint = ("dropout acts only in training mode (nn.Dropout follows self.training): with dropout=0 your logits "
                "are right, with dropout=0.25 in eval mode they are not"
                if torch.allclose(free, expected, rtol=tol.rtol, atol=tol.atol) else "")
        checks.assert_close(evaluated, expected, tol, what=f"logits in eval mode with dropout={DROPOUT_P}",
                            hint=hint)
    if torch.allclose(trained, evaluated):
        checks.fail(f"with dropout={DROPOUT_P} your logits in training mode equal those in eval mode: nothing was "
                    "dropped")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@given(case=strategies.gpt_cases().map(dropout_case))
def test_dropout_in_its_places(student, reference, case):
    """In training mode (dropout=0.25, unfused attention), hooks on the first block show: its input is the embedded
    sum dropped (0 or your eval-mode input / (1 - p)); the attention's output is dropped before it is added; the FFN's
    output is added as it comes (it drops its own, after its down projection); attention drops its weights."""
    config = case.config(dropout=DROPOUT_P)
    _, state = reference_model(reference, case.config(), case.seed)
    down = "blocks.0.ffn.w2" if case.ffn == "swiglu" else "blocks.0.ffn.fc2"
    names = ["blocks.0", "blocks.0.attn", "blocks.0.ffn_norm", "blocks.0.ffn", down]
    idx = case.tokens()
    result = build(student, config, state=state, train=True, attrs=("seen",), calls=[
        {"fn": "watch", "module": HARNESS, "args": [obj("self"), names], "store": "seen"},
        {"fn": "self.forward", "args": [idx]}, {"fn": "self.eval", "discard": True},
        {"fn": "self.forward", "args": [idx]}])
    seen = result.attrs["seen"]
    for name in names:
        if len(seen[name]) != 2:
            checks.fail(f"{name} ran {len(seen[name])} times in two forward passes, once expected in each "
                        "(attention through attn.forward: fused_attention is off here)")
    block = {key: [record["args"][0] if record["args"] else None for record in seen[key]] for key in names}
    if any(v is None for key in ("blocks.0", "blocks.0.ffn_norm") for v in block[key]):
        checks.fail("blocks.0 and its ffn_norm should be called with the stream as their first positional argument")
    checks.assert_dropped_or_scaled(block["blocks.0"][0], block["blocks.0"][1], DROPOUT_P,
                                    tolerances.ARCH_LAYER,
                                    what="the first block's input in training mode, against yours in eval mode",
                                    hint="x = dropout(embedding(idx) (+ positions)) before the first block, in "
                                         "training mode only")
    attended = seen["blocks.0.attn"][0]["output"]
    attended = attended[0] if isinstance(attended, list) else attended  # MultiHeadAttention returns (out, weights)
    checks.assert_dropped_or_scaled(block["blocks.0.ffn_norm"][0] - block["blocks.0"][0], attended,
                                    DROPOUT_P, tolerances.ARCH_LAYER,
                                    what="what the attention residual adds to the stream in training mode",
                                    hint="x = x + dropout(attn(attn_norm(x))[0]): the attention's output is dropped, "
                                         "never x or the sum")
    out = seen["blocks.0"][0]["output"]
    checks.assert_close(out - block["blocks.0.ffn_norm"][0], seen["blocks.0.ffn"][0]["output"], tolerances.ARCH_LAYER,
                        what="what the FFN residual adds to the stream in training mode vs the FFN's own output",
                        hint="x + ffn(ffn_norm(x)): the FFN drops its own output, the block adds it as it is")
    checks.assert_dropped_or_scaled(seen["blocks.0.ffn"][0]["output"], seen[down][0]["output"],
                                    DROPOUT_P, tolerances.ARCH_LAYER,
                                    what="the FFN's output in training mode, against its down projection's",
                                    hint="build_ffn passes dropout=config.dropout: the FFN drops its output after "
                                         f"{down.rsplit('.', 1)[1]}")
    x = torch.ones(case.batch, case.seq_len, case.d_model, dtype=torch.float64)  # every weight 1/T before dropout
    attention = build(student, config, state=state, train=True, calls=[
        {"fn": "self.blocks.0.attn.forward", "args": [x], "kwargs": {"need_weights": True}}]).output
    weights = attention[1] if isinstance(attention, (tuple, list)) and len(attention) == 2 else None
    weights = checks.check_tensor(weights, what="blocks.0.attn(x, need_weights=True) weights in training mode",
                                  shape=(case.batch, case.n_head, case.seq_len, case.seq_len))
    share = (weights == 0).double().mean().item()
    if abs(share - DROPOUT_P) > DROPOUT_SIGMAS * (DROPOUT_P * (1 - DROPOUT_P) / weights.numel()) ** 0.5:
        checks.fail(f"blocks.0.attn in training mode with dropout={DROPOUT_P} dropped a share {share:.3f} of its "
                    "attention weights (no mask, so none is 0 otherwise)\n  see: build attn as MultiHeadAttention(..., "
                    "dropout=config.dropout)")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@given(case=strategies.gpt_cases(min_len=2), cut=st.integers(1, 7))
def test_causality_over_configs(student, reference, case, cut):
    """Changing the tokens from position `cut` on never changes the logits before it, in any configuration."""
    cut = min(cut, case.seq_len - 1)
    config = case.config()
    _, state = reference_model(reference, config, case.seed)
    idx = case.tokens()
    changed = idx.clone()
    changed[:, cut:] = (changed[:, cut:] + 1) % case.vocab_size
    result = build(student, config, state=state, calls=[{"fn": "self.forward", "args": [idx]},
                                                       {"fn": "self.forward", "args": [changed]}])
    shape = (case.batch, case.seq_len, case.vocab_size)
    first, second = (logits_of(o, what="forward(idx)", shape=shape) for o in result.outputs)
    checks.assert_close(second[:, :cut], first[:, :cut], tolerances.SELF_CONSISTENCY[torch.float64],
                        what=f"logits before position {cut} after changing the tokens from {cut} on ({shown(case)})",
                        hint="query i may attend only keys j <= i, in every layer (and ALiBi's bias is no mask)")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@given(case=strategies.gpt_cases())
@settings(max_examples=8)
def test_parameters_and_counts_match(student, reference, case):
    """Parameter names and shapes (a tied weight once), num_parameters both ways and flops_per_token."""
    config = case.config()
    model = reference.GPT(reference.GPTConfig(**config))
    result = build(student, config, parameter_shapes=True,
                   calls=[{"fn": "self.num_parameters", "args": [False]}, {"fn": "self.num_parameters"},
                          {"fn": "self.flops_per_token"}])
    expected = {name: list(p.shape) for name, p in model.named_parameters()}
    got = result.parameter_shapes
    if got != expected:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        checks.fail(f"parameter names differ from the contract's ({shown(case)}): missing {missing}, unexpected {extra}"
                    + (", shapes differ" if not (missing or extra) else "")
                    + ("; with tie_embeddings, lm_head.weight is embedding.weight" if case.tie_embeddings else ""))
    for got_value, want, what in zip(result.outputs, (model.num_parameters(False), model.num_parameters(),
                                                      model.flops_per_token()),
                                     ("num_parameters(non_embedding=False)", "num_parameters()", "flops_per_token()")):
        if got_value != want:
            checks.fail(f"{what} is {got_value}, which is wrong for {shown(case)}")


@pytest.mark.points(2)
@pytest.mark.task("GPT")
@pytest.mark.parametrize("ffn, norm", [("swiglu", "rmsnorm"), ("gelu", "layernorm")])
def test_initialization_statistics(student, ffn, norm):
    """A fresh GPT: weights ~ N(0, 0.02), residual projections (out_proj, w2/fc2) ~ N(0, 0.02 / sqrt(2 n_layer)),
    zero biases, norms at weight 1 (bias 0)."""
    n_layer = 4
    config = {"vocab_size": 64, "block_size": 32, "n_layer": n_layer, "n_head": 4, "d_model": 64, "d_ff": 128,
              "pos": "learned", "norm": norm, "ffn": ffn, "bias": True, "tie_embeddings": False}
    state = build(student, config, dtype=torch.float32, calls=[{"fn": "self.state_dict"}]).output
    if not isinstance(state, dict):
        checks.fail("state_dict() did not return a dict")
    down = "w2" if ffn == "swiglu" else "fc2"
    residual = 0.02 / math.sqrt(2 * n_layer)
    for name, value in sorted(state.items()):
        value = checks.check_tensor(value, what=name).double()
        if name.endswith(".bias"):
            checks.assert_equal(value, torch.zeros_like(value), what=f"{name} at initialization",
                                hint="biases start at 0")
        elif "norm" in name:
            checks.assert_equal(value, torch.ones_like(value), what=f"{name} at initialization",
                                hint="norm weights start at 1")
        elif value.dim() == 2:
            want = residual if name.endswith(("attn.out_proj.weight", f"ffn.{down}.weight")) else 0.02
            checks.assert_close(value.std(), torch.tensor(want, dtype=torch.float64), tolerances.INIT_STD,
                                what=f"standard deviation of {name} at initialization",
                                hint="normal(0, 0.02) for every Linear and Embedding weight, then 0.02 / sqrt(2 * "
                                     "n_layer) for attn.out_proj and the FFN's down projection")
            checks.assert_close(value.mean(), torch.tensor(0.0, dtype=torch.float64),
                                tolerances.Tolerance(rtol=0.0, atol=5 * want / math.sqrt(value.numel()),
                                                     reason="5 standard errors of a sample mean"),
                                what=f"mean of {name} at initialization", hint="mean 0")


# --- generation: your tokens replayed from your own logits ---------------------------------------


def replay(reference, student, config: dict, state: dict, seq: torch.Tensor, prompt_len: int, *, temperature: float,
           top_k: int | None, seed: int, what: str) -> None:
    """Check `seq` (your generate's output) token by token: forward on the last block_size tokens before each
    new token, then the reference's sampler on those logits with the same generator, must give that token."""
    block = config["block_size"]
    calls = [{"fn": "self.forward", "args": [seq[:, max(0, t - block):t]]} for t in range(prompt_len, seq.shape[1])]
    outputs = build(student, config, state=state, calls=calls).outputs
    gen = strategies.generator(seed)
    for step, out in enumerate(outputs):
        logits = logits_of(out, what="forward", shape=(seq.shape[0], min(block, prompt_len + step),
                                                       config["vocab_size"]))[:, -1]  # (B, V)
        token = seq[:, prompt_len + step]  # (B,)
        if temperature == 0:
            chosen = logits.gather(-1, token[:, None]).squeeze(-1)  # (B,)
            checks.assert_close(chosen, logits.max(dim=-1).values, tolerances.SELF_CONSISTENCY[torch.float64],
                                what=f"{what}: logit of the token generated at step {step + 1} vs the largest",
                                hint="temperature 0 is the argmax of the last position's logits")
            continue
        expected = reference.sample_next_token(logits, temperature, top_k, gen).squeeze(-1)  # (B,)
        bad = (expected != token).nonzero()
        if len(bad):
            row = int(bad[0])
            checks.fail(f"{what}: at step {step + 1}, row {row}, your generate chose token {int(token[row])}, which "
                        f"recomputing forward on the last block_size tokens and sampling with the same generator "
                        f"does not give; see: one torch.multinomial(probs, 1, generator=generator) per step on the "
                        f"(B, V) probabilities of logits / temperature, top_k applied before the softmax; the new "
                        f"token goes through the caches at the next position; crop beyond block_size")


@pytest.mark.points(2)
@pytest.mark.task("generate")
@given(case=strategies.gpt_cases(), prompt_len=st.integers(1, 10), new=st.integers(1, 10),
       temperature=st.sampled_from((0.0, 0.0, 0.5, 1.0, 2.0)), top_k=st.sampled_from((None, 1, 2, 5)),
       seed=strategies.seeds())
def test_generate_equals_recomputation(student, reference, case, prompt_len, new, temperature, top_k, seed):
    """generate through the KV caches gives, token by token, what recomputing forward on the last block_size
    tokens and sampling with the same generator gives (greedy and sampled; prompts and outputs past block_size)."""
    config = case.config()
    _, state = reference_model(reference, config, case.seed)
    prompt = case.tokens(prompt_len, offset=2)
    kwargs = {"temperature": temperature, "top_k": top_k, "generator": obj("gen")}
    result = build(student, config, state=state, objects={"gen": {"cls": "generator", "module": HARNESS,
                                                                  "init": {"seed": seed}}},
                   calls=[{"fn": "self.generate", "args": [prompt, new], "kwargs": kwargs}])
    seq = checks.check_tensor(result.output, what="generate(...)", shape=(case.batch, prompt_len + new))
    checks.assert_equal(seq[:, :prompt_len], prompt, what="the prompt at the start of generate's output")
    replay(reference, student, config, state, seq, prompt_len, temperature=temperature, top_k=top_k, seed=seed,
           what=f"generate(prompt of {prompt_len}, {new} new, temperature={temperature}, top_k={top_k}) "
                f"({shown(case)})")


@pytest.mark.points(1)
@pytest.mark.task("generate")
@given(case=strategies.gpt_cases(), k=st.integers(1, 4), seed=strategies.seeds())
@settings(max_examples=8)
def test_top_k_never_samples_outside_the_top_k(student, reference, case, k, seed):
    """At temperature 3 (flat), every sampled token is among the k largest logits of its step."""
    config = case.config()
    _, state = reference_model(reference, config, case.seed)
    prompt, new = case.tokens(1, offset=3), case.block_size - 1
    result = build(student, config, state=state, objects={"gen": {"cls": "generator", "module": HARNESS,
                                                                  "init": {"seed": seed}}},
                   calls=[{"fn": "self.generate", "args": [prompt, new],
                           "kwargs": {"temperature": 3.0, "top_k": k, "generator": obj("gen")}}])
    seq = checks.check_tensor(result.output, what="generate(...)", shape=(case.batch, 1 + new))
    calls = [{"fn": "self.forward", "args": [seq[:, :t]]} for t in range(1, seq.shape[1])]
    for step, out in enumerate(build(student, config, state=state, calls=calls).outputs):
        logits = logits_of(out, what="forward", shape=(case.batch, step + 1, case.vocab_size))[:, -1]  # (B, V)
        kth = logits.topk(min(k, case.vocab_size), dim=-1).values[:, -1]  # (B,)
        chosen = logits.gather(-1, seq[:, step + 1, None]).squeeze(-1)  # (B,)
        if (chosen < kth - 1e-9).any():
            row = int((chosen < kth - 1e-9).nonzero()[0])
            rank = int((logits[row] > chosen[row]).sum()) + 1
            checks.fail(f"with top_k={k}, step {step + 1} sampled the token ranked {rank} by its logit ({shown(case)})"
                        "\n  see: keep the k largest logits (torch.topk(logits, k).values[:, [-1]] is the k-th), set "
                        "the others to -inf, then softmax")


def check_cached_forward(student, reference, case, prefill: int, fused: bool) -> None:
    """forward on `prefill` tokens, then one token at a time, through one KVCache per block (the
    `kv_caches` argument), gives the logits of one full forward: your model's and the reference's."""
    config = case.config(fused_attention=fused)
    model, state = reference_model(reference, case.config(), case.seed)
    idx = case.tokens()
    prefill = min(prefill, case.seq_len)
    caches = [obj(f"cache{i}") for i in range(case.n_layer)]
    objects = {f"cache{i}": {"cls": "KVCache", "module": "multi_head_attention"} for i in range(case.n_layer)}
    calls = [{"fn": "self.forward", "args": [idx[:, :prefill]], "kwargs": {"kv_caches": caches}}]
    calls += [{"fn": "self.forward", "args": [idx[:, t:t + 1]], "kwargs": {"kv_caches": caches}}
              for t in range(prefill, case.seq_len)]
    result = build(student, config, state=state, objects=objects, calls=calls)
    pieces = [logits_of(o, what="forward(..., kv_caches=caches)", shape=(case.batch, n, case.vocab_size))
              for o, n in zip(result.outputs, [prefill] + [1] * (case.seq_len - prefill))]
    with torch.no_grad():
        expected, _ = model(idx)
    checks.assert_close(torch.cat(pieces, dim=1), expected, tolerances.gpt(case.block_size),
                        what=f"logits decoded through the caches, {prefill} tokens then one at a time "
                             f"({'fused, ' if fused else ''}{shown(case)})",
                        hint="new tokens sit at positions L .. L+T-1 with L = kv_caches[0].length: their learned or "
                             "sinusoidal rows, their rotation, their causal_mask(T, L+T) and ALiBi's bias all start at L")


@pytest.mark.points(1)
@pytest.mark.task("generate")
@given(case=strategies.gpt_cases(min_len=2), prefill=st.integers(1, 4))
def test_cached_forward_equals_full_forward(student, reference, case, prefill):
    """Decoding through one KVCache per block (forward's kv_caches) gives the logits of a full forward pass."""
    check_cached_forward(student, reference, case, prefill, fused=False)


@pytest.mark.points(1)
@pytest.mark.task("fused")
@given(case=strategies.gpt_cases(min_len=2), prefill=st.integers(1, 4))
def test_fused_cached_forward_equals_full_forward(student, reference, case, prefill):
    """With fused_attention=True, decoding through the caches gives the logits of a full forward pass."""
    check_cached_forward(student, reference, case, prefill, fused=True)


# --- the fused path -----------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("fused")
@given(case=strategies.gpt_cases(), prompt_len=st.integers(1, 4), new=st.integers(1, 10))
def test_fused_matches_reference(student, reference, case, prompt_len, new):
    """With fused_attention=True your logits equal the reference's (unfused), and greedy generation through the
    caches equals recomputation, over positions (ALiBi as a float mask), GQA and tied or untied embeddings."""
    config = case.config(fused_attention=True)
    model, state = reference_model(reference, case.config(), case.seed)
    idx = case.tokens()
    prompt = case.tokens(prompt_len, offset=4)
    result = build(student, config, state=state, calls=[{"fn": "self.forward", "args": [idx]},
                                                       {"fn": "self.generate", "args": [prompt, new],
                                                        "kwargs": {"temperature": 0.0}}])
    logits = logits_of(result.outputs[0], what="fused forward", shape=(case.batch, case.seq_len, case.vocab_size))
    with torch.no_grad():
        expected, _ = model(idx)
    checks.assert_close(logits, expected, tolerances.gpt(case.block_size), what=f"fused logits ({shown(case)})",
                        hint="the same projections as attn; rope on q and k; repeat each kv head R times "
                             "(head h reads kv head h // R); is_causal only without a cache or a bias")
    seq = checks.check_tensor(result.outputs[1], what="fused generate(...)", shape=(case.batch, prompt_len + new))
    replay(reference, student, config, state, seq, prompt_len, temperature=0.0, top_k=None, seed=0,
           what=f"fused greedy generate ({shown(case)})")


# --- data ---------------------------------------------------------------------------------------

TEXTS = st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cs",)), min_size=1, max_size=40)


@pytest.mark.points(1)
@pytest.mark.task("data")
@given(text=TEXTS, other=TEXTS)
def test_tokenizer_round_trip(student, text, other):
    """from_text(text): vocab_size distinct characters, id i <-> the i-th sorted character, decode(encode(s)) == s."""
    chars = "".join(sorted(set(text)))
    sample = "".join(c for c in other if c in chars) or text
    result = student.run(module="train_gpt", objects={"tok": {"cls": "CharTokenizer.from_text", "init": {"text": text}}},
                         attrs=["tok.vocab_size"], calls=[{"fn": "tok.encode", "args": [sample]},
                                                          {"fn": "tok.decode", "args": [[chars.index(c) for c in sample]]}])
    if result.attrs["tok.vocab_size"] != len(chars):
        checks.fail(f"vocab_size of {text!r} is {result.attrs['tok.vocab_size']}: count its distinct characters")
    encoded = result.outputs[0]
    if not isinstance(encoded, list) or encoded != [chars.index(c) for c in sample]:
        checks.fail(f"encode({sample!r}) with the vocabulary of {text!r} returned {encoded}: id i is the i-th "
                    "character of the sorted distinct characters")
    if result.outputs[1] != sample:
        checks.fail(f"decode of the ids of {sample!r} returned {result.outputs[1]!r}")


@pytest.mark.points(1)
@pytest.mark.task("data")
@given(text=TEXTS, extra=st.sampled_from(("\u00e9", "~", "\n", "Z")))
def test_tokenizer_rejects_unknown_characters(student, text, extra):
    """encode raises ValueError for any character outside the vocabulary."""
    text = text.replace(extra, "")
    if not text:
        text = "a" if extra != "a" else "b"
    checks.expect_value_error(lambda: student.run(module="train_gpt", objects={"tok": {
        "cls": "CharTokenizer.from_text", "init": {"text": text}}}, calls=[{"fn": "tok.encode", "args": [text + extra]}]),
        what=f"from_text({text!r}).encode(... {extra!r})")


@pytest.mark.points(2)
@pytest.mark.task("data")
@given(n=st.integers(2, 200), batch=st.integers(1, 6), block=st.integers(1, 16),
       dtype=st.sampled_from((torch.int64, torch.int16, torch.uint8)), seed=strategies.seeds())
def test_get_batch_follows_the_rule(student, n, batch, block, dtype, seed):
    """get_batch draws starts with torch.randint(0, N - block_size, (B,), generator) and returns windows x and
    their next tokens y as int64, for any integer data dtype."""
    block = min(block, n - 1)
    data = torch.randint(0, 100, (n,), generator=strategies.generator(seed + 1)).to(dtype)
    result = student.run(module="train_gpt", objects={"gen": {"cls": "generator", "module": HARNESS,
                                                              "init": {"seed": seed}}},
                         calls=[{"fn": "get_batch", "args": [data, batch, block, obj("gen")]}])
    if not isinstance(result.output, (tuple, list)) or len(result.output) != 2:
        checks.fail("get_batch should return (x, y)")
    starts = torch.randint(0, n - block, (batch,), generator=strategies.generator(seed))  # (B,)
    windows = starts[:, None] + torch.arange(block)  # (B, T)
    what = f"get_batch(data of {n} {str(dtype).removeprefix('torch.')} tokens, {batch}, {block}, generator)"
    x = checks.check_tensor(result.output[0], what=f"{what}: x", shape=(batch, block), dtype=torch.long)
    y = checks.check_tensor(result.output[1], what=f"{what}: y", shape=(batch, block), dtype=torch.long)
    checks.assert_equal(x, data[windows].long(), what=f"{what}: x",
                        hint="starts = torch.randint(0, N - block_size, (batch_size,), generator=generator)")
    checks.assert_equal(y, data[windows + 1].long(), what=f"{what}: y", hint="y is x shifted by one: the next tokens")


# --- training -----------------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parent.parent / "data" / "macbeth_gut_64k.txt"
TRAIN = {"batch_size": 16, "block_size": 32, "steps": 200, "chunk": 50, "val_batches": 8,
         "schedule": {"max_lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 20, "total_steps": 200},
         "adamw": {"betas": (0.9, 0.99), "weight_decay": 0.1}, "max_grad_norm": 1.0}
TRAIN_CONFIG = {"block_size": 32, "n_layer": 2, "n_head": 4, "d_model": 64, "d_ff": 128}


def windows(data: torch.Tensor, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches of (x, y) windows, starts drawn from `seed` (get_batch's rule, computed here)."""
    gen = strategies.generator(seed)
    batches = []
    for _ in range(count):
        starts = torch.randint(0, data.numel() - TRAIN["block_size"], (TRAIN["batch_size"],), generator=gen)  # (B,)
        offsets = starts[:, None] + torch.arange(TRAIN["block_size"])  # (B, T)
        batches.append((data[offsets], data[offsets + 1]))
    return batches


@cache
def training_setup() -> tuple[dict, list, list]:
    """(config, train batches, validation batches): a character-level 90/10 split of the corpus."""
    text = CORPUS.read_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])  # (N,)
    split = int(0.9 * data.numel())
    config = TRAIN_CONFIG | {"vocab_size": len(chars)}
    return config, windows(data[:split], TRAIN["steps"], 0), windows(data[split:], TRAIN["val_batches"], 1)


def validation_loss(logits: list[torch.Tensor], batches: list) -> float:
    return sum(F.cross_entropy(z.double().reshape(-1, z.shape[-1]), y.reshape(-1)).item()
               for z, (_, y) in zip(logits, batches)) / len(batches)


def initial_model(reference_gpt) -> torch.nn.Module:
    """The reference GPT both runs start from (seeded: the same weights every time)."""
    config, _, _ = training_setup()
    torch.manual_seed(0)
    return reference_gpt.GPT(reference_gpt.GPTConfig(**config))


@cache
def reference_loss(reference_gpt, reference_loop) -> float:
    """Validation loss of the reference GPT trained with the reference loop."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker: on a busy machine, more threads for small matrices run 10x slower
    try:
        return _reference_loss(reference_gpt, reference_loop)
    finally:
        torch.set_num_threads(threads)


def _reference_loss(reference_gpt, reference_loop) -> float:
    _, train, val = training_setup()
    model = initial_model(reference_gpt)
    opt = reference_loop.AdamW(model.parameters(), lr=TRAIN["schedule"]["max_lr"], **TRAIN["adamw"])
    for step, batch in enumerate(train):
        for group in opt.param_groups:
            group["lr"] = reference_loop.cosine_schedule(step, **TRAIN["schedule"])
        reference_loop.train_step(model, [batch], opt, max_grad_norm=TRAIN["max_grad_norm"])
    model.eval()
    with torch.no_grad():
        logits = [model(x)[0] for x, _ in val]
    return validation_loss(logits, val)


def training_chunk(first: int, last: int, train: list, optimizer_state: dict | None) -> list[dict]:
    """Calls that run steps first..last-1 of the schedule with your AdamW, cosine_schedule and train_step."""
    calls = [{"fn": "parameters", "module": HARNESS, "args": [obj("self")], "store": "params"},
             {"fn": "AdamW", "module": "training_loop", "args": [obj("params")],
              "kwargs": {"lr": TRAIN["schedule"]["max_lr"], **TRAIN["adamw"]}, "store": "opt"}]
    if optimizer_state is not None:
        calls.append({"fn": "load_optimizer_state", "module": HARNESS, "args": [obj("opt"), optimizer_state],
                      "discard": True})
    for step in range(first, last):
        calls += [{"fn": "cosine_schedule", "module": "training_loop", "args": [step], "kwargs": TRAIN["schedule"],
                   "store": "lr"},
                  {"fn": "set_group", "module": HARNESS, "args": [obj("opt"), 0, {"lr": obj("lr")}], "discard": True},
                  {"fn": "train_step", "module": "training_loop", "args": [obj("self"), [train[step]], obj("opt")],
                   "kwargs": {"max_grad_norm": TRAIN["max_grad_norm"]}, "discard": True}]
    return calls + [{"fn": "self.state_dict"}, {"fn": "optimizer_state", "module": HARNESS, "args": [obj("opt")]}]


@pytest.mark.points(3)
@pytest.mark.task("training")
def test_short_training_run_matches_reference(student, reference):
    """Your GPT, trained 200 steps on Macbeth with your AdamW, cosine_schedule and train_step from the reference's
    initial weights, reaches the reference run's validation loss (within a small margin)."""
    from graders.plugin import load_reference

    config, train, val = training_setup()
    initial = {k: v.detach().clone() for k, v in initial_model(reference).state_dict().items()}
    state, optimizer_state = initial, None
    # Fifty steps per request: each stays well inside the worker's per-call time limit.
    for first in range(0, TRAIN["steps"], TRAIN["chunk"]):
        result = build(student, config, state=state, dtype=torch.float32, train=True,
                       calls=training_chunk(first, first + TRAIN["chunk"], train, optimizer_state))
        state, optimizer_state = result.outputs[-2], result.outputs[-1]
    calls = [{"fn": "self.forward", "args": [x]} for x, _ in val]
    outputs = build(student, config, state=state, dtype=torch.float32, calls=calls).outputs
    shape = (TRAIN["batch_size"], TRAIN["block_size"], config["vocab_size"])
    logits = [logits_of(o, what="forward on a validation batch", shape=shape) for o in outputs]
    for z in logits:
        checks.assert_finite(z, what="validation logits after training")
    got = validation_loss(logits, val)
    # The reference's own 200 steps only now: a run that failed above costs no reference run.
    expected = reference_loss(reference, load_reference("training_loop"))
    if got > expected + tolerances.TRAINING_MARGIN.atol:
        checks.fail(f"after {TRAIN['steps']} steps your validation loss is {got:.4f}, more than "
                    f"{tolerances.TRAINING_MARGIN.atol} above what this run reaches ({tolerances.TRAINING_MARGIN.reason})"
                    f"; initial loss ln({config['vocab_size']}) = {math.log(config['vocab_size']):.2f}\n  see: "
                    "train_step with the GPT's (logits, loss) output; AdamW with decoupled weight decay; "
                    "cosine_schedule's warm-up")
