"""Chapter 01 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/01_transformer_architecture/` and are shown when a test fails; the weights
they use come from `graders.strategies.architecture_state`, which fills every parameter the
contract names. Your instructor's hidden tests check much more: every class against the
reference over many configurations, with padding, in float64; where each norm sits (with
forward hooks); what cross-attention reads; causality; padding invariance; dropout; the tied
output layer; the parameter counts.
"""

from __future__ import annotations

import pytest
import torch

from graders import checks, strategies, tolerances
from graders.tolerances import DROPOUT_P

TASKS = ("positions", "embeddings", "masks", "EncoderLayer", "DecoderLayer", "Transformer", "EncoderOnly",
         "DecoderOnly", "count_parameters", "transformer_parameter_count")
SECTIONS = {"positions": "embeddings", "embeddings": "embeddings", "masks": "masks", "EncoderLayer": "encoder-layer",
            "DecoderLayer": "decoder-layer", "Transformer": "encoder-decoder", "EncoderOnly": "encoder-only",
            "DecoderOnly": "decoder-only", "count_parameters": "parameter-count",
            "transformer_parameter_count": "parameter-count"}
LAYER_INIT = {"d_model": 8, "num_heads": 2, "d_ff": 12, "dropout": 0.0}
MODEL_INIT = {"vocab_size": 11, "d_model": 8, "num_heads": 2, "num_layers": 2, "d_ff": 12, "max_seq_len": 10,
              "dropout": 0.0}
GOLDEN = {torch.float32: tolerances.ARCH_FLOAT32}


def tokens(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randint(0, MODEL_INIT["vocab_size"], shape, generator=strategies.generator(seed))


@pytest.mark.points(0)
@pytest.mark.task("static")
def test_no_banned_apis(static_scan, chapter):
    """The module parses and uses none of the nn.Transformer* classes."""
    checks.static_clean(static_scan, chapter.module)


@pytest.mark.points(1)
@pytest.mark.task("positions")
def test_sinusoidal_positions_golden(student, snapshot):
    """sinusoidal_positions(6, 8) matches the golden table; the docstring's (2, 4) example holds."""
    small = checks.check_tensor(student.call("sinusoidal_positions", 2, 4), what="sinusoidal_positions(2, 4)",
                                shape=(2, 4), dtype=torch.float32)
    checks.assert_close(small, torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.841471, 0.540302, 0.0099998, 0.99995]]),
                        tolerances.Tolerance(rtol=0.0, atol=1e-6, reason="the docstring's values, to 6 digits"),
                        what="sinusoidal_positions(2, 4)", reveal=True)
    snapshot.assert_match({"table": student.call("sinusoidal_positions", 6, 8)}, GOLDEN)


@pytest.mark.points(1)
@pytest.mark.task("positions")
@pytest.mark.parametrize("d_model", [7, 0])
def test_sinusoidal_positions_refuse_an_odd_width(student, d_model):
    """sinusoidal_positions(4, d_model) raises ValueError for an odd or non-positive d_model (columns come in pairs)."""
    checks.expect_value_error(lambda: student.call("sinusoidal_positions", 4, d_model),
                              what=f"sinusoidal_positions(4, {d_model})")


@pytest.mark.points(1)
@pytest.mark.task("embeddings")
def test_embedding_starts_at_std_one_over_sqrt_d_model(student):
    """A fresh DecoderOnly(d_model=64) has embedding.weight ~ normal(0, 1/sqrt(64)): std 0.125, within 10 %."""
    init = MODEL_INIT | {"vocab_size": 512, "d_model": 64, "num_heads": 4, "num_layers": 1}
    result = student.module("DecoderOnly", init, calls=[], attrs=("self.embedding.weight",))
    weight = result.attrs["self.embedding.weight"]
    # 32768 draws: the sample std of a right initialisation is within 1 % of 0.125; N(0, 1) is 8 times off.
    std = float(checks.check_tensor(weight, what="embedding.weight", shape=(512, 64)).double().std())
    if abs(std - 0.125) > 0.0125:
        checks.fail(f"embedding.weight of DecoderOnly(d_model=64) has std {std:.4f}, expected 0.125: initialize it "
                    "normal(0, d_model ** -0.5), not nn.Embedding's default N(0, 1)")


