"""Decoding caption text that is not always UTF-8."""

from __future__ import annotations


def decode_text(data: bytes) -> tuple[str, bool]:
    """``(text, repaired)``: UTF-8 (BOM allowed) or UTF-16 with a BOM, else cp1252, else
    latin-1 (never fails); ``repaired`` says a fallback was needed."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16"), False
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), True
    except UnicodeDecodeError:
        return data.decode("latin-1"), True
