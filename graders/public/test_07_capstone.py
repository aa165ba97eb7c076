"""Chapter 07 public tests: properties of your GPT you can check yourself, with expected values.

These run without the reference solution: they compare your model with itself (a future token
never changes earlier logits, the cached generation equals recomputing from scratch, the fused
path equals the plain one) and with formulas (the initial loss, parameter counts, the batch
sampler's rule). Your instructor's hidden tests check much more: your GPT loaded with the
reference's weights over every position scheme, norm, feed-forward network and head layout,
sampling with a shared generator, the initialization's statistics, and a short training run on
Shakespeare with your chapter 06 loop.
"""

from __future__ import annotations

import math

import pytest
import torch

from graders import checks, strategies, tolerances
from graders.tolerances import DROPOUT_P
from graders.submission import obj

TASKS = ("GPT", "generate", "fused", "data")
SECTIONS = {"GPT": "gpt", "generate": "generate", "fused": "fused-attention", "data": "data"}

SMALL = {"vocab_size": 11, "block_size": 6, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "d_model": 16, "d_ff": 24}


def build(student, config: dict, *, calls: list, state: dict | None = None, dtype=torch.float64, objects=None,
          **kwargs):
    """`GPT(GPTConfig(**config))` in the worker, `state` loaded, then `calls`."""
    return student.module("GPT", {"config": obj("config")}, objects={"config": {"cls": "GPTConfig", "init": config}}
                          | (objects or {}), state_dict=state, dtype=dtype, calls=calls, **kwargs)


def random_weights(student, config: dict, seed: int) -> dict:
    """Random weights (strategies.gpt_weights) for the parameters your GPT lists."""
    shapes = build(student, config, calls=[], parameter_shapes=True).parameter_shapes
    return strategies.gpt_weights(shapes, seed=seed)


def expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The contract's parameter names and shapes (each tensor once), for a config of this file."""
    v, d, f, h = config["vocab_size"], config["d_model"], config["d_ff"], config["n_head"]
    kv = (config.get("n_kv_head") or h) * (d // h)
    shapes = {"embedding.weight": (v, d), "norm.weight": (d,)}
    for i in range(config["n_layer"]):
        p = f"blocks.{i}."
        shapes |= {p + "attn_norm.weight": (d,), p + "ffn_norm.weight": (d,), p + "attn.q_proj.weight": (d, d),
                   p + "attn.k_proj.weight": (kv, d), p + "attn.v_proj.weight": (kv, d),
                   p + "attn.out_proj.weight": (d, d), p + "ffn.w1.weight": (f, d), p + "ffn.w3.weight": (f, d),
                   p + "ffn.w2.weight": (d, f)}
    if not config.get("tie_embeddings", True):
        shapes["lm_head.weight"] = (v, d)
    if config.get("pos") == "learned":
        shapes["positions.embedding.weight"] = (config["block_size"], d)
    return shapes


# --- the model ----------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@pytest.mark.parametrize("bad", [{"pos": "absolute"}, {"norm": "batchnorm"}, {"ffn": "relu"}, {"n_head": 3},
                                 {"n_kv_head": 3}, {"dropout": 1.0}, {"block_size": 0}])
def test_config_rejects_bad_arguments(student, bad):
    """GPTConfig raises ValueError for an unknown pos/norm/ffn, heads that do not divide, dropout 1, block_size 0."""
    checks.expect_value_error(lambda: student.run(objects={"c": {"cls": "GPTConfig", "init": SMALL | bad}}, calls=[]),
                              what=f"GPTConfig(**{SMALL | bad})")
    checks.expect_value_error(lambda: student.run(objects={"c": {"cls": "GPTConfig", "init": SMALL}}, calls=[]),
                              what=f"GPTConfig(**{SMALL})", valid=True)


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@pytest.mark.parametrize("pos", ["learned", "alibi"])
def test_config_accepts_odd_widths_without_rope(student, pos):
    """An odd head_dim is refused only with rope, an odd d_model only with sinusoidal positions: GPTConfig(d_model=15,
    n_head=5) is valid with learned positions or ALiBi."""
    config = SMALL | {"d_model": 15, "n_head": 5, "n_kv_head": 5, "pos": pos}
    checks.expect_value_error(lambda: student.run(objects={"c": {"cls": "GPTConfig", "init": config}}, calls=[]),
                              what=f"GPTConfig(**{config})", valid=True)


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_position_table_not_in_state_dict(student):
    """GPT(pos="sinusoidal") keeps its position table out of the state_dict: its keys are those of GPT(pos="alibi"),
    which stores nothing for positions."""
    keys = {pos: set(build(student, SMALL | {"pos": pos}, calls=[], state_dict_shapes=True).state_dict_shapes)
            for pos in ("sinusoidal", "alibi")}
    extra = sorted(keys["sinusoidal"] - keys["alibi"])
    if extra:
        checks.fail(f"GPT(pos='sinusoidal').state_dict() holds {extra}, which GPT(pos='alibi') does not: register the "
                    "sinusoidal table with persistent=False (it is computed from the config, never trained or saved)")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_logits_shape_and_initial_loss(student):
    """A fresh GPT(V=50, d_model=64) gives logits (B, T, V) and, on random tokens, a loss near ln(V) = 3.91."""
    config = {"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_head": 4, "d_model": 64}
    g = strategies.generator(1)
    idx, targets = torch.randint(0, 50, (4, 16), generator=g), torch.randint(0, 50, (4, 16), generator=g)
    result = build(student, config, dtype=torch.float32, calls=[{"fn": "self.forward", "args": [idx, targets]}])
    out = result.output
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        checks.fail(f"forward(idx, targets) should return (logits, loss), got {type(out).__name__}")
    checks.check_tensor(out[0], what="logits", shape=(4, 16, 50))
    loss = checks.check_tensor(out[1], what="loss", shape=())
    checks.assert_close(loss, torch.tensor(math.log(50)), tolerances.INITIAL_LOSS, what="initial loss", reveal=True,
                        hint="initialize every Linear and Embedding weight from N(0, 0.02): near-zero logits, a "
                             "near-uniform prediction")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@pytest.mark.parametrize("pos", strategies.GPT_POSITIONS)