@pytest.mark.points(1)
@pytest.mark.task("embeddings")
def test_first_layer_sees_scaled_embedding_plus_positions(student):
    """DecoderOnly's first layer receives embedding(tokens) * sqrt(d_model) + sinusoidal_positions(T, d_model)."""
    init = MODEL_INIT | {"num_layers": 1}
    state = strategies.architecture_state("DecoderOnly", init, seed=7, dtype=torch.float32)
    x = tokens((2, 5), seed=11)
    result = student.module("DecoderOnly", init, state_dict=state, attrs=("seen",), calls=[
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, ["layers.0"]], "store": "seen"},
        {"fn": "self.forward", "args": [x]}])
    seen = result.attrs["seen"]["layers.0"]
    if not seen or not seen[0]["args"]:
        checks.fail("layers.0 was not called with the embedded tokens as its first positional argument")
    d = MODEL_INIT["d_model"]
    i = torch.arange(0, d, 2, dtype=torch.float64)
    angles = torch.arange(5, dtype=torch.float64)[:, None] / 10000 ** (i / d)  # (T, D/2)
    table = torch.empty(5, d, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = angles.sin(), angles.cos()  # sin even, cos odd columns
    table = table.float()
    expected = state["embedding.weight"][x] * d ** 0.5 + table
    checks.assert_close(seen[0]["args"][0], expected, tolerances.ADDED_TABLE[torch.float32],
                        what="the input of layers.0", reveal=True,
                        hint="embedding(tokens) * sqrt(d_model) + positions[:T]; the scale multiplies "
                        "the embedding only, not the positions")


@pytest.mark.points(1)
@pytest.mark.task("embeddings")
def test_position_table_not_in_state_dict(student):
    """DecoderOnly(max_seq_len=10, d_model=8) saves no (10, 8) position table: the table is not a parameter and not in
    the state_dict (a buffer with persistent=False, or computed on the fly)."""
    shapes = student.module("DecoderOnly", MODEL_INIT, calls=[], state_dict_shapes=True).state_dict_shapes
    table = [MODEL_INIT["max_seq_len"], MODEL_INIT["d_model"]]
    saved = sorted(name for name, shape in shapes.items() if shape == table)
    if saved:
        checks.fail(f"DecoderOnly's state_dict holds {saved} of the position table's shape {tuple(table)}: register "
                    "the table with persistent=False (it is computed from the sizes, never trained or saved)")


@pytest.mark.points(1)
@pytest.mark.task("embeddings")
def test_sequence_longer_than_max_seq_len_raises(student):
    """DecoderOnly(max_seq_len=4) runs on 4 tokens and raises ValueError on 5 (no position row for the fifth)."""
    init = MODEL_INIT | {"max_seq_len": 4, "num_layers": 1}

    def run(length: int):
        call = {"fn": "self.forward", "args": [tokens((1, length), seed=9)]}
        return student.module("DecoderOnly", init, calls=[call])

    checks.expect_value_error(lambda: run(4), what="DecoderOnly(max_seq_len=4) on 4 tokens", valid=True)
    checks.expect_value_error(lambda: run(5), what="DecoderOnly(max_seq_len=4) on 5 tokens")


@pytest.mark.points(1)
@pytest.mark.task("masks")
def test_mask_helpers_examples(student):
    """padding_to_ignore flips the course's padding mask; future_mask(3) blocks the keys after each query."""
    ignore = student.call("padding_to_ignore", torch.tensor([[1, 1, 0]]))
    checks.assert_equal(checks.check_tensor(ignore, what="padding_to_ignore([[1, 1, 0]])", shape=(1, 3),
                                            dtype=torch.bool),
                        torch.tensor([[False, False, True]]), what="padding_to_ignore([[1, 1, 0]])", reveal=True)
    blocked = student.call("future_mask", 3)
    checks.assert_equal(checks.check_tensor(blocked, what="future_mask(3)", shape=(3, 3), dtype=torch.bool),
                        torch.ones(3, 3, dtype=torch.bool).triu(1), what="future_mask(3)", reveal=True)


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [pytest.param("EncoderLayer", marks=pytest.mark.task("EncoderLayer")),
                                  pytest.param("DecoderLayer", marks=pytest.mark.task("DecoderLayer")),
                                  pytest.param("Transformer", marks=pytest.mark.task("Transformer"))])
