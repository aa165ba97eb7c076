"""Chapter 01 hidden tests: the reference as the oracle, and the properties of each wiring.

Layers and models get random weights for every parameter the contract names (norms and biases
moved off their defaults, so a parameter in the wrong place shows), and are compared with the
reference in float64 under the same `state_dict`, on real positions only (what a model returns
at padding is not specified). The wiring itself is checked through the student's own outputs
(causality, padding, cross-attention, permutations) and through forward hooks on the named
submodules (where each norm sits, what cross-attention reads, what enters the first layer).
Failure messages show the student's own values and the shrunk case, never expected values.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from graders import checks, strategies, tolerances
from graders.tolerances import DROPOUT_P
from graders.strategies import ArchCase, architecture_state

TASKS = ("positions", "embeddings", "masks", "EncoderLayer", "DecoderLayer", "Transformer", "EncoderOnly",
         "DecoderOnly", "count_parameters", "transformer_parameter_count")
SECTIONS = {"positions": "embeddings", "embeddings": "embeddings", "masks": "masks", "EncoderLayer": "encoder-layer",
            "DecoderLayer": "decoder-layer", "Transformer": "encoder-decoder", "EncoderOnly": "encoder-only",
            "DecoderOnly": "decoder-only", "count_parameters": "parameter-count",
            "transformer_parameter_count": "parameter-count"}
MODELS = ("Transformer", "EncoderOnly", "DecoderOnly")
FIRST_LAYER = {"Transformer": "encoder_layers.0", "EncoderOnly": "layers.0", "DecoderOnly": "layers.0"}
WIRING_HINT = {False: "post-norm: x = norm(x + sublayer(x)) after each sublayer",
               True: "pre-norm: x = x + sublayer(norm(x)); the stream itself is never normalized inside a layer"}


def kind_param(kind: str):
    return pytest.param(kind, marks=pytest.mark.task(kind), id=kind)


# --- running a case: the student's side and the reference's ----------------------------------


def forward_call(case: ArchCase, *, src: torch.Tensor | None = None, tgt: torch.Tensor | None = None,
                 src_mask: torch.Tensor | None = None, tgt_mask: torch.Tensor | None = None) -> dict:
    """The case's forward call (its own inputs unless given): layers take float64 states, models token ids."""
    sequence = case.states if case.is_layer else case.tokens  # (B, L, D) floats or (B, L) token ids
    src = sequence(case.src_len, 1) if src is None else src
    tgt = sequence(case.tgt_len, 2) if tgt is None else tgt
    src_mask = case.mask(src.shape[1], 1) if src_mask is None else src_mask
    tgt_mask = case.mask(tgt.shape[1], 2) if tgt_mask is None else tgt_mask
    if case.kind == "Transformer":
        return {"fn": "self.forward", "args": [src, tgt],
                "kwargs": {"src_attention_mask": src_mask, "tgt_attention_mask": tgt_mask}}
    if case.kind == "DecoderLayer":  # x is the decoder's stream (tgt), memory the encoder's (src)
        return {"fn": "self.forward", "args": [tgt, src],
                "kwargs": {"attention_mask": tgt_mask, "memory_attention_mask": src_mask}}
    return {"fn": "self.forward", "args": [src], "kwargs": {"attention_mask": src_mask}}


def output_mask(call: dict, case: ArchCase) -> torch.Tensor | None:
    """(B, L) real positions of the output: the decoder's for Transformer and DecoderLayer."""
    kwargs = call["kwargs"]
    return kwargs.get("tgt_attention_mask") if case.kind == "Transformer" else kwargs.get("attention_mask")


def run_student(student, case: ArchCase, state: dict, calls: list[dict], *, dropout: float = 0.0, **kwargs):
    return student.module(case.kind, case.init(dropout), state_dict=state, dtype=torch.float64, calls=calls, **kwargs)


def reference_output(reference, case: ArchCase, state: dict, call: dict) -> torch.Tensor:
    """The reference `case.kind` in float64, eval mode, `state` loaded, on the same call."""
    module = getattr(reference, case.kind)(**case.init()).double().eval()
    module.load_state_dict(state)
    return module(*call["args"], **call["kwargs"]).detach()


def output_shape(case: ArchCase, call: dict) -> tuple[int, ...]:
    length = call["args"][1].shape[1] if case.kind == "Transformer" else call["args"][0].shape[1]
    width = case.vocab_size if case.kind in ("Transformer", "DecoderOnly") else case.d_model
    return (case.batch, length, width)


def student_output(student, case: ArchCase, state: dict, call: dict, what: str) -> torch.Tensor:
    out = run_student(student, case, state, [call]).output
    return checks.check_tensor(out, what=what, shape=output_shape(case, call), dtype=torch.float64)


def tolerance_for(case: ArchCase) -> tolerances.Tolerance:
    return tolerances.ARCH_LAYER if case.is_layer else tolerances.architecture(case.max_seq_len)


