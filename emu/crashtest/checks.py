"""The checks of a crash point: file trees (of a host directory, of an ext2 image) and their
differences, the program's output against the reference's, `e2fsck -fn`, and one digest of a
state directory (a refused restart must leave it as it was)."""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Any



def host_tree(root: Path) -> dict[str, dict[str, Any]]:
    """Every path under `root` (as '/a/b'), with type, permission bits, size, sha256 of a file's
    content and a symlink's target. Directory sizes are not compared (0)."""
    tree: dict[str, dict[str, Any]] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = "/" + p.relative_to(root).as_posix()
            e: dict[str, Any] = {"mode": stat.S_IMODE(st.st_mode), "size": 0}
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(p)
                e.update(type="symlink", target=target, size=len(os.fsencode(target)))
            elif stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                e.update(type="file", size=st.st_size, sha256=h.hexdigest())
            else:
                e.update(type="other", rdev=st.st_rdev)
            tree[rel] = e
    return tree


def image_tree(image: Path) -> dict[str, dict[str, Any]]:
    """The file tree of an ext2 image, in `host_tree`'s shape, read from the image file itself
    (`ext2tree`; held equal to a debugfs extraction by tests/campaigns/test_ext2tree.py)."""
    from emu.crashtest.ext2tree import ext2_tree

    return ext2_tree(Path(image))


def diff_trees(ref: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]],
               opaque: frozenset[str] = frozenset()) -> list[str]:
    """The differences, one line each, in path order (the first is the first differing path);
    the contents of `opaque` paths are not compared."""
    out: list[str] = []
    for path in sorted(set(ref) | set(got)):
        a, b = ref.get(path), got.get(path)
        if b is None:
            out.append(f"{path}: missing ({a['type']})")  # type: ignore[index]
        elif a is None:
            out.append(f"{path}: unexpected {b['type']}")
        elif a["type"] != b["type"]:
            out.append(f"{path}: {b['type']} instead of {a['type']}")
        elif a["mode"] != b["mode"]:
            out.append(f"{path}: mode {b['mode']:04o} instead of {a['mode']:04o}")
        elif a.get("target") != b.get("target"):
            out.append(f"{path}: symlink to {b.get('target')!r} instead of {a.get('target')!r}")
        elif a["size"] != b["size"]:
            out.append(f"{path}: {b['size']} bytes instead of {a['size']}")
        elif a.get("sha256") != b.get("sha256") and path not in opaque:
            out.append(f"{path}: content differs")
        elif a.get("rdev") != b.get("rdev"):
            out.append(f"{path}: device differs")
    return out


def diff_output(ref: bytes, got: bytes) -> str | None:
    """None if equal, else a one-line description."""
    if ref == got:
        return None
    i = next((i for i, (x, y) in enumerate(zip(ref, got)) if x != y), min(len(ref), len(got)))
    return f"stdout: {len(got)} bytes instead of {len(ref)}, first difference at byte {i}"


def fsck(image: Path) -> str | None:
    """None if `e2fsck -fn` is clean, else a one-line description."""
    try:
        r = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"e2fsck: {e}"
    if r.returncode == 0:
        return None
    lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines()
             if ln.strip() and not ln.startswith(("e2fsck ", "Pass ", "Warning!"))]
    return f"e2fsck -fn: exit {r.returncode}" + (f": {lines[0]}" if lines else "")


def state_digest(state: Path) -> str:
    """One hash of every file in a state directory (a refused restart must change none)."""
    h = hashlib.sha256()
    for f in sorted(state.iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()
