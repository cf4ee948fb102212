"""The packages import one way: `emu` (tools, the machine) -> `guestkernel` (through its interface)
-> `hw`, and `images` (recipes) below `emu`; everything may import `hw`, `hw` imports nothing of
ours. Imports are read from the source (every import, type-only ones included); a package
importing upwards, or two packages importing each other, fails."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
# Which packages each may import (besides itself).
ALLOWED = {
    "emu": {"guestkernel", "hw", "images"},
    "guestkernel": {"hw"},
    "images": {"hw"},
    "hw": set(),
}


def package_imports(root: Path, packages: set[str]) -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> the files that do it."""
    found: dict[tuple[str, str], list[str]] = {}
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
                        found.setdefault((pkg, top), []).append(str(f.relative_to(root)))
    return found


def violations(root: Path, allowed: dict[str, set[str]]) -> list[str]:
    edges = package_imports(root, set(allowed))
    out = [f"{a} imports {b} ({', '.join(sorted(set(files)))})" for (a, b), files in sorted(edges.items())
           if b not in allowed[a]]
    out += [f"{a} and {b} import each other" for (a, b) in edges if a < b and (b, a) in edges]
    return out


def test_packages_import_one_way() -> None:
    assert violations(ROOT, ALLOWED) == []


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