def test_logits_golden(student, snapshot, pos):
    """GPT(V=11, d_model=16, 2 blocks, 4 query / 2 kv heads) with fixed weights on fixed tokens matches the golden
    logits, for each position scheme (learned with untied embeddings)."""
    config = SMALL | {"pos": pos, "tie_embeddings": pos != "learned"}
    weights = strategies.gpt_weights(expected_shapes(config), seed=20, dtype=torch.float32)
    t = snapshot.inputs(idx=torch.randint(0, 11, (2, 6), generator=strategies.generator(21)), **weights)
    idx = t.pop("idx")
    result = build(student, config, state=t, dtype=torch.float32, calls=[{"fn": "self.forward", "args": [idx]}])
    snapshot.assert_match({"logits": result.output[0]}, {torch.float32: tolerances.ARCH_FLOAT32}, hint=(
        "pre-norm blocks, a final norm, lm_head; positions as config.pos says; the causal mask in every layer"))


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_forward_without_targets_and_too_long(student):
    """forward(idx) returns (logits, None); a sequence longer than block_size raises ValueError."""
    idx = torch.randint(0, 11, (2, 6), generator=strategies.generator(2))
    result = build(student, SMALL, calls=[{"fn": "self.forward", "args": [idx]}])
    if not isinstance(result.output, (tuple, list)) or len(result.output) != 2 or result.output[1] is not None:
        checks.fail("forward(idx) without targets should return (logits, None)")
    too_long = torch.zeros(1, 7, dtype=torch.long)
    checks.expect_value_error(lambda: build(student, SMALL, calls=[{"fn": "self.forward", "args": [too_long]}]),
                              what="forward on 7 tokens with block_size=6")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@pytest.mark.parametrize("pos", strategies.GPT_POSITIONS)
def test_future_tokens_never_change_earlier_logits(student, pos):
    """Changing the tokens from position 3 on leaves the logits at positions 0..2 unchanged (causality)."""
    config = SMALL | {"pos": pos}
    state = random_weights(student, config, seed=3)
    idx = torch.randint(0, 11, (2, 6), generator=strategies.generator(4))
    changed = idx.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 11
    result = build(student, config, state=state, calls=[{"fn": "self.forward", "args": [idx]},
                                                       {"fn": "self.forward", "args": [changed]}])
    first, second = (checks.check_tensor(o[0], what="logits", shape=(2, 6, 11)) for o in result.outputs)
    checks.assert_close(second[:, :3], first[:, :3], tolerances.SELF_CONSISTENCY[torch.float64],
                        what=f"logits at positions 0..2 after changing tokens 3..5 (pos={pos!r})",
                        hint="every attention layer needs the causal mask: query i may attend keys j <= i")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@pytest.mark.parametrize("tie", [True, False])
def test_parameter_names_and_tied_embeddings(student, tie):
    """The parameters carry the contract's names; with tie_embeddings, lm_head.weight IS embedding.weight."""
    config = SMALL | {"tie_embeddings": tie, "pos": "learned"}
    result = build(student, config, calls=[], parameter_shapes=True, state_dict_shapes=True)
    got = {k: tuple(v) for k, v in result.parameter_shapes.items()}
    expected = expected_shapes(config)
    if got != expected:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        checks.fail(f"parameters (each tensor once) differ from the contract's: missing {missing}, unexpected {extra}, "
                    f"wrong shapes {[(k, got[k], expected[k]) for k in wrong]}"
                    + ("; with tie_embeddings=True, lm_head.weight must be the same Parameter as embedding.weight "
                       "(assign the embedding's Parameter itself to lm_head.weight)" if tie else ""))
    if "lm_head.weight" not in result.state_dict_shapes:
        checks.fail("the state_dict has no 'lm_head.weight': keep lm_head an nn.Linear(d_model, vocab_size, bias=False)")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