@pytest.mark.parametrize("norm_first", [False, True])
def test_parameter_names_and_shapes(student, kind, norm_first):
    """The module's parameters carry the contract's names and shapes (so state_dicts move between solutions)."""
    init = (LAYER_INIT if kind.endswith("Layer") else MODEL_INIT) | {"norm_first": norm_first}
    got = student.module(kind, init, calls=[], parameter_shapes=True).parameter_shapes
    want = {k: list(v) for k, v in strategies.parameter_shapes(kind, init).items()}
    if got != want:
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
        checks.fail(f"{kind}(norm_first={norm_first}) parameters differ from the contract: extra {extra[:4]}, "
                    f"missing {missing[:4]}, wrong shapes {[(k, got[k], want[k]) for k in wrong[:2]]}")


def layer_inputs(snapshot, decoder: bool) -> dict[str, torch.Tensor]:
    inputs = {"x": strategies.randn((2, 5, 8), seed=1), "mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()}
    if decoder:
        inputs |= {"memory": strategies.randn((2, 4, 8), seed=2),
                   "memory_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()}
    return snapshot.inputs(**inputs)


@pytest.mark.points(1)
@pytest.mark.task("EncoderLayer")
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_golden(student, snapshot, norm_first):
    """EncoderLayer(8, 2, 12) with fixed weights on a padded batch matches the golden output at real positions."""
    init = LAYER_INIT | {"norm_first": norm_first}
    t = layer_inputs(snapshot, decoder=False)
    state = strategies.architecture_state("EncoderLayer", init, seed=3, dtype=torch.float32)
    out = student.module("EncoderLayer", init, state_dict=state,
                         calls=[{"fn": "self.forward", "args": [t["x"]], "kwargs": {"attention_mask": t["mask"]}}]).output
    out = checks.check_tensor(out, what="EncoderLayer(x, mask)", shape=(2, 5, 8))
    snapshot.assert_match({"out": checks.real_positions(out, t["mask"])}, GOLDEN,
                          hint="post-norm: norm(x + sublayer(x)); pre-norm: x + sublayer(norm(x))")


@pytest.mark.points(1)
@pytest.mark.task("EncoderLayer")
def test_encoder_layer_dropout_only_in_training(student):
    """EncoderLayer(dropout=0.5) in eval mode equals the dropout-free layer; in training mode it does not."""
    x = strategies.randn((2, 5, 8), seed=1)
    state = strategies.architecture_state("EncoderLayer", LAYER_INIT, seed=3, dtype=torch.float32)
    call = {"fn": "self.forward", "args": [x]}
    free = student.module("EncoderLayer", LAYER_INIT, state_dict=state, calls=[call]).output
    dropped = LAYER_INIT | {"dropout": 0.5}
    evaluated = student.module("EncoderLayer", dropped, state_dict=state, calls=[call]).output
    checks.assert_close(checks.check_tensor(evaluated, what="EncoderLayer(dropout=0.5) in eval mode", shape=(2, 5, 8)),
                        free, tolerances.ARCH_FLOAT32, what="EncoderLayer(dropout=0.5) in eval mode", reveal=True,
                        hint="dropout acts only in training mode (nn.Dropout follows self.training)")
    trained = student.module("EncoderLayer", dropped, state_dict=state, calls=[call], train=True).output
    if torch.allclose(checks.check_tensor(trained, what="EncoderLayer in training mode", shape=(2, 5, 8)), free):
        checks.fail("EncoderLayer(dropout=0.5) in training mode gives the dropout-free output: pass dropout to "
                    "self_attn and apply it to each sublayer's output and inside the feed-forward network")


@pytest.mark.points(1)
@pytest.mark.task("DecoderLayer")
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_golden(student, snapshot, norm_first):
    """DecoderLayer(8, 2, 12) with fixed weights, a padded batch and a padded memory matches the golden output."""
    init = LAYER_INIT | {"norm_first": norm_first}
    t = layer_inputs(snapshot, decoder=True)
    state = strategies.architecture_state("DecoderLayer", init, seed=4, dtype=torch.float32)
    call = {"fn": "self.forward", "args": [t["x"], t["memory"]],
            "kwargs": {"attention_mask": t["mask"], "memory_attention_mask": t["memory_mask"]}}
    out = checks.check_tensor(student.module("DecoderLayer", init, state_dict=state, calls=[call]).output,
                              what="DecoderLayer(x, memory, masks)", shape=(2, 5, 8))
    snapshot.assert_match({"out": checks.real_positions(out, t["mask"])}, GOLDEN,
                          hint="causal self-attention, then cross-attention to memory, then the FFN")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [pytest.param("Transformer", marks=pytest.mark.task("Transformer")),
                                  pytest.param("EncoderOnly", marks=pytest.mark.task("EncoderOnly")),
                                  pytest.param("DecoderOnly", marks=pytest.mark.task("DecoderOnly"))])
@pytest.mark.parametrize("norm_first", [False, True])
def test_model_golden(student, snapshot, kind, norm_first):
    """A 2-layer model with fixed weights on fixed tokens matches the golden logits (or hidden states)."""
    init = MODEL_INIT | {"norm_first": norm_first}
    t = snapshot.inputs(src=tokens((2, 6), seed=5), tgt=tokens((2, 4), seed=6))
    state = strategies.architecture_state(kind, init, seed=7, dtype=torch.float32)
    args = [t["src"], t["tgt"]] if kind == "Transformer" else [t["src"]]
    out = student.module(kind, init, state_dict=state, calls=[{"fn": "self.forward", "args": args}]).output
    width = MODEL_INIT["d_model"] if kind == "EncoderOnly" else MODEL_INIT["vocab_size"]
    out = checks.check_tensor(out, what=f"{kind}(...)", shape=(2, args[-1].shape[1], width))
    snapshot.assert_match({"out": out}, GOLDEN,
                          hint="embedding * sqrt(d_model) + positions; the layers; a final norm only if norm_first; "
                          "logits through the tied embedding")


@pytest.mark.points(1)
@pytest.mark.task("Transformer")
def test_transformer_shape(student):
    """Transformer(vocab_size=100, d_model=32, 4 heads, 2 layers, d_ff=64) maps src (2, 7), tgt (2, 5) to (2, 5, 100)."""
    init = {"vocab_size": 100, "d_model": 32, "num_heads": 4, "num_layers": 2, "d_ff": 64}
    src, tgt = torch.randint(0, 100, (2, 7)), torch.randint(0, 100, (2, 5))
    out = student.module("Transformer", init, calls=[{"fn": "self.forward", "args": [src, tgt]}]).output
    checks.assert_finite(checks.check_tensor(out, what="Transformer(src, tgt)", shape=(2, 5, 100),
                                             dtype=torch.float32), what="Transformer(src, tgt)")


@pytest.mark.points(1)
@pytest.mark.task("Transformer")
def test_source_padding_is_ignored_by_cross_attention(student):
    """Two padding tokens appended to src, masked by src_attention_mask, leave Transformer's logits unchanged."""
    state = strategies.architecture_state("Transformer", MODEL_INIT, seed=7, dtype=torch.float32)
    src, tgt = tokens((1, 4), seed=5), tokens((1, 3), seed=6)
    padded = torch.cat([src, tokens((1, 2), seed=10)], dim=1)  # (1, 6)
    mask = torch.tensor([[True, True, True, True, False, False]])
    calls = [{"fn": "self.forward", "args": [src, tgt]},
             {"fn": "self.forward", "args": [padded, tgt], "kwargs": {"src_attention_mask": mask}}]
    plain, masked = (checks.check_tensor(o, what="Transformer(src, tgt)", shape=(1, 3, 11))
                     for o in student.module("Transformer", MODEL_INIT, state_dict=state, calls=calls).outputs)
    checks.assert_close(masked, plain, tolerances.ARCH_FLOAT32, what="logits with two masked padding tokens in src",
                        reveal=True, hint="the source mask goes to the encoder's self-attention and to every "
                        "decoder layer's cross-attention (memory_attention_mask)")


@pytest.mark.points(1)
@pytest.mark.task("DecoderOnly")
def test_decoder_only_is_causal(student):
    """Changing the last token leaves DecoderOnly's logits at every earlier position unchanged."""
    init = MODEL_INIT | {"num_layers": 1}
    x = tokens((1, 6), seed=8)
    changed = x.clone()
    changed[0, -1] = (x[0, -1] + 1) % MODEL_INIT["vocab_size"]
    result = student.module("DecoderOnly", init, calls=[{"fn": "self.forward", "args": [x]},
                                                        {"fn": "self.forward", "args": [changed]}])
    plain, moved = (checks.check_tensor(o, what="DecoderOnly(tokens)", shape=(1, 6, 11)) for o in result.outputs)
    checks.assert_close(moved[:, :-1], plain[:, :-1], tolerances.ARCH_FLOAT32, what="logits before the changed token",
                        reveal=True, hint="every layer needs the causal mask (is_causal=True)")


@pytest.mark.points(1)
@pytest.mark.task("count_parameters")
def test_count_parameters_of_a_linear(student):
    """count_parameters(nn.Linear(3, 2)) is 8: a 2 x 3 weight and a bias of 2."""
    got = student.run(objects={"m": {"cls": "Linear", "module": "torch.nn", "init": {"in_features": 3,
                                                                                    "out_features": 2}}},
                      calls=[{"fn": "count_parameters", "args": [{"$obj": "m"}]}]).output
    if got != 8:
        checks.fail(f"count_parameters(nn.Linear(3, 2)) returned {got!r}, expected 8")


@pytest.mark.points(1)
@pytest.mark.task("transformer_parameter_count")
def test_quick_start_parameter_count(student):
    """The Quick Start model (V=10000, D=512, 6 layers, d_ff=2048) has 49,258,496 parameters."""
    got = student.call("transformer_parameter_count", 10000, 512, 6, 2048)
    if got != 49_258_496:
        checks.fail(f"transformer_parameter_count(10000, 512, 6, 2048) returned {got!r}, expected 49258496")


@pytest.mark.points(1)
@pytest.mark.task("Transformer")
def test_indivisible_heads_raise(student):
    """Transformer(vocab_size=10, d_model=10, num_heads=4) raises ValueError (10 is not divisible by 4)."""
    checks.expect_value_error(
        lambda: student.module("Transformer", {"vocab_size": 10, "d_model": 10, "num_heads": 4}, calls=[]),
        what="Transformer(vocab_size=10, d_model=10, num_heads=4)")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [pytest.param("EncoderLayer", marks=pytest.mark.task("EncoderLayer")),
                                  pytest.param("DecoderLayer", marks=pytest.mark.task("DecoderLayer"))])
