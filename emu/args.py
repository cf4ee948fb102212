"""Argument types and checks shared by the `emu` commands (emu/cli.py) and the tools they run
(emu/crashtest/): kept apart from the command line so that a tool needs no import of it."""
from __future__ import annotations

import argparse
from pathlib import Path

from vmm.errors import EmuError


def checkpoint_spec(text: str) -> list[str]:
    """--checkpoint tcp=1s | tcp=0 | on | off -> machine overrides."""
    t = text.strip().lower()
    if t in ("off", "no", "false"):
        return ["checkpoint.enabled=false"]
    if t in ("on", "yes", "true"):
        return ["checkpoint.enabled=true"]
    if t.startswith("tcp="):
        return ["checkpoint.enabled=true", f"checkpoint.tcp={t[4:]}"]
    raise argparse.ArgumentTypeError(f"expected tcp=DURATION (e.g. tcp=1s, tcp=0) or off, got {text!r}")


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