@pytest.mark.parametrize("tie", [True, False])
def test_parameter_count_and_flops(student, tie):
    """num_parameters(False) counts each tensor once; num_parameters() drops the positions (and an untied
    embedding); flops_per_token() = 6 N + 12 n_layer d_model block_size."""
    config = SMALL | {"tie_embeddings": tie, "pos": "learned"}
    result = build(student, config, calls=[{"fn": "self.num_parameters", "args": [False]},
                                           {"fn": "self.num_parameters"}, {"fn": "self.flops_per_token"}])
    shapes = expected_shapes(config)
    total = sum(math.prod(s) for s in shapes.values())
    non_embedding = total - math.prod(shapes["positions.embedding.weight"]) - (0 if tie else 11 * 16)
    flops = 6 * non_embedding + 12 * 2 * 16 * 6
    for got, want, what in zip(result.outputs, (total, non_embedding, flops),
                               ("num_parameters(non_embedding=False)", "num_parameters()", "flops_per_token()")):
        if got != want:
            checks.fail(f"{what} with tie_embeddings={tie}: you returned {got}, expected {want}")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_loss_is_cross_entropy_of_the_logits(student):
    """forward(idx, targets)'s loss is the mean of -log softmax(logits)[target] over every position, unshifted."""
    state = random_weights(student, SMALL, seed=14)
    g = strategies.generator(15)
    idx, targets = torch.randint(0, 11, (2, 6), generator=g), torch.randint(0, 11, (2, 6), generator=g)
    logits, loss = build(student, SMALL, state=state, calls=[{"fn": "self.forward", "args": [idx, targets]}]).output
    logits = checks.check_tensor(logits, what="logits", shape=(2, 6, 11))
    expected = -logits.log_softmax(dim=-1).gather(-1, targets[..., None]).mean()
    checks.assert_close(checks.check_tensor(loss, what="loss", shape=()), expected,
                        tolerances.SELF_CONSISTENCY[torch.float64],
                        what="the loss against the cross-entropy of the returned logits", reveal=True,
                        hint="targets are already the next tokens (get_batch shifts them): do not shift again")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_initialization_scales_and_zero_biases(student):
    """A fresh GPT(bias=True, 4 layers): biases 0, attn.out_proj and ffn.w2 std 0.02 / sqrt(8) = 0.0071, q_proj 0.02."""
    config = {"vocab_size": 64, "block_size": 32, "n_layer": 4, "n_head": 4, "d_model": 64, "d_ff": 128, "bias": True}
    state = build(student, config, dtype=torch.float32, calls=[{"fn": "self.state_dict"}]).output
    if not isinstance(state, dict):
        checks.fail("state_dict() did not return a dict")
    biases = {name: float(v.abs().max()) for name, v in state.items() if name.endswith(".bias") and v.abs().max() > 0}
    if biases:
        checks.fail(f"biases should start at 0; these do not: {sorted(biases)[:4]}")
    # 4096 to 8192 draws per matrix: a sample std within 10 % of the true one is 5 standard errors.
    for name, want in {"blocks.0.attn.q_proj.weight": 0.02, "blocks.0.attn.out_proj.weight": 0.02 / math.sqrt(8),
                       "blocks.3.ffn.w2.weight": 0.02 / math.sqrt(8)}.items():
        std = float(checks.check_tensor(state.get(name), what=name).double().std())
        if abs(std - want) > 0.1 * want:
            checks.fail(f"{name} starts with std {std:.4f}, expected {want:.4f}: normal(0, 0.02) for every weight, "
                        "0.02 / sqrt(2 * n_layer) for attn.out_proj and the FFN's down projection")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_gpt_dropout_acts_in_training_mode_only(student):
    """GPT(dropout=0.25) in eval mode gives the dropout-free logits; in training mode it does not."""
    state = random_weights(student, SMALL, seed=24)
    idx = torch.randint(0, 11, (2, 6), generator=strategies.generator(25))
    call = {"fn": "self.forward", "args": [idx]}
    free = build(student, SMALL, state=state, calls=[call]).output[0]
    evaluated = build(student, SMALL | {"dropout": 0.25}, state=state, calls=[call]).output[0]
    checks.assert_close(checks.check_tensor(evaluated, what="logits in eval mode", shape=(2, 6, 11)), free,
                        tolerances.SELF_CONSISTENCY[torch.float64], what="GPT(dropout=0.25) in eval mode", reveal=True,
                        hint="every dropout acts only in training mode (nn.Dropout follows self.training)")
    trained = build(student, SMALL | {"dropout": 0.25}, state=state, calls=[call], train=True).output[0]
    if torch.allclose(checks.check_tensor(trained, what="logits in training mode", shape=(2, 6, 11)), free):
        checks.fail("GPT(dropout=0.25) in training mode gives the dropout-free logits: apply config.dropout")