def test_layers_refuse_indivisible_heads(student, kind):
    """EncoderLayer(10, 4, 16) and DecoderLayer(10, 4, 16) raise ValueError: 4 heads do not split d_model = 10."""
    checks.expect_value_error(lambda: student.module(kind, {"d_model": 10, "num_heads": 4, "d_ff": 16}, calls=[]),
                              what=f"{kind}(d_model=10, num_heads=4, d_ff=16)")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [pytest.param("EncoderLayer", marks=pytest.mark.task("EncoderLayer")),
                                  pytest.param("DecoderLayer", marks=pytest.mark.task("DecoderLayer"))])
def test_layer_residuals_add_dropped_sublayer_outputs(student, kind):
    """Post-norm, dropout=0.25, training mode: what each residual adds to the stream is, entry by entry, 0 or the
    sublayer's output / 0.75 (self_attn, cross_attn, linear2, read with forward hooks); the attention modules
    are built with dropout=0.25 too."""
    init = LAYER_INIT | {"dropout": DROPOUT_P}
    state = strategies.architecture_state(kind, init, seed=3, dtype=torch.float64)
    x = strategies.randn((2, 5, 8), seed=1).double()
    args = [x, strategies.randn((2, 4, 8), seed=2).double()] if kind == "DecoderLayer" else [x]
    subs = ["self_attn", "cross_attn", "linear2"] if kind == "DecoderLayer" else ["self_attn", "linear2"]
    norms = [f"norm{k + 1}" for k in range(len(subs))]
    attentions = [f"self.{name}.dropout" for name in subs if name.endswith("attn")]
    result = student.module(kind, init, state_dict=state, dtype=torch.float64, train=True,
                            attrs=("seen", *attentions), calls=[
                                {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, subs + norms],
                                 "store": "seen"},
                                {"fn": "self.forward", "args": args}])
    for attr in attentions:
        if result.attrs[attr] != DROPOUT_P:
            checks.fail(f"{kind}(dropout={DROPOUT_P}): {attr.removeprefix('self.')} is {result.attrs[attr]!r}, "
                        f"expected {DROPOUT_P}: build nn.MultiheadAttention(d_model, num_heads, dropout=dropout, "
                        "batch_first=True) so the attention weights are dropped too")
    seen = result.attrs["seen"]
    for name in subs + norms:
        if len(seen[name]) != 1 or not seen[name][0]["args"]:
            checks.fail(f"{kind}: {name} ran {len(seen[name])} times in one forward pass; each runs once, on a "
                        "positional input")
    for k, name in enumerate(subs):  # post-norm: norm_k reads x_{k-1} + drop(sublayer_k(x_{k-1}))
        branch = seen[name][0]["output"]
        branch = branch[0] if isinstance(branch, list) else branch  # nn.MultiheadAttention returns (out, weights)
        before = x if k == 0 else seen[norms[k - 1]][0]["output"]
        added = seen[norms[k]][0]["args"][0] - before
        checks.assert_dropped_or_scaled(
            added, branch, DROPOUT_P, tolerances.ARCH_LAYER, reveal=True,
            what=f"post-norm {kind} in training mode: the input of {norms[k]} minus the stream before {name}",
            hint=f"{norms[k]}(x + dropout({name}(x))): dropout acts on each sublayer's output, never on the stream "
                 "or on the sum")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [pytest.param("EncoderLayer", marks=pytest.mark.task("EncoderLayer")),
                                  pytest.param("DecoderLayer", marks=pytest.mark.task("DecoderLayer"))])
