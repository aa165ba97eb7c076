"""Hypothesis strategies for every suite, and the builders that turn a case into tensors.

Strategies draw small, readable *cases* (shapes, a mask kind, a dtype, a seed), not raw
tensors: when a test fails, Hypothesis shrinks the case and the student sees something like
`AttentionCase(lead=(), q_len=1, k_len=2, d_k=1, d_v=1, mask='causal', ...)`.
Tensors are then built from the case's seed, deterministically. All strategies are
keyword-only and bounded, and built with `builds`/`composite`, not filters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

DTYPES = (torch.float32, torch.float64)
MASK_KINDS = ("none", "causal", "padding", "random", "fully_masked_row")


def seeds() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=2**31 - 1)


def dtypes() -> st.SearchStrategy[torch.dtype]:
    return st.sampled_from(DTYPES)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(shape: tuple[int, ...], *, seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    """Standard normal values in float64 rounded to `dtype`, the same on every machine."""
    return (torch.randn(shape, generator=generator(seed), dtype=torch.float64) * scale).to(dtype)


# --- softmax --------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftmaxCase:
    shape: tuple[int, ...]
    dim: int
    dtype: torch.dtype
    scale: float  # logits ~ N(0, scale^2)
    neg_inf: bool  # some entries (never a whole slice) are -inf
    seed: int

    def logits(self) -> torch.Tensor:
        x = randn(self.shape, seed=self.seed, dtype=self.dtype, scale=self.scale)
        if self.neg_inf:
            drop = torch.rand(self.shape, generator=generator(self.seed + 1)) < 0.3
            first = [slice(None)] * len(self.shape)
            first[self.dim] = 0
            drop[tuple(first)] = False  # keep one finite entry per slice
            x = x.masked_fill(drop, float("-inf"))
        return x


@st.composite
def softmax_cases(draw, *, max_dims: int = 3, max_side: int = 7, scales: tuple[float, ...] = (1.0, 10.0)) -> SoftmaxCase:
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=1, max_size=max_dims)))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return SoftmaxCase(shape=shape, dim=dim, dtype=draw(dtypes()), scale=draw(st.sampled_from(scales)),
                       neg_inf=draw(st.booleans()), seed=draw(seeds()))


# --- scaled dot-product attention ------------------------------------------------------


@dataclass(frozen=True)
class AttentionCase:
    lead: tuple[int, ...]  # the leading dims `...` of q, k and v, e.g. (batch, heads); 0 to 3 of them
    q_len: int
    k_len: int
    d_k: int
    d_v: int
    mask: str  # one of MASK_KINDS
    bias: bool  # an additive float bias (like ALiBi) broadcast over the first leading dim
    dtype: torch.dtype
    seed: int

    def tensors(self) -> dict[str, torch.Tensor | None]:
        """q, k, v, mask and bias for this case."""
        tq, tk = self.q_len, self.k_len
        q = randn((*self.lead, tq, self.d_k), seed=self.seed, dtype=self.dtype)
        k = randn((*self.lead, tk, self.d_k), seed=self.seed + 1, dtype=self.dtype)
        v = randn((*self.lead, tk, self.d_v), seed=self.seed + 2, dtype=self.dtype)
        bias = randn((*self.lead[1:], tq, tk), seed=self.seed + 3, dtype=self.dtype) if self.bias else None
        return {"q": q, "k": k, "v": v, "mask": self.mask_tensor(), "bias": bias}

    def mask_tensor(self) -> torch.Tensor | None:
        """`make_mask`'s mask with its batch dim on the first leading dim and 1 on the others, so
        it broadcasts to (..., Tq, Tk) for any number of leading dims (none: one sequence)."""
        mask = make_mask(self.mask, self.lead[0] if self.lead else 1, self.q_len, self.k_len, seed=self.seed + 4)
        if mask is None or mask.dim() == 2:
            return mask
        batch = mask.shape[:1] if self.lead else ()
        return mask.reshape(*batch, *[1] * max(len(self.lead) - 1, 0), *mask.shape[-2:])


def make_mask(kind: str, batch: int, q_len: int, k_len: int, *, seed: int) -> torch.Tensor | None:
    """A boolean mask (True = may attend) broadcastable to (batch, heads, q_len, k_len)."""
    if kind == "none":
        return None
    if kind == "causal":  # query i at absolute position k_len - q_len + i
        i = torch.arange(q_len)[:, None]
        j = torch.arange(k_len)[None, :]
        return j <= (k_len - q_len) + i  # (Tq, Tk)
    if kind == "padding":  # each sequence keeps a prefix of >= 1 real keys
        lengths = torch.randint(1, k_len + 1, (batch,), generator=generator(seed))
        return (torch.arange(k_len)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Tk)
    random = torch.rand((batch, 1, q_len, k_len), generator=generator(seed)) < 0.6  # (B, 1, Tq, Tk)
    if kind == "random":
        random[..., 0] = True  # no fully masked rows here
        return random
    if kind == "fully_masked_row":
        random[..., 0] = True
        random[:, :, torch.randint(0, q_len, (1,), generator=generator(seed + 1)).item(), :] = False
        return random
    raise ValueError(f"unknown mask kind {kind!r}")


@st.composite
def attention_cases(draw, *, masks: tuple[str, ...] = MASK_KINDS, bias: bool | None = None,
                    dtype: torch.dtype | None = None, max_len: int = 8, max_dim: int = 16) -> AttentionCase:
    q_len = draw(st.integers(1, max_len))
    # The causal convention needs q_len <= k_len; other masks take any lengths.
    k_len = draw(st.integers(q_len if "causal" in masks else 1, max_len + 2))
    return AttentionCase(
        lead=tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))), q_len=q_len, k_len=k_len,
        d_k=draw(st.integers(1, max_dim)), d_v=draw(st.integers(1, max_dim)),
        mask=draw(st.sampled_from(masks)),
        bias=draw(st.booleans()) if bias is None else bias,
        dtype=draw(dtypes()) if dtype is None else dtype,
        seed=draw(seeds()),
    )


# --- multi-head attention --------------------------------------------------------------


@dataclass(frozen=True)
class MHACase:
    d_model: int
    num_heads: int
    num_kv_heads: int
    bias: bool
    batch: int
    q_len: int
    kv_len: int  # == q_len for self-attention
    cross: bool  # key/value come from a separate sequence
    mask: str
    dtype: torch.dtype
    seed: int

    @property
    def init(self) -> dict:
        return {"d_model": self.d_model, "num_heads": self.num_heads, "num_kv_heads": self.num_kv_heads,
                "bias": self.bias}

    def inputs(self) -> dict[str, torch.Tensor | None]:
        x = randn((self.batch, self.q_len, self.d_model), seed=self.seed, dtype=self.dtype)
        memory = randn((self.batch, self.kv_len, self.d_model), seed=self.seed + 1, dtype=self.dtype)
        return {"query": x, "key": memory if self.cross else None,
                "mask": make_mask(self.mask, self.batch, self.q_len, self.kv_len, seed=self.seed + 2)}


# Head layouts: every kv head serves one query head (mha), several (gqa: 1 < Hkv < H, the only
# layout where the order of repetition shows), or all of them (mqa).
LAYOUTS = ("mha", "gqa", "mqa")


@st.composite
def mha_cases(draw, *, masks: tuple[str, ...] = MASK_KINDS, cross: bool | None = None,
              layouts: tuple[str, ...] = LAYOUTS, dtype: torch.dtype | None = None, min_len: int = 1,
              even_head_dim: bool = False) -> MHACase:
    layout = draw(st.sampled_from(layouts))
    if layout == "gqa":
        num_heads = draw(st.sampled_from((4, 8)))
        num_kv_heads = draw(st.sampled_from([d for d in (2, 4) if d < num_heads]))
    else:
        num_heads = draw(st.sampled_from((1, 2, 4)))
        num_kv_heads = num_heads if layout == "mha" else 1
    # RoPE rotates pairs of dimensions, so attention with it needs an even head_dim.
    head_dim = 2 * draw(st.integers(1, 4)) if even_head_dim else draw(st.integers(1, 8))
    is_cross = draw(st.booleans()) if cross is None else cross
    mask = draw(st.sampled_from(masks))
    q_len = draw(st.integers(min_len, 7))
    kv_len = draw(st.integers(q_len if mask == "causal" else min_len, 9)) if is_cross else q_len
    return MHACase(
        d_model=num_heads * head_dim, num_heads=num_heads, num_kv_heads=num_kv_heads,
        bias=draw(st.booleans()), batch=draw(st.integers(1, 3)), q_len=q_len, kv_len=kv_len, cross=is_cross,
        mask=mask, dtype=draw(dtypes()) if dtype is None else dtype, seed=draw(seeds()),
    )


def chunkings(total: int) -> st.SearchStrategy[list[int]]:
    """Ways to feed `total` tokens through a cache: chunk sizes >= 1 that add up to `total`."""
    return st.lists(st.booleans(), min_size=total - 1, max_size=total - 1).map(
        lambda cuts: _sizes_from_cuts(cuts, total))


def _sizes_from_cuts(cuts: list[bool], total: int) -> list[int]:
    sizes, current = [], 1
    for cut in cuts:
        if cut:
            sizes.append(current)
            current = 1
        else:
            current += 1
    return sizes + [current] if total else []


# --- positional encodings (chapter 03) -------------------------------------------------------

BASES = (10000.0, 500.0, 1e6)  # RoFormer/Llama 2's 10000, a short and a long wavelength scale


@dataclass(frozen=True)
class SinusoidCase:
    max_len: int
    d_model: int
    base: float

    @property
    def max_angle(self) -> float:
        """The largest position times the largest frequency (1): the size of the angles."""
        return float(max(self.max_len - 1, 0))


@st.composite
def sinusoid_cases(draw, *, max_len: int = 64, max_dim: int = 64) -> SinusoidCase:
    return SinusoidCase(max_len=draw(st.integers(1, max_len)), d_model=2 * draw(st.integers(1, max_dim // 2)),
                        base=draw(st.sampled_from(BASES)))


@dataclass(frozen=True)
class RopeCase:
    lead: tuple[int, ...]  # leading dims of x, e.g. (batch, heads)
    seq_len: int
    head_dim: int
    base: float
    interleaved: bool
    start: int  # the first row's absolute position; the rows sit at start, start + 1, ...
    dtype: torch.dtype
    seed: int

    @property
    def init(self) -> dict:
        return {"head_dim": self.head_dim, "base": self.base, "interleaved": self.interleaved}

    @property
    def max_angle(self) -> float:
        return float(self.start + self.seq_len - 1)

    def x(self) -> torch.Tensor:
        return randn((*self.lead, self.seq_len, self.head_dim), seed=self.seed, dtype=self.dtype)

    def positions(self) -> torch.Tensor:
        return torch.arange(self.start, self.start + self.seq_len)


@st.composite
def rope_cases(draw, *, max_start: int = 1000, starts: tuple[int, ...] = (), dtype: torch.dtype | None = None,
               interleaved: bool | None = None, max_len: int = 8) -> RopeCase:
    """Rotary inputs: 0-2 leading dims, even head_dim up to 16, positions from `start` (drawn in
    [0, max_start], or from `starts` when given)."""
    start = draw(st.sampled_from(starts)) if starts else draw(st.integers(0, max_start))
    return RopeCase(lead=tuple(draw(st.lists(st.integers(1, 3), max_size=2))), seq_len=draw(st.integers(1, max_len)),
                    head_dim=2 * draw(st.integers(1, 8)), base=draw(st.sampled_from(BASES)),
                    interleaved=draw(st.booleans()) if interleaved is None else interleaved, start=start,
                    dtype=draw(dtypes()) if dtype is None else dtype, seed=draw(seeds()))


@dataclass(frozen=True)
class AlibiCase:
    num_heads: int
    q_len: int
    k_len: int  # >= q_len; k_len - q_len earlier positions sit in a cache

    @property
    def offset(self) -> int:
        return self.k_len - self.q_len


@st.composite
def alibi_cases(draw, *, max_heads: int = 64, max_len: int = 12, cache: bool = True) -> AlibiCase:
    q_len = draw(st.integers(1, max_len))
    k_len = q_len + (draw(st.integers(0, max_len)) if cache else 0)
    return AlibiCase(num_heads=draw(st.integers(1, max_heads)), q_len=q_len, k_len=k_len)


# --- feed-forward networks (chapter 04) ------------------------------------------------------

ACTIVATION_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
ACTIVATION_SCALES = (1.0, 4.0, 30.0, 1e4)  # ordinary inputs, the curved region, saturation, +-1e4


@dataclass(frozen=True)
class ActivationCase:
    shape: tuple[int, ...]
    scale: float  # x ~ N(0, scale^2), so scale 1e4 reaches +-1e4 and beyond
    dtype: torch.dtype
    seed: int

    def x(self) -> torch.Tensor:
        return randn(self.shape, seed=self.seed, dtype=torch.float64, scale=self.scale).to(self.dtype)


@st.composite
def activation_cases(draw, *, dtypes_: tuple[torch.dtype, ...] = ACTIVATION_DTYPES,
                     scales: tuple[float, ...] = ACTIVATION_SCALES) -> ActivationCase:
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    return ActivationCase(shape=shape, scale=draw(st.sampled_from(scales)), dtype=draw(st.sampled_from(dtypes_)),
                          seed=draw(seeds()))


FFN_ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")


@dataclass(frozen=True)
class FFNCase:
    kind: str  # "feedforward" or "swiglu"
    d_model: int
    d_ff: int | None  # None: the module's default width
    activation: str  # feedforward only
    bias: bool
    multiple_of: int  # swiglu only: rounding of the default width
    lead: tuple[int, ...]  # the `...` of x's (..., D): 0 to 3 leading dims, e.g. (), (seq,), (batch, seq)
    dtype: torch.dtype
    seed: int

    @property
    def positions(self) -> int:
        """How many D-vectors x holds: the product of the leading dims (1 for a single vector)."""
        return math.prod(self.lead)

    @property
    def cls(self) -> str:
        return "FeedForward" if self.kind == "feedforward" else "SwiGLU"

    @property
    def init(self) -> dict:
        if self.kind == "feedforward":
            return {"d_model": self.d_model, "d_ff": self.d_ff, "activation": self.activation, "bias": self.bias}
        return {"d_model": self.d_model, "d_ff": self.d_ff, "multiple_of": self.multiple_of, "bias": self.bias}

    def x(self) -> torch.Tensor:
        return randn((*self.lead, self.d_model), seed=self.seed, dtype=self.dtype)


@st.composite
def ffn_cases(draw, *, kinds: tuple[str, ...] = ("feedforward", "swiglu"), dtype: torch.dtype | None = None,
              min_positions: int = 1) -> FFNCase:
    """Small FFNs: d_model <= 16, d_ff <= 48 or the default (at most 4 * 16 = 64 for the classic
    FFN; SwiGLU's default rounds to `multiple_of`, kept small here), on inputs of 0 to 3 leading
    dims of up to 4 each (the handout's `(..., D)`): a single vector (D,), rows (T, D), batches
    (B, T, D) and more. `min_positions` > 1 asks for at least that many D-vectors (the first
    leading dim is raised to it)."""
    kind = draw(st.sampled_from(kinds))
    d_model = draw(st.integers(1, 16))
    d_ff = draw(st.one_of(st.none(), st.integers(1, 48)))
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=1 if min_positions > 1 else 0, max_size=3)))
    if min_positions > 1:
        lead = (max(lead[0], min_positions), *lead[1:])
    return FFNCase(kind=kind, d_model=d_model, d_ff=d_ff, activation=draw(st.sampled_from(FFN_ACTIVATIONS)),
                   bias=draw(st.booleans()), multiple_of=draw(st.sampled_from((1, 8, 16))), lead=lead,
                   dtype=draw(dtypes()) if dtype is None else dtype, seed=draw(seeds()))


# --- normalization (chapter 05) ---------------------------------------------------------------

NORM_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class NormCase:
    lead: tuple[int, ...]  # leading dims, e.g. (batch, seq)
    features: tuple[int, ...]  # the normalized trailing dims (one for RMSNorm and BatchNorm)
    eps: float
    affine: bool
    bias: bool
    dtype: torch.dtype
    scale: float  # x ~ offset + N(0, scale^2)
    offset: float  # at most 30 spreads: further out, float32's (x - mean) alone loses digits
    seed: int

    def x(self) -> torch.Tensor:
        raw = randn((*self.lead, *self.features), seed=self.seed, dtype=torch.float64, scale=self.scale)
        return (raw + self.offset).to(self.dtype)

    def params(self) -> dict[str, torch.Tensor]:
        """Non-trivial affine parameters (not ones and zeros), in float32."""
        weight = randn(self.features, seed=self.seed + 1, scale=0.5) + 1.0
        bias = randn(self.features, seed=self.seed + 2, scale=0.5)
        return {"weight": weight, "bias": bias}


@st.composite
def norm_cases(draw, *, max_trailing: int = 1, dtypes_: tuple[torch.dtype, ...] = NORM_DTYPES,
               min_count: int = 1, eps: tuple[float, ...] = (1e-5, 1e-6, 1e-3)) -> NormCase:
    """Inputs for a norm: 0-3 leading dims (at least one, of `min_count` or more, where a statistic
    needs several rows), 1..`max_trailing` normalized dims of width <= 16, values with a spread
    from 0.1 to 30 around an offset of 0, 3 or 30 spreads."""
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=0 if min_count <= 1 else 1, max_size=3)))
    if lead:
        lead = (max(lead[0], min_count), *lead[1:])
    features = tuple(draw(st.lists(st.integers(2, 16), min_size=1, max_size=max_trailing)))
    affine = draw(st.booleans())
    return NormCase(lead=lead, features=features, eps=draw(st.sampled_from(eps)), affine=affine,
                    bias=affine and draw(st.booleans()), dtype=draw(st.sampled_from(dtypes_)),
                    scale=(scale := draw(st.sampled_from((0.1, 1.0, 30.0)))),
                    offset=scale * draw(st.sampled_from((0.0, 3.0, 30.0))), seed=draw(seeds()))


# --- chapter 06: training dynamics ------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleCase:
    max_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def kwargs(self) -> dict:
        return {"max_lr": self.max_lr, "min_lr": self.min_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


@st.composite
def schedule_cases(draw, *, warmup: bool | None = None, min_decay: int = 0) -> ScheduleCase:
    """Learning rates from 1e-5 to 1, min_lr 0 or a fraction of max_lr, a warm-up of 0 to 2000
    steps (at least 1 when `warmup`, exactly 0 when it is False) and a decay of `min_decay` to
    10^5 steps after it."""
    max_lr = draw(st.sampled_from((1e-5, 3e-4, 6e-4, 1e-3, 0.1, 1.0)))
    min_lr = max_lr * draw(st.sampled_from((0.0, 0.1, 0.5, 1.0)))
    low = 1 if warmup else 0
    warmup_steps = 0 if warmup is False else draw(st.integers(min_value=low, max_value=2000))
    decay_steps = draw(st.integers(min_value=min_decay, max_value=100_000))
    return ScheduleCase(max_lr, min_lr, warmup_steps, warmup_steps + decay_steps)


@dataclass(frozen=True)
class CrossEntropyCase:
    shape: tuple[int, ...]  # the targets' shape; the logits add a last dim of `vocab`
    vocab: int
    scale: float  # logits ~ N(0, scale^2)
    ignored: float  # the fraction of targets set to ignore_index (never all of them)
    ignore_index: int
    dtype: torch.dtype
    seed: int

    def logits(self) -> torch.Tensor:
        return randn((*self.shape, self.vocab), seed=self.seed, dtype=self.dtype, scale=self.scale)

    def targets(self) -> torch.Tensor:
        t = torch.randint(0, self.vocab, self.shape, generator=generator(self.seed + 1))
        t.view(-1)[0] = (self.ignore_index + 1) % self.vocab  # one target always counts (ignore_index may be a class)
        drop = torch.rand(self.shape, generator=generator(self.seed + 2)) < self.ignored
        drop.view(-1)[0] = False
        return t.masked_fill(drop, self.ignore_index)


@st.composite
def cross_entropy_cases(draw, *, dtypes_: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
                        scales: tuple[float, ...] = (1.0, 30.0)) -> CrossEntropyCase:
    """0 to 3 leading dims of up to 6 (the handout's logits `(..., V)`, targets `(...)`: a single
    (V,) row with a 0-dim target too), a vocabulary of 2 to 50, some targets ignored."""
    shape = tuple(draw(st.lists(st.integers(min_value=1, max_value=6), min_size=0, max_size=3)))
    return CrossEntropyCase(shape, draw(st.integers(min_value=2, max_value=50)), draw(st.sampled_from(scales)),
                            draw(st.sampled_from((0.0, 0.3))), draw(st.sampled_from((-100, -1, 0))),
                            draw(st.sampled_from(dtypes_)), draw(seeds()))


@dataclass(frozen=True)
class ClipCase:
    shapes: tuple[tuple[int, ...], ...]
    has_grad: tuple[bool, ...]
    grad_scale: float
    max_norm: float
    dtype: torch.dtype
    seed: int

    def params(self) -> list[torch.Tensor]:
        return [randn(shape, seed=self.seed + i, dtype=self.dtype) for i, shape in enumerate(self.shapes)]

    def grads(self) -> list[torch.Tensor | None]:
        return [randn(shape, seed=self.seed + 100 + i, dtype=self.dtype, scale=self.grad_scale) if has else None
                for i, (shape, has) in enumerate(zip(self.shapes, self.has_grad))]


@st.composite
def clip_cases(draw) -> ClipCase:
    """1 to 4 parameters of 1 to 2 dims, some without a gradient; gradients small or large
    against max_norm, so clipping happens in some cases and not in others."""
    count = draw(st.integers(min_value=1, max_value=4))
    shapes = tuple(tuple(draw(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=2)))
                   for _ in range(count))
    has_grad = tuple(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
    return ClipCase(shapes, has_grad, draw(st.sampled_from((0.01, 1.0, 100.0))),
                    draw(st.sampled_from((0.1, 1.0, 5.0))), draw(dtypes()), draw(seeds()))


@dataclass(frozen=True)
class AdamCase:
    shapes: tuple[tuple[int, ...], ...]  # one parameter per shape; the last one is in a second group
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    steps: int
    grad_scale: float  # gradients ~ N(0, grad_scale^2): small ones make eps matter
    lr_later: float  # the rate set on every group halfway through
    seed: int

    def params(self) -> list[torch.Tensor]:
        return [randn(shape, seed=self.seed + i, dtype=torch.float64) for i, shape in enumerate(self.shapes)]

    def grads(self, step: int) -> list[torch.Tensor]:
        return [randn(shape, seed=self.seed + 1000 * (step + 1) + i, dtype=torch.float64, scale=self.grad_scale)
                for i, shape in enumerate(self.shapes)]


@st.composite
def adam_cases(draw, *, max_steps: int = 25) -> AdamCase:
    count = draw(st.integers(min_value=1, max_value=3))
    shapes = tuple(tuple(draw(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=2)))
                   for _ in range(count))
    return AdamCase(shapes, draw(st.sampled_from((1e-3, 1e-2, 0.1))),
                    draw(st.sampled_from(((0.9, 0.999), (0.9, 0.95), (0.5, 0.9), (0.0, 0.99)))),
                    draw(st.sampled_from((1e-8, 1e-6, 1e-3))), draw(st.sampled_from((0.0, 0.01, 0.1))),
                    draw(st.integers(min_value=1, max_value=max_steps)), draw(st.sampled_from((1e-6, 1e-3, 1.0, 50.0))),
                    draw(st.sampled_from((1e-3, 0.05))), draw(seeds()))


@dataclass(frozen=True)
class StepCase:
    vocab: int
    d_model: int
    micro_batches: int
    batch: int  # rows per micro-batch
    seq_len: int
    max_grad_norm: float | None
    seed: int

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights for the harness's tiny language model, drawn from the seed."""
        shapes = {"0.weight": (self.vocab, self.d_model), "2.weight": (self.d_model, self.d_model),
                  "2.bias": (self.d_model,), "4.weight": (self.vocab, self.d_model), "4.bias": (self.vocab,)}
        return {name: randn(shape, seed=self.seed + i, scale=0.5) for i, (name, shape) in enumerate(shapes.items())}

    def micro(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = generator(self.seed + 99)
        out = []
        for _ in range(self.micro_batches):
            x = torch.randint(0, self.vocab, (self.batch, self.seq_len), generator=gen)  # (B, T)
            out.append((x, torch.randint(0, self.vocab, (self.batch, self.seq_len), generator=gen)))
        return out


@st.composite
def step_cases(draw, *, clip: bool | None = None) -> StepCase:
    """A tiny model (vocabulary <= 12, width <= 8), 1 to 4 micro-batches of equal size."""
    max_grad_norm = None if clip is False else draw(st.sampled_from((0.05, 1.0, 100.0) if clip else
                                                                     (None, 0.05, 1.0)))
    return StepCase(draw(st.integers(min_value=3, max_value=12)), draw(st.integers(min_value=2, max_value=8)),
                    draw(st.integers(min_value=1, max_value=4)), draw(st.integers(min_value=1, max_value=3)),
                    draw(st.integers(min_value=1, max_value=5)), max_grad_norm, draw(seeds()))


# --- chapter 01: architectures ------------------------------------------------------------

ARCHITECTURES = ("Transformer", "EncoderOnly", "DecoderOnly")
LAYERS = ("EncoderLayer", "DecoderLayer")


def real_tokens(batch: int, length: int, *, seed: int, padded: bool) -> torch.Tensor | None:
    """A padding mask (B, L), True for real tokens: each row keeps a random prefix of at least
    one token (padding at the end, as the contract asks), or None when not `padded`."""
    if not padded:
        return None
    lengths = torch.randint(1, length + 1, (batch,), generator=generator(seed))  # (B,)
    return torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)  # (B, L)


@dataclass(frozen=True)
class ArchCase:
    """One model or layer of chapter 01 and one batch for it.

    `kind` is a model (`Transformer`, `EncoderOnly`, `DecoderOnly`) or a layer (`EncoderLayer`,
    `DecoderLayer`). `src_len` is the encoder's (or the only) sequence length, `tgt_len` the
    decoder's (for layers: the memory's length is `src_len`, the layer's input `tgt_len`)."""

    kind: str
    vocab_size: int
    d_model: int
    num_heads: int
    num_layers: int
    d_ff: int
    norm_first: bool
    batch: int
    src_len: int
    tgt_len: int
    padded: bool  # random right padding on every sequence, with its mask
    seed: int
    max_seq_len: int = 12

    @property
    def is_layer(self) -> bool:
        return self.kind in LAYERS

    def init(self, dropout: float = 0.0) -> dict:
        """The constructor's keyword arguments (dropout off unless asked: outputs are deterministic)."""
        if self.is_layer:
            return {"d_model": self.d_model, "num_heads": self.num_heads, "d_ff": self.d_ff, "dropout": dropout,
                    "norm_first": self.norm_first}
        return {"vocab_size": self.vocab_size, "d_model": self.d_model, "num_heads": self.num_heads,
                "num_layers": self.num_layers, "d_ff": self.d_ff, "max_seq_len": self.max_seq_len,
                "dropout": dropout, "norm_first": self.norm_first}

    def tokens(self, length: int, offset: int = 0) -> torch.Tensor:
        """(B, length) token ids from the case's seed (`offset` draws another sequence)."""
        return torch.randint(0, self.vocab_size, (self.batch, length), generator=generator(self.seed + offset))

    def states(self, length: int, offset: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """(B, length, D) residual-stream values for a layer."""
        return randn((self.batch, length, self.d_model), seed=self.seed + offset, dtype=dtype)

    def mask(self, length: int, offset: int = 0) -> torch.Tensor | None:
        return real_tokens(self.batch, length, seed=self.seed + 100 + offset, padded=self.padded)


@st.composite
def arch_cases(draw, *, kinds: tuple[str, ...] = ARCHITECTURES, padded: bool | None = None,
               norm_first: bool | None = None, min_len: int = 1, max_len: int = 8) -> ArchCase:
    num_heads = draw(st.sampled_from((1, 2, 4)))
    # Even widths (the sinusoidal table pairs dimensions) of at least 4: a LayerNorm over 2
    # features can only output +-1 (times its weight), which hides most of what came before it.
    head_dim = 2 * draw(st.integers(2 if num_heads == 1 else 1, 3))
    return ArchCase(
        kind=draw(st.sampled_from(kinds)), vocab_size=draw(st.integers(3, 24)), d_model=num_heads * head_dim,
        num_heads=num_heads, num_layers=draw(st.integers(1, 2)), d_ff=draw(st.integers(2, 24)),
        norm_first=draw(st.booleans()) if norm_first is None else norm_first, batch=draw(st.integers(1, 3)),
        src_len=draw(st.integers(min_len, max_len)), tgt_len=draw(st.integers(min_len, max_len)),
        padded=draw(st.booleans()) if padded is None else padded, seed=draw(seeds()),
    )


def layer_parameter_shapes(d_model: int, d_ff: int, *, decoder: bool) -> dict[str, tuple[int, ...]]:
    """The contract's parameter names and shapes of an `EncoderLayer` / `DecoderLayer`
    (`nn.MultiheadAttention` packs q, k, v into one `in_proj_weight`)."""
    d = d_model
    shapes: dict[str, tuple[int, ...]] = {}
    for attention in ("self_attn", "cross_attn") if decoder else ("self_attn",):
        shapes |= {f"{attention}.in_proj_weight": (3 * d, d), f"{attention}.in_proj_bias": (3 * d,),
                   f"{attention}.out_proj.weight": (d, d), f"{attention}.out_proj.bias": (d,)}
    shapes |= {"linear1.weight": (d_ff, d), "linear1.bias": (d_ff,), "linear2.weight": (d, d_ff), "linear2.bias": (d,)}
    for n in range(1, 4 if decoder else 3):
        shapes |= {f"norm{n}.weight": (d,), f"norm{n}.bias": (d,)}
    return shapes


def parameter_shapes(kind: str, init: dict) -> dict[str, tuple[int, ...]]:
    """The contract's parameter names and shapes for chapter 01's `kind` built with `init`
    (each tensor once: the tied output layer has no name of its own)."""
    d, f = init["d_model"], init["d_ff"]
    if kind in LAYERS:
        return layer_parameter_shapes(d, f, decoder=kind == "DecoderLayer")
    shapes = {"embedding.weight": (init["vocab_size"], d)}
    stacks = (("encoder_layers", False), ("decoder_layers", True)) if kind == "Transformer" else (("layers", False),)
    for stack, decoder in stacks:
        for i in range(init["num_layers"]):
            shapes |= {f"{stack}.{i}.{k}": v for k, v in layer_parameter_shapes(d, f, decoder=decoder).items()}
    if init.get("norm_first"):
        norms = ("encoder_norm", "decoder_norm") if kind == "Transformer" else ("norm",)
        for norm in norms:
            shapes |= {f"{norm}.weight": (d,), f"{norm}.bias": (d,)}
    return shapes


def architecture_state(kind: str, init: dict, *, seed: int, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Random weights for every parameter the contract names: matrices scaled by 1/sqrt(fan-in)
    (the embedding by 1/sqrt(D), as its initialisation), and every bias and norm moved off its
    default (zeros, ones), so a parameter used in the wrong place changes the output."""
    state = {}
    for k, (name, shape) in enumerate(sorted(parameter_shapes(kind, init).items())):
        values = randn(shape, seed=seed + 7919 * (k + 1), dtype=dtype)
        owner = name.rsplit(".", 2)[-2]  # the submodule holding it: norm1, encoder_norm, linear1, ...
        if "norm" in owner and name.endswith(".weight"):
            values = 1.0 + 0.3 * values  # a norm's gain, around its default 1
        elif len(shape) == 1:
            values = 0.3 * values  # a bias or a norm's shift, around its default 0
        else:
            values = values / shape[-1] ** 0.5  # (out, in): 1/sqrt(fan-in); the embedding 1/sqrt(D)
        state[name] = values
    return state


# --- chapter 07: the capstone GPT -------------------------------------------------------------

GPT_POSITIONS = ("rope", "learned", "sinusoidal", "alibi")


@dataclass(frozen=True)
class GPTCase:
    """One small `GPTConfig` and a batch of token ids for it.

    `seq_len` is the length of the batch (at most `block_size`); `head_dim` is even, so every
    position scheme applies. Weights come from `gpt_state`, not from the student's init."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_kv_head: int | None
    head_dim: int
    d_ff: int
    pos: str
    norm: str
    ffn: str
    tie_embeddings: bool
    bias: bool
    batch: int
    seq_len: int
    seed: int

    @property
    def d_model(self) -> int:
        return self.n_head * self.head_dim

    def config(self, **overrides) -> dict:
        """`GPTConfig`'s keyword arguments (dropout 0, unfused unless overridden)."""
        return {"vocab_size": self.vocab_size, "block_size": self.block_size, "n_layer": self.n_layer,
                "n_head": self.n_head, "n_kv_head": self.n_kv_head, "d_model": self.d_model, "d_ff": self.d_ff,
                "pos": self.pos, "norm": self.norm, "ffn": self.ffn, "tie_embeddings": self.tie_embeddings,
                "bias": self.bias} | overrides

    def tokens(self, length: int | None = None, offset: int = 0) -> torch.Tensor:
        """(batch, length) token ids (default `seq_len`) from the case's seed."""
        length = self.seq_len if length is None else length
        return torch.randint(0, self.vocab_size, (self.batch, length), generator=generator(self.seed + offset))


@st.composite
def gpt_cases(draw, *, positions: tuple[str, ...] = GPT_POSITIONS, max_len: int = 8, min_len: int = 1) -> GPTCase:
    n_head = draw(st.sampled_from((1, 2, 4)))
    # Widths of at least 4 (as `arch_cases`): a LayerNorm over 2 features outputs only +-1.
    n_kv_head = draw(st.sampled_from([None, *[k for k in (1, 2) if n_head % k == 0 and k < n_head]]))
    block_size = draw(st.integers(max(min_len, 2), max_len))
    return GPTCase(
        vocab_size=draw(st.integers(3, 24)), block_size=block_size, n_layer=draw(st.integers(1, 2)), n_head=n_head,
        n_kv_head=n_kv_head, head_dim=2 * draw(st.integers(2 if n_head == 1 else 1, 3)), d_ff=draw(st.integers(2, 24)),
        pos=draw(st.sampled_from(positions)), norm=draw(st.sampled_from(("rmsnorm", "layernorm"))),
        ffn=draw(st.sampled_from(("swiglu", "gelu"))), tie_embeddings=draw(st.booleans()), bias=draw(st.booleans()),
        batch=draw(st.integers(1, 3)), seq_len=draw(st.integers(min_len, block_size)), seed=draw(seeds()),
    )


def gpt_weights(shapes: dict, *, seed: int, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Random values for parameters named in `shapes` (name -> shape, each tensor once, as
    `named_parameters` lists them), drawn as `architecture_state` draws them: matrices by
    1/sqrt(fan-in) (embeddings by 1/sqrt(D)), norm gains around 1, biases around 0, so a
    parameter used in the wrong place moves the logits."""
    state = {}
    for k, (name, shape) in enumerate(sorted(shapes.items())):
        values = randn(tuple(shape), seed=seed + 7919 * (k + 1), dtype=torch.float64)
        if "norm" in name and name.endswith(".weight"):
            values = 1.0 + 0.3 * values
        elif len(shape) == 1:
            values = 0.3 * values
        else:
            values = values / shape[-1] ** 0.5
        state[name] = values.to(dtype)
    return state


def gpt_state(model: torch.nn.Module, *, seed: int) -> dict[str, torch.Tensor]:
    """Load `gpt_weights` into a built GPT (a tied weight through its first name) and return
    its full `state_dict` (both names of a tied weight), in the model's dtype."""
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    dtype = next(model.parameters()).dtype
    model.load_state_dict(gpt_weights(shapes, seed=seed, dtype=dtype), strict=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