def dropout_hooks(student) -> dict[str, list]:
    """GPT(SMALL, dropout=0.25) run on fixed tokens in training mode, then in eval mode, with forward hooks on the
    first block, its attention, its ffn_norm, its FFN and the FFN's down projection w2."""
    state = random_weights(student, SMALL, seed=24)
    idx = torch.randint(0, 11, (2, 6), generator=strategies.generator(25))
    names = ["blocks.0", "blocks.0.attn", "blocks.0.ffn_norm", "blocks.0.ffn", "blocks.0.ffn.w2"]
    seen = build(student, SMALL | {"dropout": DROPOUT_P}, state=state, train=True, attrs=("seen",), calls=[
        {"fn": "watch", "module": "$harness", "args": [obj("self"), names], "store": "seen"},
        {"fn": "self.forward", "args": [idx]}, {"fn": "self.eval", "discard": True},
        {"fn": "self.forward", "args": [idx]}]).attrs["seen"]
    for name in names:
        if len(seen[name]) != 2:
            checks.fail(f"{name} ran {len(seen[name])} times in two forward passes, once expected in each (with "
                        "fused_attention=False attention runs through attn.forward)")
    for name in ("blocks.0", "blocks.0.ffn_norm"):
        if not all(record["args"] for record in seen[name]):
            checks.fail(f"{name} should be called with the stream as its first positional argument")
    return seen


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_embeddings_are_dropped_before_the_first_block(student):
    """GPT(dropout=0.25): the first block's input in training mode is, entry by entry, 0 or its eval-mode value
    / 0.75 (read with a forward hook on blocks.0)."""
    seen = dropout_hooks(student)
    trained, evaluated = (record["args"][0] for record in seen["blocks.0"])
    checks.assert_dropped_or_scaled(trained, evaluated, DROPOUT_P, tolerances.ARCH_LAYER, reveal=True,
                                    what="the input of blocks.0 in training mode, against yours in eval mode",
                                    hint="x = dropout(embedding(idx) (+ positions)) before the first block")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_block_drops_attention_output_and_ffn_drops_its_own(student):
    """GPT(dropout=0.25), training mode, hooks on blocks.0: the attention residual adds 0 or attn's output / 0.75
    entry by entry; the FFN's output is 0 or w2's output / 0.75; the FFN residual adds the FFN's output as it is."""
    seen = dropout_hooks(student)
    x = seen["blocks.0"][0]["args"][0]
    mid = seen["blocks.0.ffn_norm"][0]["args"][0]
    attended = seen["blocks.0.attn"][0]["output"]
    attended = attended[0] if isinstance(attended, list) else attended  # MultiHeadAttention returns (out, weights)
    checks.assert_dropped_or_scaled(mid - x, attended, DROPOUT_P, tolerances.ARCH_LAYER, reveal=True,
                                    what="what the attention residual adds to the stream in training mode "
                                         "(ffn_norm's input minus the block's input)",
                                    hint="x = x + dropout(attn(attn_norm(x))[0]): the attention's output is dropped, "
                                         "never x or the sum")
    ffn_out = seen["blocks.0.ffn"][0]["output"]
    checks.assert_dropped_or_scaled(ffn_out, seen["blocks.0.ffn.w2"][0]["output"], DROPOUT_P,
                                    tolerances.ARCH_LAYER, reveal=True,
                                    what="the FFN's output in training mode, against its down projection w2's",
                                    hint="build_ffn passes dropout=config.dropout: the FFN drops its output after w2")
    checks.assert_close(seen["blocks.0"][0]["output"] - mid, ffn_out, tolerances.ARCH_LAYER, reveal=True,
                        what="what the FFN residual adds to the stream in training mode, against the FFN's output",
                        hint="x + ffn(ffn_norm(x)): the FFN drops its own output, the block adds it as it is")


@pytest.mark.points(1)
@pytest.mark.task("GPT")
def test_attention_weights_are_dropped_in_training(student):
    """GPT(dropout=0.25) in training mode: blocks.0.attn(x, need_weights=True) on (2, 6, 16) ones returns weights of
    which some are exactly 0 (no mask is passed, so only dropout can zero a softmax weight)."""
    state = random_weights(student, SMALL, seed=24)
    x = torch.ones(2, 6, 16, dtype=torch.float64)
    attention = build(student, SMALL | {"dropout": DROPOUT_P}, state=state, train=True, calls=[
        {"fn": "self.blocks.0.attn.forward", "args": [x], "kwargs": {"need_weights": True}}]).output
    weights = attention[1] if isinstance(attention, (tuple, list)) and len(attention) == 2 else None
    weights = checks.check_tensor(weights, what="blocks.0.attn(x, need_weights=True) weights in training mode",
                                  shape=(2, 4, 6, 6))
    if not bool((weights == 0).any()):
        checks.fail(f"blocks.0.attn with dropout={DROPOUT_P} in training mode dropped none of its {weights.numel()} "
                    "attention weights: give attn's MultiHeadAttention the config's dropout rate")


