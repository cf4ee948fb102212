"""Argument types and checks shared by the `emu` commands (emu/cli.py) and the tools they run
(emu/crashtest/): kept apart from the command line so that a tool needs no import of it."""
from __future__ import annotations

import argparse
from pathlib import Path

from vmm.errors import EmuError


def checkpoint_spec(text: str) -> list[str]:
    """--checkpoint tcp=1s | tcp=0 | on | off, optionally with ,into=scm|file:/PATH and
    ,mmap=shared|every -> machine overrides."""
    t = text.strip()
    if t.lower() in ("off", "no", "false"):
        return ["checkpoint.enabled=false"]
    out = ["checkpoint.enabled=true"]
    for part in t.split(","):
        key, eq, value = part.strip().partition("=")
        key = key.lower()
        if key in ("on", "yes", "true") and not eq:
            continue
        if key == "tcp" and eq:
            out.append(f"checkpoint.tcp={value.lower()}")
        elif key == "into" and eq:
            out.append(f"checkpoint.into={value}")
        elif key == "mmap" and eq:
            out.append(f"checkpoint.mmap_rule={value.lower()}")
        else:
            raise argparse.ArgumentTypeError("expected tcp=DURATION (e.g. tcp=1s, tcp=0), optionally "
                                             "with ,into=scm or ,into=file:/PATH and ,mmap=shared|every, "
                                             f"or off; got {text!r}")
    return out


def positive_int(text: str) -> int:
    """An argument that must be a positive integer (1_000, 0x100 and the like accepted)."""
    try:
        v = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def positive_float(text: str) -> float:
    """An argument that must be a positive, finite number (seconds and the like)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def check_image(image: Path) -> None:
    """A guest image given by the user: an existing file holding an ext2 file system."""
    if not image.exists():
        raise EmuError(f"image {image} does not exist")
    if not image.is_file():
        raise EmuError(f"image {image} is not a file")
    from guestkernel.ext2 import FsError, probe_block_size

    with open(image, "rb") as f:
        def read_at(off: int, n: int) -> bytes:
            f.seek(off)
            return f.read(n)

        try:
            probe_block_size(read_at)
        except FsError as e:
            raise EmuError(f"image {image} is not a usable ext2 file system: {e}") from None