def assert_matches_reference(student, reference, case: ArchCase, hint: str) -> None:
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    keep = output_mask(call, case)
    out = student_output(student, case, state, call, f"{case.kind}(...)")
    expected = reference_output(reference, case, state, call)
    checks.assert_close(checks.real_positions(out, keep), checks.real_positions(expected, keep), tolerance_for(case),
                        what=f"{case.kind} output at real positions ({'pre' if case.norm_first else 'post'}-norm)",
                        hint=hint)


# --- positions and embeddings ----------------------------------------------------------------


def paper_table(length: int, d_model: int) -> torch.Tensor:
    """The 2017 paper's sinusoidal table in float64, (length, d_model): sin, cos, sin, cos, ..."""
    p = torch.arange(length, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    angle = p / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (P, D/2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(length, d_model)  # (P, D)


@pytest.mark.points(1)
@pytest.mark.task("positions")
@given(max_len=st.integers(1, 600), half=st.integers(1, 32))
def test_sinusoidal_positions_match_formula(student, max_len, half):
    """sinusoidal_positions(max_len, d) equals the paper's table at every position and width (float32 out)."""
    d_model = 2 * half
    table = checks.check_tensor(student.call("sinusoidal_positions", max_len, d_model),
                                what=f"sinusoidal_positions({max_len}, {d_model})", shape=(max_len, d_model),
                                dtype=torch.float32)
    checks.assert_close(table, paper_table(max_len, d_model), tolerances.angles(float(max_len))[torch.float32],
                        what=f"sinusoidal_positions({max_len}, {d_model})",
                        hint="PE[p, 2i] = sin(p / 10000 ** (2i / d)), PE[p, 2i+1] = cos(...); float64 angles")


@pytest.mark.points(1)
@pytest.mark.task("positions")
@given(d_model=st.sampled_from((-4, 0, 1, 3, 7, 33)))
def test_sinusoidal_positions_reject_odd_width(student, d_model):
    """An odd or non-positive d_model raises ValueError (the table pairs its columns)."""
    checks.expect_value_error(lambda: student.call("sinusoidal_positions", 4, d_model),
                              what=f"sinusoidal_positions(4, d_model={d_model})")


@pytest.mark.points(1)
@pytest.mark.task("embeddings")
@pytest.mark.parametrize("kind", MODELS)
@given(data=st.data())
def test_first_layer_receives_scaled_embedding_plus_positions(student, kind, data):
    """What enters the first layer is embedding(tokens) * sqrt(d_model) + the first T rows of the sinusoidal table."""
    case = data.draw(strategies.arch_cases(kinds=(kind,), padded=False), label="case")
    state = architecture_state(kind, case.init(), seed=case.seed)
    call = forward_call(case)
    first = FIRST_LAYER[kind]
    result = run_student(student, case, state, [
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, [first]], "store": "seen"}, call],
        attrs=("seen",))
    calls = result.attrs["seen"][first]
    if not calls or not calls[0]["args"]:
        checks.fail(f"{first} was not called with the embedded tokens as its first positional argument")
    tokens = call["args"][0]
    expected = state["embedding.weight"][tokens] * math.sqrt(case.d_model) + paper_table(tokens.shape[1], case.d_model)
    checks.assert_close(calls[0]["args"][0], expected, tolerances.ADDED_TABLE[torch.float64],
                        what=f"the input of {first}", hint="embedding(tokens) * sqrt(d_model) + positions[:T]; "
                        "the scale multiplies the embedding only, not the positions")


@pytest.mark.points(1)
@pytest.mark.task("embeddings")
@pytest.mark.parametrize("kind", MODELS)
def test_embedding_initialisation(student, kind):
    """The token embedding starts as normal(0, 1/sqrt(d_model)), so after the sqrt(d_model) scale it is about unit size."""
    init = {"vocab_size": 512, "d_model": 64, "num_heads": 4, "num_layers": 1, "d_ff": 8, "max_seq_len": 4,
            "dropout": 0.0}
    weight = student.module(kind, init, calls=[], attrs=("self.embedding.weight",)).attrs["self.embedding.weight"]
    weight = checks.check_tensor(weight, what="embedding.weight", shape=(512, 64))
    # 32768 draws: the sample std is within 1% of the true one (a standard error of 0.4%), and
    # the sample mean within 3 standard errors of 0; nn.Embedding's default N(0, 1) is 8x off.
    std, mean = float(weight.double().std()), float(weight.double().mean())
    if abs(std - 1 / 8) > 0.1 / 8 or abs(mean) > 3 * (1 / 8) / math.sqrt(weight.numel()):
        checks.fail(f"embedding.weight of {kind}(d_model=64) has mean {mean:.4f} and std {std:.4f}; initialize it "
                    "normal(0, d_model ** -0.5) (std 0.125 here), not nn.Embedding's default N(0, 1)")