# --- generation ---------------------------------------------------------------------------------


def recomputation_calls(seq: torch.Tensor, start: int, block_size: int) -> list[dict]:
    """forward on the last block_size tokens before each generated position."""
    return [{"fn": "self.forward", "args": [seq[:, max(0, t - block_size):t]]} for t in range(start, seq.shape[1])]


@pytest.mark.points(1)
@pytest.mark.task("generate")
@pytest.mark.parametrize("prompt_len, new", [(2, 3), (2, 9), (8, 3)])
def test_greedy_generate_equals_recomputation(student, prompt_len, new):
    """Greedy generate (temperature=0) picks, at every step, the argmax of forward on the last block_size
    tokens (block_size=6: the longer cases crop the context)."""
    state = random_weights(student, SMALL, seed=5)
    prompt = torch.randint(0, 11, (2, prompt_len), generator=strategies.generator(6))
    result = build(student, SMALL, state=state,
                   calls=[{"fn": "self.generate", "args": [prompt, new], "kwargs": {"temperature": 0.0}}])
    seq = checks.check_tensor(result.output, what="generate(...)", shape=(2, prompt_len + new))
    checks.assert_equal(seq[:, :prompt_len], prompt, what="the prompt at the start of generate's output", reveal=True)
    check = build(student, SMALL, state=state, calls=recomputation_calls(seq, prompt_len, 6))
    for step, out in enumerate(check.outputs):
        logits = out[0][:, -1]  # (B, V)
        chosen = logits.gather(-1, seq[:, prompt_len + step, None]).squeeze(-1)  # (B,)
        checks.assert_close(chosen, logits.max(dim=-1).values, tolerances.SELF_CONSISTENCY[torch.float64],
                            what=f"logit of the token generated at step {step + 1} vs the largest logit "
                                 "(forward on the last block_size tokens)", reveal=True,
                            hint="feed each new token through the KV caches at the next position; once the "
                                 "sequence would pass block_size, crop to the last block_size tokens and recompute")


