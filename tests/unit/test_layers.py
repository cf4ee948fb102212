"""The packages import one way: `emu` (CLI, tools) -> `vmm` (the host side: machine, run loop,
epoch listeners) -> the kernel, through `guestkernel.interface` only; `images` (recipes) below
`emu`; everything may import `hw`, and `hw` imports nothing of ours. Imports are read from the
source (every import, type-only ones included); a package importing upwards, a package reaching
past the module it is limited to, or two packages importing each other, fails."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
# Which packages each may import (besides itself).
ALLOWED = {
    "emu": {"vmm", "guestkernel", "hw", "images"},
    "vmm": {"guestkernel", "hw"},
    "guestkernel": {"hw"},
    "images": {"hw"},
    "hw": set(),
}
# Where an import is allowed only of some modules of a package.
ONLY = {("vmm", "guestkernel"): {"guestkernel.interface"}}


def package_imports(root: Path, packages: set[str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(importer package, imported package) -> (file, module imported) of each import."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for pkg in sorted(packages):
        for f in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in packages and top != pkg:
                        found.setdefault((pkg, top), []).append((str(f.relative_to(root)), name))
    return found


def violations(root: Path, allowed: dict[str, set[str]],
               only: dict[tuple[str, str], set[str]] | None = None) -> list[str]:
    edges = package_imports(root, set(allowed))
    out = [f"{a} imports {b} ({', '.join(sorted({f for f, _ in uses}))})" for (a, b), uses in sorted(edges.items())
           if b not in allowed[a]]
    for (a, b), modules in sorted((only or {}).items()):
        past = sorted({f"{f}: {m}" for f, m in edges.get((a, b), []) if m not in modules})
        if past:
            out.append(f"{a} reaches past {', '.join(sorted(modules))} ({'; '.join(past)})")
    out += [f"{a} and {b} import each other" for (a, b) in edges if a < b and (b, a) in edges]
    return out


def test_packages_import_one_way() -> None:
    assert violations(ROOT, ALLOWED, ONLY) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    for pkg in ALLOWED:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "hw" / "model.py").write_text("from guestkernel.kernel import Kernel\n")
    (tmp_path / "guestkernel" / "kernel.py").write_text("import hw.model\n")
    assert violations(tmp_path, ALLOWED) == ["hw imports guestkernel (hw/model.py)", "guestkernel and hw import each other"]
    (tmp_path / "hw" / "model.py").write_text("")
    (tmp_path / "images" / "r.py").write_text("from emu.cli import main\n")
    (tmp_path / "emu" / "cli.py").write_text("from images import r\n")
    assert violations(tmp_path, ALLOWED) == ["images imports emu (images/r.py)", "emu and images import each other"]
    (tmp_path / "images" / "r.py").write_text("")
    (tmp_path / "vmm" / "machine.py").write_text("from guestkernel.interface import KernelConfig\nfrom guestkernel.kernel import Kernel\n")
    (tmp_path / "guestkernel" / "kernel.py").write_text("from vmm.machine import Machine\n")
    assert violations(tmp_path, ALLOWED, ONLY) == [
        "guestkernel imports vmm (guestkernel/kernel.py)",
        "vmm reaches past guestkernel.interface (vmm/machine.py: guestkernel.kernel)",
        "guestkernel and vmm import each other"]