@pytest.mark.points(1)
@pytest.mark.task("embeddings")
@pytest.mark.parametrize("kind", MODELS)
@given(max_seq_len=st.integers(1, 10))
def test_too_long_sequence_raises(student, kind, max_seq_len):
    """A sequence of max_seq_len tokens runs; one token more raises ValueError."""
    init = {"vocab_size": 7, "d_model": 8, "num_heads": 2, "num_layers": 1, "d_ff": 8, "max_seq_len": max_seq_len,
            "dropout": 0.0}

    def run(length: int):
        tokens = torch.zeros(1, length, dtype=torch.long)
        args = [tokens, torch.zeros(1, 1, dtype=torch.long)] if kind == "Transformer" else [tokens]
        return student.module(kind, init, calls=[{"fn": "self.forward", "args": args}])

    checks.expect_value_error(lambda: run(max_seq_len), what=f"{kind}(max_seq_len={max_seq_len}) on {max_seq_len} "
                              "tokens", valid=True)
    checks.expect_value_error(lambda: run(max_seq_len + 1),
                              what=f"{kind}(max_seq_len={max_seq_len}) on {max_seq_len + 1} tokens")


# --- masks ---------------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("masks")
@given(batch=st.integers(1, 4), length=st.integers(1, 12), seed=strategies.seeds(), as_int=st.booleans())
def test_padding_to_ignore(student, batch, length, seed, as_int):
    """padding_to_ignore flips the course's mask (True or 1 = real) into key_padding_mask (True = ignore), as bool."""
    mask = torch.rand(batch, length, generator=strategies.generator(seed)) < 0.6  # (B, T)
    given_mask = mask.long() if as_int else mask
    out = checks.check_tensor(student.call("padding_to_ignore", given_mask), what="padding_to_ignore(mask)",
                              shape=(batch, length), dtype=torch.bool)
    checks.assert_equal(out, ~mask, what=f"padding_to_ignore of a {'0/1' if as_int else 'bool'} mask",
                        hint="True where the token is padding (mask False or 0)")
    if student.call("padding_to_ignore", None) is not None:
        checks.fail("padding_to_ignore(None) should return None (no padding)")


@pytest.mark.points(1)
@pytest.mark.task("masks")
@given(length=st.integers(1, 40))
def test_future_mask(student, length):
    """future_mask(n) is True exactly above the diagonal: query i may not see key j > i."""
    out = checks.check_tensor(student.call("future_mask", length), what=f"future_mask({length})",
                              shape=(length, length), dtype=torch.bool)
    checks.assert_equal(out, torch.ones(length, length, dtype=torch.bool).triu(1), what=f"future_mask({length})",
                        hint="True at (i, j) when j > i: nn.MultiheadAttention's attn_mask blocks True")


# --- EncoderLayer ----------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("EncoderLayer")
@given(case=strategies.arch_cases(kinds=("EncoderLayer",)))
def test_encoder_layer_matches_reference(student, reference, case):
    """EncoderLayer equals the reference under the same weights, pre- and post-norm, with and without padding."""
    assert_matches_reference(student, reference, case, WIRING_HINT[case.norm_first])


def watch_norms(student, case: ArchCase, names: list[str], state: dict, call: dict):
    """(the layer's output, {name: [recorded calls]}) for one forward with hooks on `names`."""
    result = run_student(student, case, state, [
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, names], "store": "seen"}, call],
        attrs=("seen",))
    seen = result.attrs["seen"]
    for name in names:
        if len(seen[name]) != 1:
            checks.fail(f"{name} ran {len(seen[name])} times in one forward pass; each norm of a layer runs once")
    return result.outputs[1], {name: seen[name][0] for name in names}


def first_arg(record: dict, what: str) -> torch.Tensor:
    if not record["args"]:
        checks.fail(f"{what} was called without a positional input")
    return record["args"][0]


def assert_norm_placement(out: torch.Tensor, x: torch.Tensor, seen: dict, norms: list[str], norm_first: bool,
                          kind: str) -> None:
    """Pre-norm: the first norm reads the layer's input x itself and the output is not the last
    norm's; post-norm: the first norm reads something else than x (the residual sum) and the
    output is the last norm's output."""
    tol = tolerances.ARCH_LAYER
    first_in = first_arg(seen[norms[0]], norms[0])
    last_out = seen[norms[-1]]["output"]
    reads_x = torch.allclose(first_in, x, rtol=tol.rtol, atol=tol.atol)
    ends_normed = torch.allclose(out, last_out, rtol=tol.rtol, atol=tol.atol)
    if norm_first:
        if not reads_x:
            checks.fail(f"pre-norm {kind} (norm_first=True): {norms[0]} should read the layer's input x itself "
                        f"(x + sublayer(norm(x))); yours read something else")
        if ends_normed:
            checks.fail(f"pre-norm {kind}: the output equals {norms[-1]}'s output; in pre-norm the last step is the "
                        "residual addition x + ffn(norm(x)), not a norm")
    else:
        if reads_x:
            checks.fail(f"post-norm {kind} (norm_first=False): {norms[0]} read the layer's input x; it should read "
                        "the residual sum x + attention(x) (norm(x + sublayer(x)))")
        if not ends_normed:
            checks.fail(f"post-norm {kind}: the output should be {norms[-1]}'s output, norm(x + ffn(x)); yours is not")


