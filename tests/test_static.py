"""The banned-API scan resolves aliases and names the function each use sits in."""

from __future__ import annotations

import textwrap

from graders import chapters, static

BANNED = chapters.find("multi_head_attention").banned


def scan(tmp_path, source: str) -> list[tuple[str, int, str]]:
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(source))
    return [(v.name, v.line, v.owner) for v in static.scan(path, BANNED)]


def test_alias_and_method_uses_are_found(tmp_path):
    hits = scan(tmp_path, """\
        import torch
        import torch.nn.functional as F
        from torch.nn.functional import scaled_dot_product_attention as fused

        def softmax(x):
            return x.softmax(-1)

        def attention(q, k, v):
            return fused(q, k, v) + F.softmax(q, -1) + torch.softmax(q, -1)
        """)
    assert ("Tensor.softmax", 6, "softmax") in hits
    assert ("torch.nn.functional.scaled_dot_product_attention", 9, "attention") in hits
    assert ("torch.nn.functional.softmax", 9, "attention") in hits
    assert ("torch.softmax", 9, "attention") in hits


def test_allowed_code_has_no_hits(tmp_path):
    assert scan(tmp_path, """\
        import torch
        import torch.nn.functional as F

        def softmax(x):
            e = torch.exp(x - x.amax(-1, keepdim=True))
            return F.dropout(e / e.sum(-1, keepdim=True), 0.0)
        """) == []


def test_reference_uses_no_banned_api():
    path = chapters.REFERENCE / "multi_head_attention.py"
    assert static.scan(path, BANNED) == []