def test_ffn_drops_its_hidden_units_in_training(student, kind):
    """dropout=0.25, training mode: linear2's input is, entry by entry, 0 or relu(linear1's output) / 0.75:
    ffn(x) = linear2(drop(relu(linear1(x)))) (read with forward hooks on linear1 and linear2)."""
    init = LAYER_INIT | {"dropout": DROPOUT_P}
    state = strategies.architecture_state(kind, init, seed=4, dtype=torch.float64)
    x = strategies.randn((2, 5, 8), seed=5).double()
    args = [x, strategies.randn((2, 4, 8), seed=6).double()] if kind == "DecoderLayer" else [x]
    seen = student.module(kind, init, state_dict=state, dtype=torch.float64, train=True, attrs=("seen",), calls=[
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, ["linear1", "linear2"]], "store": "seen"},
        {"fn": "self.forward", "args": args}]).attrs["seen"]
    for name in ("linear1", "linear2"):
        if len(seen[name]) != 1 or not seen[name][0]["args"]:
            checks.fail(f"{kind}: {name} ran {len(seen[name])} times in one forward pass; it runs once, on a "
                        "positional input")
    checks.assert_dropped_or_scaled(
        seen["linear2"][0]["args"][0], torch.relu(seen["linear1"][0]["output"]), DROPOUT_P, tolerances.ARCH_LAYER,
        reveal=True, what=f"{kind} in training mode: linear2's input against relu(linear1's output)",
        hint="ffn(x) = linear2(drop(relu(linear1(x)))): the FFN drops its hidden units too, as "
             "nn.TransformerEncoderLayer does")


