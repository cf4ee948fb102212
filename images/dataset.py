"""Deterministic data set installed under ``/data`` in guest images.

* ``corpus.txt`` -- English-like text of exactly ``corpus_bytes`` bytes.
* ``tree/``      -- a source-like directory tree (``tree_dirs`` directories,
  ``tree_files`` files of about ``tree_file_bytes`` bytes each).

Everything is derived from ``random.Random(seed)`` streams and fixed tables, so the same
parameters always give the same bytes (independent of hash randomisation / platform).
"""

from __future__ import annotations

import os
import random
from bisect import bisect_left
from pathlib import Path

DEFAULTS: dict[str, int] = {
    "corpus_bytes": 2 << 20,
    "tree_dirs": 20,
    "tree_files": 200,
    "tree_file_bytes": 4096,
    "seed": 1,
}

MARKERS = ("persistent", "checkpoint", "memory")

# Ranked vocabulary (most frequent first); frequencies follow ~1/rank.
_VOCAB = """
the of and to a in is that for it as was with be by on not he this are or his from at
which but have an they you were her she there been one all we their has would when
can more if no out so said what up its about into than them only other new some could
time these two may then do first any my now such like our over man me even most made
after also did many before must through back years where much your way well down should
because each just those people how too little state good very make world still own see
men work long get here between both life being under never day same another know while
last might us great old year off come since against go came right used take three
system memory data process file page kernel disk cache buffer block storage device write
read program value table order number point state power water light line group system
persistent checkpoint log record index node tree queue thread signal lock commit
restore snapshot journal region segment address virtual physical mapping fault
research experiment result measure method model theory paper figure section study
city river mountain house road market garden school window letter story music
quick brown lazy fox dog cat bird horse green red blue yellow white black small large
early late often always sometimes quickly slowly carefully clearly simply nearly
""".split()


def _vocab() -> list[str]:
    seen: set[str] = set()
    out = []
    for w in _VOCAB:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


VOCAB = _vocab()
# Place the marker words at ranks giving "plausible" frequencies (~0.3%, ~0.1%, ~0.5%).
for _w, _rank in (("memory", 40), ("persistent", 110), ("checkpoint", 180)):
    VOCAB.remove(_w)
    VOCAB.insert(_rank, _w)
del _w, _rank

_CUM: list[float] = []
_acc = 0.0
for _i in range(len(VOCAB)):
    _acc += 1.0 / (_i + 2.7) ** 1.07
    _CUM.append(_acc)
del _i, _acc

_PROPER = ["Alice", "Bob", "Linux", "Paris", "London", "Monday", "March", "Unix",
           "Intel", "Ada", "Turing", "Berlin", "Tokyo", "Europe", "Python"]


def params_with_defaults(params: dict | None) -> dict[str, int]:
    p = dict(DEFAULTS)
    for k, v in (params or {}).items():
        if k not in DEFAULTS:
            continue  # other keys belong to the recipe, not to the data set
        p[k] = int(v)
    if p["corpus_bytes"] < 0 or p["tree_dirs"] < 0 or p["tree_files"] < 0:
        raise ValueError("data-set sizes must be non-negative")
    return p


def dataset_params(params: dict | None) -> dict[str, int]:
    """Only the data-set parameters (for cache keys)."""
    return params_with_defaults(params)


def _word(rng: random.Random) -> str:
    return VOCAB[bisect_left(_CUM, rng.random() * _CUM[-1])]


def _token(rng: random.Random, sentence_start: bool) -> str:
    r = rng.random()
    if r < 0.015:
        tok = str(rng.choice((rng.randint(0, 99), rng.randint(1900, 2030),
                              rng.randint(100, 65535))))
    elif r < 0.025:
        tok = rng.choice(_PROPER)
    elif r < 0.028:
        tok = _word(rng).upper()
    else:
        tok = _word(rng)
        if sentence_start:
            tok = tok[0].upper() + tok[1:]
    return tok


def corpus_bytes(n: int, seed: int = 1) -> bytes:
    """English-like text of exactly ``n`` bytes (ends with a newline when n > 0)."""
    if n <= 0:
        return b""
    rng = random.Random(f"corpus:{seed}")
    out: list[str] = []
    total = 0
    start = True
    left_in_sentence = rng.randint(4, 18)
    while total < n:
        target = rng.randint(40, 100)
        line = ""
        while True:
            tok = _token(rng, start)
            start = False
            left_in_sentence -= 1
            if left_in_sentence <= 0:
                tok += rng.choice(".........!?;")
                start = True
                left_in_sentence = rng.randint(4, 18)
            elif rng.random() < 0.06:
                tok += ","
            cand = f"{line} {tok}" if line else tok
            if len(cand) > target and len(line) >= 40:
                break
            line = cand
            if len(line) >= target:
                break
        line = line[:100] + "\n"
        out.append(line)
        total += len(line)
    data = "".join(out).encode("ascii")
    return data[: n - 1] + b"\n"


# ---------------------------------------------------------------------------
# source tree

_DIR_WORDS = ["src", "lib", "core", "mm", "fs", "net", "drivers", "util", "io", "sched",
              "block", "arch", "tools", "test", "include", "crypto", "ipc", "init"]
_TYPES = ["int", "long", "unsigned int", "size_t", "void *", "char *", "uint64_t", "bool"]
_COMMENTS = [
    "flush the persistent region before the next checkpoint",
    "take a checkpoint of the memory map",
    "memory is reclaimed lazily",
    "persistent state survives a reboot",
    "the checkpoint must be atomic with respect to memory writes",
    "TODO: handle the error path",
    "FIXME: this is not thread safe",
    "walk the page table and count present entries",
    "see the README for the on-disk format",
    "caller holds the lock",
]