@pytest.mark.points(1)
@pytest.mark.task("EncoderLayer")
@given(case=strategies.arch_cases(kinds=("EncoderLayer",), padded=False))
def test_encoder_layer_norm_placement(student, case):
    """Hooks on norm1 and norm2: where each sits relative to the residual, for norm_first True and False."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    out, seen = watch_norms(student, case, ["norm1", "norm2"], state, call)
    assert_norm_placement(out, call["args"][0], seen, ["norm1", "norm2"], case.norm_first, "EncoderLayer")


@pytest.mark.points(1)
@pytest.mark.task("EncoderLayer")
@given(case=strategies.arch_cases(kinds=("EncoderLayer",), min_len=2), perm_seed=strategies.seeds())
def test_encoder_layer_is_permutation_equivariant(student, case, perm_seed):
    """With no positions inside a layer, permuting the positions of x (and of its mask) permutes the output."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    x, mask = call["args"][0], call["kwargs"]["attention_mask"]
    order = torch.randperm(x.shape[1], generator=strategies.generator(perm_seed))
    moved = {"fn": "self.forward", "args": [x[:, order]],
             "kwargs": {"attention_mask": None if mask is None else mask[:, order]}}
    plain, permuted = run_student(student, case, state, [call, moved]).outputs
    plain = checks.check_tensor(plain, what="EncoderLayer(x)", shape=tuple(x.shape))
    keep = None if mask is None else mask[:, order]
    checks.assert_close(checks.real_positions(permuted, keep), checks.real_positions(plain[:, order], keep),
                        tolerances.ARCH_LAYER,
                        what=f"EncoderLayer(x[:, {order.tolist()}]) vs EncoderLayer(x)[:, {order.tolist()}]",
                        hint="self-attention and the FFN treat every position alike; nothing in a layer may depend "
                        "on where a position sits (a causal mask here, or mixing positions in the FFN, breaks this)")


