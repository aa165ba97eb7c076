"""What may cross between the grader and the child, and how it is encoded and checked.

Requests are ours, so any encoding would do; we use `torch.save`. Replies come from student
code, so they are data, never code: they are decoded with `torch.load(weights_only=True)`,
which refuses to build arbitrary objects, and then every value is checked to be one of the
plain types below. Nothing the child writes is ever unpickled any other way.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from graders._child import HEADER, read_frame, write_frame  # noqa: F401 - the framing lives with the child

HEADER_SIZE = HEADER.size

MAX_REPLY_BYTES = 256 * 2**20  # far above any honest reply of the course's small shapes
MAX_DEPTH = 16
_PLAIN = (type(None), bool, int, float, str)


class BadReply(Exception):
    """The child's reply was not plain data of the expected form."""


def encode_request(request: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(request, buffer)
    return buffer.getvalue()


def decode_reply(payload: bytes) -> dict:
    """Bytes from the child -> a checked dict of plain data."""
    try:
        reply = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the child's fault
        raise BadReply(f"the worker's reply could not be decoded safely ({type(exc).__name__})") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise BadReply("the worker's reply is not a status record")
    check_plain(reply)
    return reply


def check_plain(value: Any, depth: int = 0) -> None:
    """Raise BadReply unless `value` is made only of plain data and ordinary dense tensors."""
    if depth > MAX_DEPTH:
        raise BadReply("the worker's reply is nested too deeply")
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor or value.layout != torch.strided or value.requires_grad:
            raise BadReply(f"the worker returned an unusual tensor ({type(value).__name__}, {value.layout})")
        return
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_plain(item, depth + 1)
        return
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for item in value.values():
            check_plain(item, depth + 1)
        return
    raise BadReply(f"the worker's reply holds a {type(value).__name__}, which is not plain data")