@pytest.mark.points(1)
@pytest.mark.task("EncoderLayer")
def test_causal_encoder_layer_ignores_later_positions(student):
    """EncoderLayer(..., is_causal=True), as DecoderOnly runs it: changing positions 3 and 4 leaves outputs 0-2 as
    they were, and the last position, which sees every key, gets the output of the layer without is_causal."""
    state = strategies.architecture_state("EncoderLayer", LAYER_INIT, seed=8, dtype=torch.float64)
    x = strategies.randn((2, 5, 8), seed=9).double()
    changed = x.clone()
    changed[:, 3:] = strategies.randn((2, 2, 8), seed=10).double()
    outputs = student.module("EncoderLayer", LAYER_INIT, state_dict=state, dtype=torch.float64, calls=[
        {"fn": "self.forward", "args": [x], "kwargs": {"is_causal": True}},
        {"fn": "self.forward", "args": [changed], "kwargs": {"is_causal": True}},
        {"fn": "self.forward", "args": [x]}]).outputs
    causal, causal_changed, full = (checks.check_tensor(o, what="EncoderLayer output", shape=(2, 5, 8))
                                    for o in outputs)
    checks.assert_close(causal_changed[:, :3], causal[:, :3], tolerances.ARCH_LAYER, reveal=True,
                        what="outputs at positions 0-2 with is_causal=True after positions 3-4 changed",
                        hint="is_causal=True masks the keys after each query: future_mask(T) as attn_mask, with "
                             "T = x.shape[1]")
    checks.assert_close(causal[:, -1], full[:, -1], tolerances.ARCH_LAYER, reveal=True,
                        what="the last position's output with is_causal=True against without",
                        hint="the causal mask blocks only later keys: the last query sees them all")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [pytest.param("EncoderOnly", marks=pytest.mark.task("EncoderOnly")),
                                  pytest.param("DecoderOnly", marks=pytest.mark.task("DecoderOnly"))])