@pytest.mark.points(1)
@pytest.mark.task("EncoderLayer")
@given(case=strategies.arch_cases(kinds=("EncoderLayer",), padded=True))
def test_encoder_layer_ignores_padded_keys(student, case):
    """Changing the states at padding positions leaves the outputs at real positions unchanged."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    x, mask = call["args"][0], call["kwargs"]["attention_mask"]
    noise = case.states(x.shape[1], 9) * 10.0
    changed = {"fn": "self.forward", "args": [torch.where(mask.unsqueeze(-1), x, noise)], "kwargs": call["kwargs"]}
    plain, moved = run_student(student, case, state, [call, changed]).outputs
    checks.assert_close(checks.real_positions(moved, mask), checks.real_positions(plain, mask), tolerances.ARCH_LAYER,
                        what="outputs at real positions after changing the padding",
                        hint="pass the padding as key_padding_mask, which is True for padding: the opposite of "
                        "attention_mask (padding_to_ignore)")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [kind_param("EncoderLayer"), kind_param("DecoderLayer")])
@given(d_model=st.integers(2, 24), num_heads=st.integers(1, 8))
def test_layer_heads_must_divide_d_model(student, kind, d_model, num_heads):
    """A d_model that num_heads does not divide raises ValueError; one it divides builds."""
    init = {"d_model": d_model, "num_heads": num_heads, "d_ff": 4}
    checks.expect_value_error(lambda: student.module(kind, init, calls=[]), what=f"{kind}(d_model={d_model}, "
                              f"num_heads={num_heads})", valid=d_model % num_heads == 0)


DROPOUT_CASE = ArchCase(kind="Transformer", vocab_size=13, d_model=16, num_heads=2, num_layers=2, d_ff=32,
                        norm_first=False, batch=2, src_len=6, tgt_len=5, padded=False, seed=11)


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [kind_param("EncoderLayer"), kind_param("DecoderLayer"), kind_param("Transformer")])
@pytest.mark.parametrize("norm_first", [False, True])
def test_dropout_only_in_training(student, kind, norm_first):
    """With dropout=0.5: eval mode gives the dropout-free output, twice the same; training mode does not."""
    case = replace(DROPOUT_CASE, kind=kind, norm_first=norm_first)  # big enough that dropout always drops something
    state = architecture_state(kind, case.init(), seed=case.seed)
    call = forward_call(case)
    evaluated = run_student(student, case, state, [call, call], dropout=0.5).outputs
    free = run_student(student, case, state, [call]).output
    for out in evaluated:
        checks.assert_close(out, free, tolerances.ARCH_LAYER, what=f"{kind}(dropout=0.5) in eval mode",
                            hint="dropout acts only in training mode (nn.Dropout does this for you)")
    trained = run_student(student, case, state, [call], dropout=0.5, train=True).output
    if torch.allclose(checks.check_tensor(trained, what=f"{kind} in training mode", shape=tuple(free.shape)), free):
        checks.fail(f"{kind}(dropout=0.5) in training mode gives the dropout-free output; pass dropout to the "
                    "attention layers and apply it to each sublayer's output")


SUBLAYERS = {"EncoderLayer": ["self_attn", "linear2"], "DecoderLayer": ["self_attn", "cross_attn", "linear2"]}
NORMS = {"EncoderLayer": ["norm1", "norm2"], "DecoderLayer": ["norm1", "norm2", "norm3"]}


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [kind_param("EncoderLayer"), kind_param("DecoderLayer")])
@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_drops_each_sublayer_output(student, kind, norm_first):
    """In training mode, hooks show what each residual adds: 0 or the sublayer's output / (1 - p), entry by entry,
    with a share p of zeros, for attention (self and cross) and the FFN; the attention layers get dropout=p too."""
    case = replace(DROPOUT_CASE, kind=kind, norm_first=norm_first)
    state = architecture_state(kind, case.init(), seed=case.seed)
    call = forward_call(case)
    subs, norms = SUBLAYERS[kind], NORMS[kind]
    attentions = [f"self.{name}.dropout" for name in subs if name.endswith("attn")]
    result = run_student(student, case, state, [
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, subs + norms], "store": "seen"}, call],
        dropout=DROPOUT_P, train=True, attrs=("seen", *attentions))
    for attr in attentions:
        if result.attrs[attr] != DROPOUT_P:
            checks.fail(f"{kind}(dropout={DROPOUT_P}): {attr.removeprefix('self.')} is {result.attrs[attr]!r}; build "
                        "nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)")
    seen = result.attrs["seen"]
    for name in subs + norms:
        if len(seen[name]) != 1:
            checks.fail(f"{name} ran {len(seen[name])} times in one forward pass; each runs once")
    x = call["args"][0]
    out = checks.check_tensor(result.outputs[1], what=f"{kind}(x) in training mode", shape=tuple(x.shape))
    inputs = [first_arg(seen[name][0], name) for name in norms]
    outputs = [seen[name][0]["output"] for name in norms]
    for k, name in enumerate(subs):
        branch = seen[name][0]["output"]
        branch = branch[0] if isinstance(branch, list) else branch  # nn.MultiheadAttention returns (out, weights)
        if norm_first:  # x_k = x_{k-1} + drop(sublayer(norm_k(x_{k-1}))); x_k is the next norm's input
            before = x if k == 0 else inputs[k]
            after = inputs[k + 1] if k + 1 < len(norms) else out
            where = f"x + drop({name}(norm{k + 1}(x)))"
        else:  # x_k = norm_k(x_{k-1} + drop(sublayer(x_{k-1}))): norm_k reads the sum
            before = x if k == 0 else outputs[k - 1]
            after = inputs[k]
            where = f"norm{k + 1}(x + drop({name}(x)))"
        checks.assert_dropped_or_scaled(after - before, branch, DROPOUT_P, tolerances.ARCH_LAYER,
                                        what=f"{'pre' if norm_first else 'post'}-norm {kind}: what the residual "
                                             f"around {name} adds to the stream in training mode",
                                        hint=f"{where}: dropout acts on the sublayer's output only, never on the "
                                             "stream or the sum")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [kind_param(k) for k in MODELS])
def test_embedding_dropout_on_the_sum(student, kind):
    """In training mode what enters the first layer is 0 or (embedding * sqrt(d_model) + positions) / (1 - p), entry
    by entry, with a share p of zeros: dropout on the embedded sum, in training mode only."""
    case = replace(DROPOUT_CASE, kind=kind, padded=False)
    state = architecture_state(kind, case.init(), seed=case.seed)
    call = forward_call(case)
    first = FIRST_LAYER[kind]
    result = run_student(student, case, state, [
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, [first]], "store": "seen"}, call,
        {"fn": "self.eval", "discard": True}, call], dropout=DROPOUT_P, train=True, attrs=("seen",))
    records = result.attrs["seen"][first]
    if len(records) != 2:
        checks.fail(f"{first} ran {len(records)} times in two forward passes, once expected in each")
    trained, evaluated = (first_arg(record, first) for record in records)
    checks.assert_dropped_or_scaled(trained, evaluated, DROPOUT_P, tolerances.ARCH_LAYER,
                                    what=f"the input of {first} in training mode, against your own in eval mode",
                                    hint="dropout(embedding(tokens) * sqrt(d_model) + positions[:T]) in training "
                                         "mode, no dropout in eval mode")


# --- DecoderLayer ----------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("DecoderLayer")
@given(case=strategies.arch_cases(kinds=("DecoderLayer",)))
def test_decoder_layer_matches_reference(student, reference, case):
    """DecoderLayer equals the reference under the same weights and memory, pre- and post-norm, with padding."""
    assert_matches_reference(student, reference, case, WIRING_HINT[case.norm_first] + "; self-attention is causal, "
                             "cross-attention reads memory")


@pytest.mark.points(1)
@pytest.mark.task("DecoderLayer")
@given(case=strategies.arch_cases(kinds=("DecoderLayer",), min_len=2), cut=st.integers(0, 6))
def test_decoder_layer_is_causal(student, case, cut):
    """Changing x at positions after t leaves the outputs at positions <= t unchanged."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    x = call["args"][0]
    t = min(cut, x.shape[1] - 2)
    later = x.clone()
    later[:, t + 1:] = case.states(x.shape[1], 9)[:, t + 1:] * 10.0
    changed = {**call, "args": [later, call["args"][1]]}
    plain, moved = run_student(student, case, state, [call, changed]).outputs
    keep = call["kwargs"]["attention_mask"]
    checks.assert_close(checks.real_positions(moved[:, : t + 1], None if keep is None else keep[:, : t + 1]),
                        checks.real_positions(plain[:, : t + 1], None if keep is None else keep[:, : t + 1]),
                        tolerances.ARCH_LAYER, what=f"outputs at positions 0..{t} after changing positions {t + 1}..",
                        hint="self-attention needs attn_mask=future_mask(T): position i may see keys 0..i only")


