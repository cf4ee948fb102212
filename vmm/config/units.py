"""Values of a machine file and how they are shown: sizes, addresses, frequencies and durations
parsed from ints or strings ("8MiB", "0x1000", "2GHz", "250ms"), and printed back
(`human_size`, `human_hz`, `hex_addr`). A parser takes `(value, text)`, `text` being True for a
CLI string, and raises `_Bad(problem)`; the caller adds the file and the key."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------

def hex_addr(x: int) -> str:
    """0x1_0000_0000 style: groups of four hex digits."""
    return f"0x{x:_x}"


def human_size(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def human_hz(n: int) -> str:
    for unit, scale in (("GHz", 10**9), ("MHz", 10**6), ("kHz", 10**3)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} Hz"


# --------------------------------------------------------------------------------------------
# Value parsers: (value, text) -> parsed; raise _Bad(problem). `text` is True for CLI strings.
# --------------------------------------------------------------------------------------------

class _Bad(Exception):
    pass


def _describe(v: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)
    return f"{kind} {v!r}"


_SIZE_RE = re.compile(r"(?i)^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$")
_SCALE = {None: 1, "k": KiB, "m": MiB, "g": GiB, "t": 1 << 40}
_HZ_RE = re.compile(r"(?i)^(\d+(?:\.\d+)?)\s*(hz|khz|mhz|ghz)?$")
_HZ_SCALE = {None: 1, "hz": 1, "khz": 10**3, "mhz": 10**6, "ghz": 10**9}


def _scaled(num: str, scale: int, what: str, original: str) -> int:
    try:
        value = Decimal(num) * scale
    except InvalidOperation:
        raise _Bad(f"bad {what} {original!r}") from None
    if value != value.to_integral_value():
        raise _Bad(f"{what} {original!r} is not a whole number of bytes" if what != "frequency"
                   else f"frequency {original!r} is not a whole number of Hz")
    return int(value)


def parse_size(v: Any, text: bool = False, what: str = "size") -> int:
    """8388608, "8M", "8MiB", "8 MB", "0x800000", "1.5G" -> bytes (K/M/G/T are binary)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Bad(f"expected an integer or a {what} string like '8MiB', got {_describe(v)}")
    if isinstance(v, int):
        n = v
    else:
        s = v.strip().replace("_", "")
        if re.fullmatch(r"(?i)0x[0-9a-f]+", s):
            n = int(s, 16)
        else:
            m = _SIZE_RE.match(s)
            if not m:
                raise _Bad(f"bad {what} {v!r} (use e.g. 4096, '4KiB', '8M', '0x1000')")
            n = _scaled(m.group(1), _SCALE[(m.group(2) or "").lower() or None], what, v)
    if n < 0:
        raise _Bad(f"{what} must not be negative, got {n}")
    return n


def parse_addr(v: Any, text: bool = False) -> int:
    """0x1_0000_0000, "0x100000000", 4294967296, "4GiB" -> an address."""
    return parse_size(v, text, what="address")


def parse_hz(v: Any, text: bool = False) -> int:
    """2000000000, "2GHz", "2000MHz", "2.4 GHz" -> Hz (decimal units)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Bad(f"expected an integer or a frequency string like '2GHz', got {_describe(v)}")
    if isinstance(v, int):
        n = v
    else:
        m = _HZ_RE.match(v.strip().replace("_", ""))
        if not m:
            raise _Bad(f"bad frequency {v!r} (use e.g. '2GHz', '2000MHz', 2000000000)")
        n = _scaled(m.group(1), _HZ_SCALE[(m.group(2) or "").lower() or None], "frequency", v)
    if n <= 0:
        raise _Bad(f"frequency must be positive, got {n}")
    return n


def _parse_int(v: Any, text: bool = False) -> int:
    if text and isinstance(v, str):
        try:
            return int(v.strip().replace("_", ""), 0)
        except ValueError:
            raise _Bad(f"expected an integer, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"expected an integer, got {_describe(v)}")
    return v


def _parse_bool(v: Any, text: bool = False) -> bool:
    if text and isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "yes", "on", "1"):
            return True
        if s in ("false", "no", "off", "0"):
            return False
        raise _Bad(f"expected true or false, got {v!r}")
    if not isinstance(v, bool):
        raise _Bad(f"expected true or false, got {_describe(v)}")
    return v


def _parse_str(v: Any, text: bool = False) -> str:
    if not isinstance(v, str):
        raise _Bad(f"expected a string, got {_describe(v)}")
    return v


def _parse_channels(v: Any, text: bool = False) -> tuple[int, ...]:
    if text and isinstance(v, str):
        v = [p for p in re.split(r"[,+\s]+", v.strip().strip("[]()")) if p]
        return tuple(_parse_int(p, True) for p in v)
    if not isinstance(v, (list, tuple)):
        raise _Bad(f"expected an array of channel numbers, got {_describe(v)}")
    return tuple(_parse_int(p) for p in v)


def _parse_names(v: Any, text: bool = False) -> tuple[str, ...]:
    if text and isinstance(v, str):
        return tuple(p for p in re.split(r"[,\s]+", v.strip().strip("[]()")) if p)
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"expected an array of pool names, got {_describe(v)}")
    return tuple(v)


def _parse_float(v: Any, text: bool = False) -> float:
    """A non-negative number (energies, powers)."""
    if text and isinstance(v, str):
        try:
            v = float(v.strip().replace("_", ""))
        except ValueError:
            raise _Bad(f"expected a number, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"expected a number, got {_describe(v)}")
    if not v >= 0 or v == float("inf"):
        raise _Bad(f"must be a finite number >= 0, got {v!r}")
    return float(v)


_DURATION_RE = re.compile(r"(?i)^(\d+(?:\.\d+)?)\s*(ns|us|ms|s|min)?$")
_DURATION_SCALE = {None: 1, "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "min": 60 * 10**9}


def parse_duration(v: Any, text: bool = False) -> int:
    """1000000000, "1s", "250ms", "0" -> nanoseconds (virtual time; a bare integer is ns)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Bad(f"expected an integer or a duration string like '1s', got {_describe(v)}")
    if isinstance(v, int):
        n = v
    else:
        m = _DURATION_RE.match(v.strip().replace("_", ""))
        if not m:
            raise _Bad(f"bad duration {v!r} (use e.g. '1s', '250ms', '0')")
        value = Decimal(m.group(1)) * _DURATION_SCALE[(m.group(2) or "").lower() or None]
        n = int(value)
    if n < 0:
        raise _Bad(f"duration must not be negative, got {n}")
    return n


_PARSERS: dict[str, Callable[[Any, bool], Any]] = {
    "duration": parse_duration, "int": _parse_int, "size": parse_size, "addr": parse_addr, "hz": parse_hz,
    "bool": _parse_bool, "str": _parse_str, "float": _parse_float, "channels": _parse_channels, "names": _parse_names,
}
