"""What may cross between the grader and the child, and how it is encoded and checked.

Requests are ours, so any encoding would do; we use `torch.save`. Replies come from student
code, so they are data, never code, and bounded before they are touched: the frame's length
and request id are checked from its header before its payload is read (`submission.py`), the
archive's table of contents before anything is unpickled (`check_archive`: the pickled
structure is small, tensors are raw bytes beside it), then the payload is decoded with
`torch.load(weights_only=True)`, which refuses to build arbitrary objects, and every value is
checked to be one of the plain types below. Nothing the child writes is ever unpickled any
other way. Strings from the child reach people only through `student_text.clean`.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import torch

from graders._child import HEADER  # the framing lives with the child

HEADER_SIZE = HEADER.size

# Measured over a whole-course grade of the reference: the largest reply was 1.1 MB (chapter
# 01's hidden tests return batches of logits), its pickled structure 6.8 KB (names, shapes and
# nesting; tensor data lies beside it, unpickled), 87 archive entries (one per tensor). Each
# limit is over ten times that. The pickle's is the one that matters: decoding costs far more
# memory and time per byte than reading, so a crafted structure must stay small.
MAX_REPLY_BYTES = 16 * 2**20
MAX_PICKLE_BYTES = 256 * 2**10
MAX_ENTRIES = 2_000
MAX_DEPTH = 16
_PLAIN = (type(None), bool, int, float, str)


class BadReply(Exception):
    """The child's reply was not plain data of the expected form."""


def encode_request(request: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(request, buffer)
    return buffer.getvalue()


def check_archive(payload: bytes) -> None:
    """Raise BadReply unless `payload` is a `torch.save` archive of bounded shape: few enough
    entries, and a pickled structure no bigger than MAX_PICKLE_BYTES (read from the archive's
    directory, before anything is decompressed or unpickled)."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ENTRIES:
                raise BadReply(f"the worker's reply holds {len(entries)} entries, over the limit of {MAX_ENTRIES}")
            for entry in entries:
                if entry.filename.endswith(".pkl") and entry.file_size > MAX_PICKLE_BYTES:
                    raise BadReply(f"the worker's reply has a structure of {entry.file_size} bytes, over the "
                                   f"limit of {MAX_PICKLE_BYTES} (return tensors, not huge nested lists)")
                if entry.compress_type != zipfile.ZIP_STORED:
                    raise BadReply("the worker's reply is compressed, which torch.save never does")
    except (zipfile.BadZipFile, ValueError, OSError):
        raise BadReply("the worker's reply is not a torch.save archive") from None


def decode_reply(payload: bytes) -> dict:
    """Bytes from the child -> a checked dict of plain data."""
    check_archive(payload)
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