@pytest.mark.points(1)
@pytest.mark.task("DecoderLayer")
@given(case=strategies.arch_cases(kinds=("DecoderLayer",), padded=False))
def test_decoder_layer_norm_placement(student, case):
    """Hooks on norm1, norm2, norm3: where each sits relative to the residual, for norm_first True and False."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    out, seen = watch_norms(student, case, ["norm1", "norm2", "norm3"], state, call)
    assert_norm_placement(out, call["args"][0], seen, ["norm1", "norm2", "norm3"], case.norm_first, "DecoderLayer")


@pytest.mark.points(1)
@pytest.mark.task("DecoderLayer")
@given(case=strategies.arch_cases(kinds=("DecoderLayer",), padded=False))
def test_decoder_layer_cross_attention_reads_memory(student, case):
    """A hook on cross_attn: its keys and values are the memory, as given; its queries come from the decoder."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    result = run_student(student, case, state, [
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, ["cross_attn"]], "store": "seen"}, call],
        attrs=("seen",))
    records = result.attrs["seen"]["cross_attn"]
    if len(records) != 1:
        checks.fail(f"cross_attn ran {len(records)} times in one forward pass, expected once")
    record = records[0]
    inputs = list(record["args"]) + [record["kwargs"].get(k) for k in ("query", "key", "value")
                                     if record["kwargs"].get(k) is not None]
    if len(inputs) < 3:
        checks.fail("cross_attn was not called with query, key and value")
    query, key, value = inputs[:3]
    memory = call["args"][1]
    tol = tolerances.ARCH_LAYER
    for name, got in (("key", key), ("value", value)):
        if tuple(got.shape) != tuple(memory.shape) or not torch.allclose(got, memory, rtol=tol.rtol, atol=tol.atol):
            checks.fail(f"cross_attn's {name} is not the memory passed to forward (shape {tuple(got.shape)}); "
                        "cross-attention reads keys and values from the encoder's output, unchanged")
    if tuple(query.shape) != tuple(call["args"][0].shape):
        checks.fail(f"cross_attn's query has shape {tuple(query.shape)}; queries come from the decoder's stream "
                    f"{tuple(call['args'][0].shape)}")


# --- Transformer -----------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("Transformer")
@given(case=strategies.arch_cases(kinds=("Transformer",)))
def test_transformer_matches_reference(student, reference, case):
    """Transformer's logits equal the reference's under the same weights, over configs, norm placement and padding."""
    assert_matches_reference(student, reference, case, "encode src, decode tgt against the memory, tied logits")


@pytest.mark.points(1)
@pytest.mark.task("Transformer")
@given(case=strategies.arch_cases(kinds=("Transformer",)))
def test_transformer_output_shape(student, case):
    """Logits (B, T_tgt, vocab_size), float32 and finite, for the default dtype and initialisation."""
    call = forward_call(case)
    out = student.module("Transformer", case.init(), calls=[call]).output
    out = checks.check_tensor(out, what="Transformer(src, tgt)", shape=(case.batch, case.tgt_len, case.vocab_size),
                              dtype=torch.float32)
    checks.assert_finite(checks.real_positions(out, call["kwargs"]["tgt_attention_mask"]), what="Transformer(src, tgt)")


def changed_after(tokens: torch.Tensor, t: int, vocab_size: int) -> torch.Tensor:
    """`tokens` with every position after t replaced by another token."""
    out = tokens.clone()
    out[:, t + 1:] = (tokens[:, t + 1:] + 1) % vocab_size
    return out