def test_embedding_dropout_acts_on_the_sum_in_training(student, kind):
    """With dropout=0.25, the first layer's input in training mode is, entry by entry, 0 or its eval-mode value
    (embedding * sqrt(d_model) + positions) / 0.75: dropout on the sum, not on the embedding alone."""
    init = MODEL_INIT | {"num_layers": 1, "dropout": DROPOUT_P}
    state = strategies.architecture_state(kind, init, seed=7, dtype=torch.float64)
    call = {"fn": "self.forward", "args": [tokens((2, 5), seed=11)]}
    result = student.module(kind, init, state_dict=state, dtype=torch.float64, train=True, attrs=("seen",), calls=[
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, ["layers.0"]], "store": "seen"}, call,
        {"fn": "self.eval", "discard": True}, call])
    records = result.attrs["seen"]["layers.0"]
    if len(records) != 2 or not all(record["args"] for record in records):
        checks.fail(f"layers.0 ran {len(records)} times in two forward passes, once in each with the embedded tokens "
                    "as its first positional argument")
    trained, evaluated = (record["args"][0] for record in records)
    checks.assert_dropped_or_scaled(
        trained, evaluated, DROPOUT_P, tolerances.ARCH_LAYER, reveal=True,
        what=f"{kind}: the input of layers.0 in training mode, against your own in eval mode",
        hint="dropout(embedding(tokens) * sqrt(d_model) + positions[:T]) in training mode (the positions are "
             "dropped with the embedding); no dropout in eval mode")