def cached_and_full(student, config: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of forward on 6 tokens, and of forward through one KVCache per block: 3 tokens, then one at a time."""
    state = random_weights(student, config, seed=seed)
    idx = torch.randint(0, 11, (2, 6), generator=strategies.generator(seed + 1))
    caches = [obj(f"cache{i}") for i in range(config["n_layer"])]
    objects = {f"cache{i}": {"cls": "KVCache", "module": "multi_head_attention"} for i in range(config["n_layer"])}
    calls = [{"fn": "self.forward", "args": [idx]}, {"fn": "self.forward", "args": [idx[:, :3]],
                                                     "kwargs": {"kv_caches": caches}}]
    calls += [{"fn": "self.forward", "args": [idx[:, t:t + 1]], "kwargs": {"kv_caches": caches}} for t in range(3, 6)]
    outputs = build(student, config, state=state, objects=objects, calls=calls).outputs
    full = checks.check_tensor(outputs[0][0], what="logits", shape=(2, 6, 11))
    pieces = [checks.check_tensor(o[0], what="logits through the caches", shape=(2, n, 11))
              for o, n in zip(outputs[1:], (3, 1, 1, 1))]
    return torch.cat(pieces, dim=1), full


@pytest.mark.points(1)
@pytest.mark.task("generate")
@pytest.mark.parametrize("pos", strategies.GPT_POSITIONS)
def test_cached_decoding_equals_one_full_pass(student, pos):
    """forward through kv_caches, 3 tokens then one at a time, gives the logits of one forward on all 6 tokens."""
    cached, full = cached_and_full(student, SMALL | {"pos": pos}, seed=16)
    checks.assert_close(cached, full, tolerances.gpt(6), what=f"logits decoded through the caches (pos={pos!r})",
                        reveal=True, hint="new tokens sit at positions L .. L+T-1 with L = kv_caches[0].length: "
                        "their position rows, their rotation, their causal mask and ALiBi's bias all start at L")


def greedy_and_sampled(student, sampling: dict, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """generate(prompt, 4) on (3, 2) prompt tokens with random weights: greedily (temperature=0), then sampled
    with the keyword arguments `sampling` and a seeded generator; the greedy tokens checked for shape."""
    state = random_weights(student, SMALL, seed=seed)
    prompt = torch.randint(0, 11, (3, 2), generator=strategies.generator(seed + 1))
    result = build(student, SMALL, state=state, objects={"gen": {"cls": "generator", "module": "$harness",
                                                                 "init": {"seed": 0}}},
                   calls=[{"fn": "self.generate", "args": [prompt, 4], "kwargs": {"temperature": 0.0}},
                          {"fn": "self.generate", "args": [prompt, 4], "kwargs": sampling | {"generator": obj("gen")}}])
    greedy = checks.check_tensor(result.outputs[0], what="generate(temperature=0)", shape=(3, 6))
    return greedy, result.outputs[1]


@pytest.mark.points(1)
@pytest.mark.task("generate")
def test_low_temperature_sampling_is_greedy(student):
    """Sampling at temperature 1e-3 divides the logits by it before the softmax: it picks the largest logit."""
    greedy, sampled = greedy_and_sampled(student, {"temperature": 1e-3}, seed=18)
    checks.assert_equal(sampled, greedy, what="generate(temperature=1e-3) vs generate(temperature=0)",
                        reveal=True, hint="divide the logits (not the probabilities) by the temperature")


@pytest.mark.points(1)
@pytest.mark.task("generate")
@pytest.mark.parametrize("bad", [{"temperature": -1.0}, {"top_k": 0}])
def test_sampling_refuses_bad_arguments(student, bad):
    """sample_next_token raises ValueError for a negative temperature or top_k < 1."""
    logits = torch.zeros(2, 5)
    checks.expect_value_error(lambda: student.call("sample_next_token", logits, **bad),
                              what=f"sample_next_token(logits, **{bad})")


@pytest.mark.points(1)
@pytest.mark.task("generate")
def test_top_k_one_is_greedy(student):
    """Sampling with top_k=1 at temperature 1 always picks the largest logit: it equals temperature=0."""
    greedy, sampled = greedy_and_sampled(student, {"temperature": 1.0, "top_k": 1}, seed=7)
    checks.assert_equal(sampled, greedy, what="generate(top_k=1) vs generate(temperature=0)", reveal=True,
                        hint="top_k keeps the k largest logits and sets the others to -inf before the softmax")


@pytest.mark.points(1)
@pytest.mark.task("generate")
def test_same_generator_same_tokens(student):
    """Two sampled generations from generators with the same seed are identical (all randomness from `generator`)."""
    state = random_weights(student, SMALL, seed=9)
    prompt = torch.randint(0, 11, (2, 3), generator=strategies.generator(10))
    gens = {name: {"cls": "generator", "module": "$harness", "init": {"seed": 11}} for name in ("g1", "g2")}
    calls = [{"fn": "self.generate", "args": [prompt, 5], "kwargs": {"generator": obj(name)}} for name in ("g1", "g2")]
    result = build(student, SMALL, state=state, objects=gens, calls=calls)
    first = checks.check_tensor(result.outputs[0], what="generate(...)", shape=(2, 8))
    checks.assert_equal(result.outputs[1], first, what="a second generation with an equally seeded generator",
                        reveal=True, hint="draw with torch.multinomial(probs, 1, generator=generator)")


# --- the fused path -----------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("fused")
@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_fused_equals_unfused(student, pos):
    """With the same weights, fused_attention=True gives the logits and the greedy tokens of the plain path."""
    config = SMALL | {"pos": pos}
    state = random_weights(student, config, seed=12)
    idx = torch.randint(0, 11, (2, 6), generator=strategies.generator(13))
    calls = [{"fn": "self.forward", "args": [idx]},
             {"fn": "self.generate", "args": [idx[:, :2], 6], "kwargs": {"temperature": 0.0}}]
    plain = build(student, config, state=state, calls=calls)
    fused = build(student, config | {"fused_attention": True}, state=state, calls=calls)
    checks.assert_close(fused.outputs[0][0], plain.outputs[0][0], tolerances.gpt(6), what=f"fused logits (pos={pos!r})",
                        reveal=True, hint="the fused path uses the same q/k/v/out projections, positions and mask")
    checks.assert_equal(fused.outputs[1], plain.outputs[1], what="greedy tokens with fused_attention=True", reveal=True,
                        hint="with a KV cache, is_causal aligns the mask to the top left: pass causal_mask(T, S)")


@pytest.mark.points(1)
@pytest.mark.task("fused")
@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_fused_cached_decoding_equals_one_full_pass(student, pos):
    """With fused_attention=True, forward through kv_caches gives the full pass's logits."""
    cached, full = cached_and_full(student, SMALL | {"pos": pos, "fused_attention": True}, seed=22)
    checks.assert_close(cached, full, tolerances.gpt(6), what=f"fused logits decoded through the caches (pos={pos!r})",
                        reveal=True, hint="in the fused path too, rotate the new queries and keys at positions L, L+1, "
                        "... with L = the cache's length")


@pytest.mark.points(1)
@pytest.mark.task("fused")
def test_fused_attention_drops_its_weights_in_training_only(student):
    """GPT(dropout=0.25, fused_attention=True) with blocks.0's q_proj zeroed, so each query attends uniformly to its
    t + 1 keys: in eval mode head h at query t returns the mean of its t + 1 values; in training mode the sum of the
    values of the weights it kept over (t + 1)(1 - p), about a share p dropped (hooks on v_proj and out_proj)."""
    state = random_weights(student, SMALL, seed=26)
    state["blocks.0.attn.q_proj.weight"] = torch.zeros_like(state["blocks.0.attn.q_proj.weight"])
    idx = torch.randint(0, 11, (4, 6), generator=strategies.generator(27))
    names = ["blocks.0.attn.v_proj", "blocks.0.attn.out_proj"]
    seen = build(student, SMALL | {"dropout": DROPOUT_P, "fused_attention": True}, state=state, train=True,
                 attrs=("seen",), calls=[
                     {"fn": "watch", "module": "$harness", "args": [obj("self"), names], "store": "seen"},
                     {"fn": "self.forward", "args": [idx]}, {"fn": "self.eval", "discard": True},
                     {"fn": "self.forward", "args": [idx]}]).attrs["seen"]
    for name in names:
        if len(seen[name]) != 2 or not all(record["args"] for record in seen[name]):
            checks.fail(f"{name} ran {len(seen[name])} times in two forward passes with fused_attention=True; "
                        "fused_attention projects with attn's own v_proj and out_proj, once per pass")
    b, t, heads, kv_heads = 4, 6, SMALL["n_head"], SMALL["n_kv_head"]
    dh = SMALL["d_model"] // heads
    values = [checks.check_tensor(record["output"], what="v_proj's output", shape=(b, t, kv_heads * dh))
              .reshape(b, t, kv_heads, dh).repeat_interleave(heads // kv_heads, dim=2)
              for record in seen["blocks.0.attn.v_proj"]]  # (B, T, H, Dh): query head h reads kv head h // R
    merged = [checks.check_tensor(record["args"][0], what="out_proj's input (the merged heads)", shape=(b, t, 16))
              .reshape(b, t, heads, dh) for record in seen["blocks.0.attn.out_proj"]]
    keys = torch.arange(1, t + 1, dtype=torch.float64)[None, :, None, None]  # query t sees t + 1 keys
    checks.assert_close(merged[1], values[1].cumsum(dim=1) / keys, tolerances.ARCH_LAYER, reveal=True,
                        what="eval mode: each head's output against the mean of its causal values",
                        hint="dropout_p=config.dropout only in training mode: dropout_p = 0.0 when not attn.training")
    tol, dropped, n = tolerances.ARCH_LAYER, 0, 0
    undropped = values[0].cumsum(dim=1) / keys
    if ((merged[0] - undropped).abs() <= tol.atol + tol.rtol * undropped.abs()).all():
        checks.fail("training mode: every head's output is the plain mean of its values, as in eval mode: no "
                    f"attention weight was dropped with dropout={DROPOUT_P}\n  see: pass dropout_p=config.dropout "
                    "(when attn.training) to F.scaled_dot_product_attention")
    for q in range(t):
        subsets = torch.tensor([[(k >> s) & 1 for s in range(q + 1)] for k in range(2 ** (q + 1))],
                               dtype=torch.float64)  # (K, q + 1): every choice of kept keys
        sums = torch.einsum("ks,bshd->bkhd", subsets, values[0][:, :q + 1])  # (B, K, H, Dh)
        target = merged[0][:, q] * (q + 1) * (1 - DROPOUT_P)  # (B, H, Dh): the kept values' sum, if dropout is right
        allowed = tol.atol * values[0].abs().amax().clamp_min(1.0) * (q + 1) + tol.rtol * target.abs()[:, None]
        error = ((sums - target[:, None]).abs() - allowed).amax(dim=-1)  # (B, K, H): <= 0 where that choice fits
        best = error.argmin(dim=1)  # (B, H)
        if (error.amin(dim=1) > 0).any():
            bad = tuple(int(i) for i in (error.amin(dim=1) > 0).nonzero()[0])
            checks.fail(f"training mode: head {bad[1]} of sequence {bad[0]} at query {q} returned "
                        f"{[round(v, 4) for v in merged[0][bad[0], q, bad[1]].tolist()]}, which is no choice of its "
                        f"{q + 1} uniform weights kept and scaled by 1 / (1 - p) times the values\n  see: pass "
                        "dropout_p to F.scaled_dot_product_attention, which drops the attention weights; no "
                        "F.dropout on its output")
        dropped += int((q + 1 - subsets.sum(dim=1)[best]).sum())
        n += (q + 1) * b * heads
    if abs(dropped - n * DROPOUT_P) > tolerances.DROPOUT_SIGMAS * (n * DROPOUT_P * (1 - DROPOUT_P)) ** 0.5 + 1:
        checks.fail(f"training mode: {dropped} of {n} attention weights were dropped with dropout={DROPOUT_P}, "
                    f"about {n * DROPOUT_P:.0f} expected\n  see: dropout_p is config.dropout in training mode, 0 in "
                    "eval mode")


# --- data ---------------------------------------------------------------------------------------

TOKENIZER = {"tok": {"cls": "CharTokenizer.from_text", "module": "train_gpt", "init": {"text": "hello world"}}}


@pytest.mark.points(1)
@pytest.mark.task("data")
def test_tokenizer_example(student):
    """CharTokenizer.from_text("hello world"): 8 sorted characters ' dehlorw'; "hold" <-> [3, 5, 4, 1]."""
    result = student.run(module="train_gpt", objects=TOKENIZER, attrs=["tok.vocab_size"],
                         calls=[{"fn": "tok.encode", "args": ["hold"]}, {"fn": "tok.decode", "args": [[3, 5, 4, 1]]}])
    if result.attrs["tok.vocab_size"] != 8:
        checks.fail(f"vocab_size of 'hello world' is {result.attrs['tok.vocab_size']}, expected 8")
    if list(result.outputs[0]) != [3, 5, 4, 1]:
        checks.fail(f"encode('hold') returned {result.outputs[0]}, expected [3, 5, 4, 1] (ids index ' dehlorw')")
    if result.outputs[1] != "hold":
        checks.fail(f"decode([3, 5, 4, 1]) returned {result.outputs[1]!r}, expected 'hold'")


@pytest.mark.points(1)
@pytest.mark.task("data")
def test_tokenizer_rejects_unknown_character(student):
    """encode raises ValueError for a character outside the vocabulary, naming it ('!') and its position (5)."""
    what = "CharTokenizer.from_text('hello world').encode('hello!')"
    call = lambda: student.run(module="train_gpt", objects=TOKENIZER,  # noqa: E731
                               calls=[{"fn": "tok.encode", "args": ["hello!"]}])
    checks.expect_value_error(call, what=what)
    detail = checks.raised(call).detail
    if "'!'" not in detail or "5" not in detail:
        checks.fail(f"{what} raised ValueError({detail!r}); the message should name the character '!' (its repr) "
                    "and its position 5")


@pytest.mark.points(1)
@pytest.mark.task("data")
def test_get_batch_example(student):
    """get_batch(arange(100), 4, 8, generator) gives windows starting at torch.randint(0, 92, (4,), generator)."""
    data = torch.arange(100)
    result = student.run(module="train_gpt", objects={"gen": {"cls": "generator", "module": "$harness",
                                                              "init": {"seed": 0}}},
                         calls=[{"fn": "get_batch", "args": [data, 4, 8, obj("gen")]}])
    if not isinstance(result.output, (tuple, list)) or len(result.output) != 2:
        checks.fail("get_batch should return (x, y)")
    starts = torch.randint(0, 92, (4,), generator=strategies.generator(0))
    x = data[starts[:, None] + torch.arange(8)]
    checks.assert_equal(checks.check_tensor(result.output[0], what="x", shape=(4, 8), dtype=torch.long), x,
                        what="x", reveal=True)
    checks.assert_equal(checks.check_tensor(result.output[1], what="y", shape=(4, 8), dtype=torch.long), x + 1,
                        what="y (the next token of each position)", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("data")
@pytest.mark.parametrize(("init", "calls", "what"), [
    ({"chars": "ba"}, [], "CharTokenizer('ba') (not sorted)"),
    ({"chars": "aab"}, [], "CharTokenizer('aab') (a repeat)"),
    ({"chars": "ab"}, [{"fn": "tok.decode", "args": [[0, 2]]}], "CharTokenizer('ab').decode([0, 2])")])
def test_tokenizer_refuses_bad_vocabularies_and_ids(student, init, calls, what):
    """CharTokenizer raises ValueError for an unsorted or repeating vocabulary, and decode for an id >= vocab_size."""
    tokenizer = {"tok": {"cls": "CharTokenizer", "module": "train_gpt", "init": init}}
    checks.expect_value_error(lambda: student.run(module="train_gpt", objects=tokenizer, calls=calls), what=what)


@pytest.mark.points(1)
@pytest.mark.task("data")
@pytest.mark.parametrize(("data", "block_size"), [(torch.arange(20).reshape(4, 5), 2), (torch.arange(8), 8)])
def test_get_batch_refuses_data_without_a_window(student, data, block_size):
    """get_batch raises ValueError for 2-D data, or when N <= block_size (no window with a next token fits)."""
    checks.expect_value_error(lambda: student.run(module="train_gpt",
                                                  calls=[{"fn": "get_batch", "args": [data, 2, block_size]}]),
                              what=f"get_batch(data of shape {tuple(data.shape)}, 2, block_size={block_size})")