@pytest.mark.points(1)
@pytest.mark.task("Transformer")
@given(case=strategies.arch_cases(kinds=("Transformer",), padded=False, min_len=2), cut=st.integers(0, 6))
def test_transformer_decoder_is_causal(student, case, cut):
    """Changing target tokens after position t leaves the logits at positions <= t unchanged."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    src, tgt = call["args"]
    t = min(cut, tgt.shape[1] - 2)
    changed = {**call, "args": [src, changed_after(tgt, t, case.vocab_size)]}
    plain, moved = run_student(student, case, state, [call, changed]).outputs
    checks.assert_close(moved[:, : t + 1], plain[:, : t + 1], tolerances.ARCH_LAYER,
                        what=f"logits at positions 0..{t} after changing target tokens {t + 1}..",
                        hint="every decoder layer's self-attention is causal (future_mask)")


@pytest.mark.points(1)
@pytest.mark.task("Transformer")
@given(case=strategies.arch_cases(kinds=("Transformer",), padded=False, max_len=6), extra=st.integers(1, 4),
       side=st.sampled_from(("src", "tgt")))
def test_transformer_padding_invariance(student, case, extra, side):
    """Appending padding (with its mask) to src or tgt leaves the logits at the real target positions unchanged."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    src, tgt = call["args"]
    grown = {"src": src, "tgt": tgt}
    grown[side] = torch.cat([grown[side], case.tokens(extra, 5)], dim=1)  # (B, L + extra)
    masks = {k: torch.arange(v.shape[1]) < (src if k == "src" else tgt).shape[1] for k, v in grown.items()}
    padded = {"fn": "self.forward", "args": [grown["src"], grown["tgt"]],
              "kwargs": {"src_attention_mask": masks["src"].expand(case.batch, -1),
                         "tgt_attention_mask": masks["tgt"].expand(case.batch, -1)}}
    plain, with_padding = run_student(student, case, state, [call, padded]).outputs
    with_padding = checks.check_tensor(with_padding, what="logits with padding",
                                       shape=(case.batch, grown["tgt"].shape[1], case.vocab_size))
    checks.assert_close(with_padding[:, : tgt.shape[1]], plain, tolerances.ARCH_LAYER,
                        what=f"logits at real positions with {extra} padding tokens appended to {side}",
                        hint="the source mask goes to the encoder's self-attention and to every cross-attention; "
                        "the target mask to the decoder's self-attention (True = real token)")


@pytest.mark.points(1)
@pytest.mark.task("Transformer")
@given(case=strategies.arch_cases(kinds=("Transformer",), padded=False))
def test_transformer_reads_the_source(student, case):
    """Changing the source tokens changes the logits: the decoder reads the encoder through cross-attention."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    src, tgt = call["args"]
    changed = {**call, "args": [(src + 1 + case.tokens(src.shape[1], 6) % (case.vocab_size - 1)) % case.vocab_size,
                                tgt]}
    plain, moved = run_student(student, case, state, [call, changed]).outputs
    plain = checks.check_tensor(plain, what="Transformer(src, tgt)", shape=tuple(moved.shape))
    if torch.allclose(plain, moved, rtol=1e-6, atol=1e-6):
        checks.fail("the logits did not change when every source token changed: the decoder's cross-attention "
                    "must take its keys and values from encode(src)")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [kind_param(k) for k in MODELS])
@given(data=st.data())
def test_parameters_are_named_as_the_contract(student, kind, data):
    """Exactly the contract's parameters: the output layer is tied (no weight of its own); final norms only pre-norm."""
    case = data.draw(strategies.arch_cases(kinds=(kind,), padded=False), label="case")
    got = student.module(kind, case.init(), calls=[], parameter_shapes=True).parameter_shapes
    want = {k: list(v) for k, v in strategies.parameter_shapes(kind, case.init()).items()}
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    if extra or missing:
        checks.fail(f"{kind}(norm_first={case.norm_first}) parameters differ from the contract's: extra {extra[:4]}, "
                    f"missing {missing[:4]} (an untied output layer or a final norm in a post-norm model shows here)")
    wrong = sorted(k for k in want if got[k] != want[k])
    if wrong:
        checks.fail(f"{kind}: {wrong[0]} has shape {got[wrong[0]]}")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [kind_param("Transformer"), kind_param("DecoderOnly")])
@given(data=st.data())
def test_logits_use_the_embedding_matrix(student, kind, data):
    """The logits are the last hidden states times embedding.weight transposed (no bias, no scale)."""
    case = data.draw(strategies.arch_cases(kinds=(kind,), padded=False), label="case")
    state = architecture_state(kind, case.init(), seed=case.seed)
    call = forward_call(case)
    stack, norm = ("decoder_layers", "decoder_norm") if kind == "Transformer" else ("layers", "norm")
    last = norm if case.norm_first else f"{stack}.{case.num_layers - 1}"
    result = run_student(student, case, state, [
        {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, [last]], "store": "seen"}, call],
        attrs=("seen",))
    records = result.attrs["seen"][last]
    if not records:
        checks.fail(f"{last} did not run")
    hidden = records[-1]["output"]
    expected = hidden @ state["embedding.weight"].T  # (B, T, V)
    checks.assert_close(result.outputs[1], expected, tolerances.ARCH_LAYER, what=f"{kind} logits vs {last}'s output "
                        "times embedding.weight.T", hint="tie the output layer: h @ self.embedding.weight.T")


# --- EncoderOnly and DecoderOnly -------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("EncoderOnly")
@given(case=strategies.arch_cases(kinds=("EncoderOnly",)))
def test_encoder_only_matches_reference(student, reference, case):
    """EncoderOnly's hidden states equal the reference's under the same weights, with padding."""
    assert_matches_reference(student, reference, case, "embed, encoder layers without a causal mask, final norm "
                             "only in pre-norm")