def _c_function(rng: random.Random, idx: int) -> str:
    name = f"{_word(rng)}_{_word(rng)}_{idx}"
    ret = rng.choice(_TYPES)
    args = ", ".join(f"{rng.choice(_TYPES)} {_word(rng)}{j}" for j in range(rng.randint(0, 3)))
    body = []
    for k in range(rng.randint(2, 8)):
        r = rng.random()
        v = f"{_word(rng)}{k}"
        if r < 0.3:
            body.append(f"\tint {v} = {rng.randint(0, 4096)};")
        elif r < 0.5:
            body.append(f"\tif ({v} > {rng.randint(0, 64)})\n\t\treturn -{rng.randint(1, 40)};")
        elif r < 0.7:
            body.append(f"\t/* {rng.choice(_COMMENTS)} */")
        elif r < 0.85:
            body.append(f"\tfor (int i = 0; i < {rng.randint(2, 512)}; i++)\n"
                        f"\t\t{_word(rng)}_{_word(rng)}(i);")
        else:
            body.append(f'\tprintk("{_word(rng)} {_word(rng)} %d\\n", {rng.randint(0, 99)});')
    body.append("\treturn 0;")
    return (f"/*\n * {name}: {rng.choice(_COMMENTS)}.\n */\n"
            f"static {ret} {name}({args or 'void'})\n{{\n" + "\n".join(body) + "\n}\n\n")


def _c_file(rng: random.Random, name: str, size: int) -> bytes:
    guard = name.upper().replace(".", "_")
    is_header = name.endswith(".h")
    parts = [f"/* {name} -- generated test source. */\n"]
    if is_header:
        parts.append(f"#ifndef {guard}\n#define {guard}\n\n")
    for inc in rng.sample(["stdio.h", "stdlib.h", "string.h", "stdint.h", "errno.h",
                           "unistd.h", "stdbool.h", "sys/types.h"], rng.randint(1, 4)):
        parts.append(f"#include <{inc}>\n")
    parts.append("\n")
    if is_header:
        for k in range(rng.randint(1, 4)):
            parts.append(f"#define {_word(rng).upper()}_{k} {rng.randint(0, 1 << 16)}\n")
        parts.append("\n")
    total = sum(len(p) for p in parts)
    idx = 0
    tail = "#endif\n" if is_header else ""
    while total + len(tail) < size:
        f = _c_function(rng, idx)
        if is_header:
            f = f.split("\n{", 1)[0].split("*/\n", 1)[-1] + ";\n"
        parts.append(f)
        total += len(f)
        idx += 1
    parts.append(tail)
    return "".join(parts).encode("ascii")


def _readme(rng: random.Random, dirname: str, size: int) -> bytes:
    head = f"README for {dirname}\n{'=' * (11 + len(dirname))}\n\n"
    body = corpus_bytes(max(size - len(head), 2), rng.randint(0, 1 << 30))
    return head.encode() + body


def tree_files(params: dict | None = None) -> tuple[list[str], dict[str, bytes]]:
    """(directories, files) relative to ``tree/``; directories in creation order."""
    p = params_with_defaults(params)
    rng = random.Random(f"tree:{p['seed']}")
    dirs: list[tuple[str, int]] = [("", 0)]  # (relpath, depth)
    for i in range(p["tree_dirs"]):
        parents = [d for d in dirs if d[1] < 4]
        parent, depth = rng.choice(parents)
        name = f"{rng.choice(_DIR_WORDS)}{i:02d}"
        dirs.append((f"{parent}/{name}" if parent else name, depth + 1))
    files: dict[str, bytes] = {}
    has_readme: set[str] = set()
    avg = max(p["tree_file_bytes"], 64)
    for i in range(p["tree_files"]):
        d = rng.choice(dirs)[0]
        size = rng.randint(avg // 2, avg * 3 // 2)
        r = rng.random()
        if r < 0.12 and d not in has_readme:
            has_readme.add(d)
            name = "README"
            data = _readme(rng, d or "tree", size)
        elif r < 0.45:
            name = f"util_{i:02d}.h"
            data = _c_file(rng, name, size)
        else:
            name = f"mod_{i:02d}.c"
            data = _c_file(rng, name, size)
        files[f"{d}/{name}" if d else name] = data
    return [d for d, _ in dirs if d], files


def dataset_entries(params: dict | None = None) -> tuple[list[str], dict[str, bytes]]:
    """(directories, files) relative to ``/data`` (no leading slash)."""
    p = params_with_defaults(params)
    tdirs, tfiles = tree_files(p)
    dirs = ["tree"] + [f"tree/{d}" for d in tdirs]
    files = {"corpus.txt": corpus_bytes(p["corpus_bytes"], p["seed"])}
    files.update({f"tree/{k}": v for k, v in tfiles.items()})
    return dirs, files


FIXED_EPOCH = 1700000000


def write_dataset(dest: Path, params: dict | None = None, *, epoch: int = FIXED_EPOCH) -> None:
    """Write the data set into directory ``dest`` (which becomes the guest's /data)."""
    dest = Path(dest)
    dirs, files = dataset_entries(params)
    dest.mkdir(parents=True, exist_ok=True)
    for d in dirs:
        (dest / d).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        f = dest / rel
        f.write_bytes(data)
        os.chmod(f, 0o644)
        os.utime(f, (epoch, epoch))
    for d in reversed(dirs):
        os.chmod(dest / d, 0o755)
        os.utime(dest / d, (epoch, epoch))
    os.chmod(dest, 0o755)
    os.utime(dest, (epoch, epoch))
