"""`emu reproduce NAME [--quick] [--out DIR]`: one command per paper, regenerating its headline
result on this machine. Each experiment is a module with `TITLE` and
`run(quick: bool, out: Path, say) -> dict` that prints its table beside the paper's numbers and
writes `out/result.json` and its PNG figures."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable

from vmm.errors import EmuError

EXPERIMENTS = {"checkpoint": "emu.reproduce.checkpoint", "fragmentation": "emu.reproduce.fragmentation",
               "hybrid-mram": "emu.reproduce.hybrid_mram", "sonicshot": "emu.reproduce.sonicshot",
               "storage-as-memory": "emu.reproduce.storage_as_memory"}


def _say(line: str) -> None:
    print(line, flush=True)  # progress shows as it happens, also into a file


def reproduce(name: str, quick: bool, out: Path, say: Callable[[str], None] = _say) -> dict[str, Any]:
    if name not in EXPERIMENTS:
        raise EmuError(f"no experiment {name!r} (have: {', '.join(sorted(EXPERIMENTS))})")
    mod = importlib.import_module(EXPERIMENTS[name])
    out.mkdir(parents=True, exist_ok=True)
    result = mod.run(quick, out, say)
    (out / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    say(f"wrote {out / 'result.json'}")
    return result