@pytest.mark.points(1)
@pytest.mark.task("EncoderOnly")
@given(case=strategies.arch_cases(kinds=("EncoderOnly",), padded=False, min_len=2))
def test_encoder_only_is_bidirectional(student, case):
    """Changing the last token changes the first position's hidden state (an encoder looks both ways)."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    tokens = call["args"][0]
    changed = {**call, "args": [torch.cat([tokens[:, :-1], (tokens[:, -1:] + 1) % case.vocab_size], dim=1)]}
    plain, moved = run_student(student, case, state, [call, changed]).outputs
    plain = checks.check_tensor(plain, what="EncoderOnly(tokens)", shape=tuple(moved.shape))
    if torch.allclose(plain[:, 0], moved[:, 0], rtol=1e-9, atol=1e-9):
        checks.fail("the first position's hidden state ignores the last token: EncoderOnly must not use a causal mask")


@pytest.mark.points(2)
@pytest.mark.task("DecoderOnly")
@given(case=strategies.arch_cases(kinds=("DecoderOnly",)))
def test_decoder_only_matches_reference(student, reference, case):
    """DecoderOnly's logits equal the reference's under the same weights, with padding."""
    assert_matches_reference(student, reference, case, "embed, causal encoder-shaped layers, final norm only in "
                             "pre-norm, tied logits")


@pytest.mark.points(1)
@pytest.mark.task("DecoderOnly")
@given(case=strategies.arch_cases(kinds=("DecoderOnly",), padded=False, min_len=2), cut=st.integers(0, 6))
def test_decoder_only_is_causal(student, case, cut):
    """Changing tokens after position t leaves the logits at positions <= t unchanged."""
    state = architecture_state(case.kind, case.init(), seed=case.seed)
    call = forward_call(case)
    tokens = call["args"][0]
    t = min(cut, tokens.shape[1] - 2)
    plain, moved = run_student(student, case, state, [
        call, {**call, "args": [changed_after(tokens, t, case.vocab_size)]}]).outputs
    checks.assert_close(moved[:, : t + 1], plain[:, : t + 1], tolerances.ARCH_LAYER,
                        what=f"logits at positions 0..{t} after changing tokens {t + 1}..",
                        hint="run every layer with is_causal=True (attn_mask=future_mask(T))")


# --- parameter counts ------------------------------------------------------------------------


def torch_module(kind: str, a: int, b: int) -> dict:
    """An object spec the worker builds from torch.nn (nothing of the student's)."""
    if kind == "linear":
        return {"cls": "Linear", "module": "torch.nn", "init": {"in_features": a, "out_features": b}}
    if kind == "linear_nobias":
        return {"cls": "Linear", "module": "torch.nn", "init": {"in_features": a, "out_features": b, "bias": False}}
    if kind == "layernorm":
        return {"cls": "LayerNorm", "module": "torch.nn", "init": {"normalized_shape": a}}
    return {"cls": "tied_embedding", "module": "$harness", "init": {"vocab_size": a, "d_model": b}}


def expected_count(kind: str, a: int, b: int) -> int:
    return {"linear": a * b + b, "linear_nobias": a * b, "layernorm": 2 * a, "tied": a * b}[kind]


@pytest.mark.points(1)
@pytest.mark.task("count_parameters")
@given(kind=st.sampled_from(("linear", "linear_nobias", "layernorm", "tied")), a=st.integers(1, 50),
       b=st.integers(1, 50))
def test_count_parameters(student, kind, a, b):
    """count_parameters counts every parameter tensor once; a weight tied between two layers counts once."""
    got = student.run(objects={"m": torch_module(kind, a, b)},
                      calls=[{"fn": "count_parameters", "args": [{"$obj": "m"}]}]).output
    if got != expected_count(kind, a, b):
        checks.fail(f"count_parameters of {kind}({a}, {b}) returned {got!r}"
                    + ("; a tied weight is one tensor: model.parameters() visits it once" if kind == "tied" else ""))


@pytest.mark.points(2)
@pytest.mark.task("transformer_parameter_count")
@given(vocab_size=st.integers(1, 300), num_heads=st.sampled_from((1, 2, 4)), head_dim=st.integers(1, 8),
       num_layers=st.integers(0, 3), d_ff=st.integers(1, 64))
def test_closed_form_matches_a_built_model(student, reference, vocab_size, num_heads, head_dim, num_layers, d_ff):
    """transformer_parameter_count equals the parameters of a built (post-norm) Transformer, for random configs."""
    d_model = 2 * num_heads * head_dim
    model = reference.Transformer(vocab_size, d_model, num_heads, num_layers, d_ff, max_seq_len=2, dropout=0.0)
    want = sum(p.numel() for p in model.parameters())
    got = student.call("transformer_parameter_count", vocab_size, d_model, num_layers, d_ff)
    if got != want:
        checks.fail(f"transformer_parameter_count({vocab_size}, {d_model}, {num_layers}, {d_ff}) returned {got!r}, "
                    "not the number of parameters of Transformer built with these sizes; count each piece with its "
                    "biases: four D x D projections per attention, two linears, two (encoder) or three (decoder) "
                    "norms per layer, one shared embedding")
