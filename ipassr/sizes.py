"""Memory sizes: reading them from the command line, writing them in messages."""

from __future__ import annotations

from .errors import IpassrError

__all__ = ["FLOAT_BYTES", "parse_memory_size", "format_bytes"]

FLOAT_BYTES = 4  # float32 activations

_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "KB": 2 ** 10, "KIB": 2 ** 10, "M": 2 ** 20, "MB": 2 ** 20,
          "MIB": 2 ** 20, "G": 2 ** 30, "GB": 2 ** 30, "GIB": 2 ** 30, "T": 2 ** 40, "TB": 2 ** 40,
          "TIB": 2 ** 40}


def parse_memory_size(text: str) -> int:
    """'4G', '512M', '1.5GiB' or a byte count -> bytes (binary units); IpassrError if unreadable."""
    cleaned = str(text).strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMGTIB")
    unit = cleaned[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if unit not in _UNITS or not value > 0 or value == float("inf"):
        raise IpassrError(f"--max-memory {text!r}: expected a positive size such as 4G, 512M "
                          "or a number of bytes")
    return int(value * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Human-readable byte count (KiB/MiB/GiB)."""
    if n >= 2 ** 30:
        return f"{n / 2 ** 30:.2f} GiB"
    if n >= 2 ** 20:
        return f"{n / 2 ** 20:.1f} MiB"
    return f"{n / 2 ** 10:.1f} KiB"
