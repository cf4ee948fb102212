"""Reproducible ext2 guest-image builder.

A *recipe* (``images/recipes/<name>.py``, exposing ``RECIPE``) lists host binaries to
copy, extra files, directories and data-set parameters.  :func:`build_image` stages the
tree in a temporary directory (fixed mtimes and modes), runs ``mke2fs -d`` with a fixed
UUID / hash seed / fake time, then normalises the remaining host-dependent inode fields
(atime, ctime, uid, gid) with ``debugfs`` so the same recipe + params always produce a
byte-identical image.

Images are cached (see :func:`default_image`) under ``$EMU_CACHE_DIR`` or
``~/.cache/emu/images``, keyed by :func:`image_key`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import pkgutil
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from . import dataset, elfdeps

if TYPE_CHECKING:
    import subprocess

BUILDER_VERSION = "1"
FIXED_EPOCH = dataset.FIXED_EPOCH
BLOCK_SIZE = 4096
HEADROOM = 32 << 20
ROUND = 4 << 20
E2FS_PACKAGE = "e2fsprogs"


class ImageError(Exception):
    """Image building / inspection failed (one-line, user-facing message)."""


@dataclass(frozen=True)
class Recipe:
    """What goes into a guest image.

    binaries: host path (or bare command name, resolved with ``shutil.which``) ->
        guest path or tuple of guest paths (extra paths become hard links).
        Their shared-library closure is added automatically.
    files:    guest path -> bytes or str contents.
    modes:    guest path -> permission bits for ``files`` / ``dirs`` (default 0644 / 0755;
        binaries are always 0755).
    dirs:     guest path -> mode of directories to create (empty unless populated).
    owners:   guest path -> (uid, gid); everything else is owned by root.
    params:   data-set parameters and their defaults (see :mod:`images.dataset`);
        an empty mapping means "no /data".
    """

    name: str
    binaries: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    files: Mapping[str, bytes | str] = field(default_factory=dict)
    modes: Mapping[str, int] = field(default_factory=dict)
    dirs: Mapping[str, int] = field(default_factory=dict)
    owners: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    params: Mapping[str, int] = field(default_factory=lambda: dict(dataset.DEFAULTS))
    data_dir: str = "/data"
    # guest path -> C source in images/programs/, built static with the host's gcc
    programs: Mapping[str, str] = field(default_factory=dict)
    # room for what the guest will make: this many more free inodes and bytes (a workload that
    # creates many files, as the split-zone paper's random-write script)
    spare_inodes: int = 0
    spare_bytes: int = 0


# ---------------------------------------------------------------------------
# recipes


def list_recipes() -> list[str]:
    from . import recipes

    return sorted(m.name for m in pkgutil.iter_modules(recipes.__path__)
                  if not m.name.startswith("_"))


def load_recipe(name: str):
    """Return (Recipe, module source bytes)."""
    known = list_recipes()
    if name not in known:
        raise ImageError(f"unknown image recipe {name!r}; known recipes: {', '.join(known)}")
    mod = importlib.import_module(f"images.recipes.{name}")
    recipe = getattr(mod, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise ImageError(f"recipe module images/recipes/{name}.py does not define RECIPE")
    src = Path(mod.__file__).read_bytes()
    return recipe, src


def resolve_params(recipe: Recipe, params: Mapping | None) -> dict[str, int]:
    p = dict(recipe.params)
    for k, v in (params or {}).items():
        if k not in p:
            raise ImageError(f"unknown parameter {k!r} for recipe {recipe.name!r}; "
                             f"known: {', '.join(sorted(p))}")
        try:
            p[k] = int(v)
        except (TypeError, ValueError):
            raise ImageError(f"parameter {k}={v!r} is not an integer") from None
        if p[k] < 0:
            raise ImageError(f"parameter {k}={v!r} must be non-negative")
    return p


# ---------------------------------------------------------------------------
# plan: the complete list of what goes into the image


@dataclass
class Entry:
    kind: str  # "dir" | "file" | "link" (hard link to another guest path)
    mode: int
    host: str | None = None  # host file to copy
    data: bytes | None = None
    target: str | None = None  # for hard links
    owner: tuple[int, int] = (0, 0)


@dataclass
class Plan:
    recipe: Recipe
    params: dict[str, int]
    entries: dict[str, Entry]  # guest path -> Entry
    binaries: dict[str, str]  # guest path -> host path
    libraries: dict[str, str]  # guest path -> host path (incl. interpreter)
    recipe_source: bytes = b""

    @property
    def host_files(self) -> dict[str, str]:
        """Every host file copied in (binaries, their libraries, compiled programs)."""
        programs = {g: e.host for g, e in self.entries.items() if g in self.recipe.programs and e.host}
        return {**self.binaries, **self.libraries, **programs}

    def staged_bytes(self) -> int:
        total = 0
        for e in self.entries.values():
            if e.kind == "dir":
                total += BLOCK_SIZE
            elif e.kind == "file":
                n = len(e.data) if e.data is not None else os.path.getsize(e.host)
                total += -(-n // BLOCK_SIZE) * BLOCK_SIZE + BLOCK_SIZE  # + indirect slack
        return total


def _parents(path: str):
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/" + "/".join(parts[:i])


def _which(spec: str) -> str:
    if "/" in spec:
        if not os.path.isfile(spec):
            raise ImageError(f"host binary {spec} not found")
        return spec
    found = shutil.which(spec) or shutil.which(spec, path="/usr/sbin:/sbin")  # (not on a user's PATH)
    if not found:
        raise ImageError(f"host binary {spec!r} not found on PATH")
    return found


def make_plan(recipe: str | Recipe = "base", params: Mapping | None = None) -> Plan:
    if isinstance(recipe, Recipe):
        rec, src = recipe, repr(recipe).encode()
    else:
        rec, src = load_recipe(recipe)
    p = resolve_params(rec, params)
    entries: dict[str, Entry] = {}

    def add_dir(path: str, mode: int = 0o755):
        for par in _parents(path + "/x"):
            if par not in entries:
                entries[par] = Entry("dir", 0o755)
            elif entries[par].kind != "dir":
                raise ImageError(f"{par} is both a file and a directory in recipe {rec.name}")

    for d, mode in rec.dirs.items():
        add_dir(d)
        entries[d].mode = mode

    binaries: dict[str, str] = {}
    for spec, guests in rec.binaries.items():
        host = _which(spec)
        guests = (guests,) if isinstance(guests, str) else tuple(guests)
        for i, g in enumerate(guests):
            add_dir(g.rsplit("/", 1)[0] or "/")
            if i == 0:
                entries[g] = Entry("file", 0o755, host=os.path.realpath(host))
                binaries[g] = os.path.realpath(host)
            else:
                entries[g] = Entry("link", 0o755, target=guests[0])
    for g, program_src in rec.programs.items():
        exe = compile_program(program_src)
        add_dir(g.rsplit("/", 1)[0] or "/")
        entries[g] = Entry("file", 0o755, host=str(exe))
    info_cache = cache_dir() / "elfinfo.json"
    elfdeps.load_cache(info_cache)
    try:
        clo = elfdeps.closure(sorted(set(binaries.values())))
    except elfdeps.ElfDepsError as e:
        raise ImageError(str(e)) from None
    elfdeps.save_cache(info_cache)
    libraries = clo.files()
    for g, host in sorted(libraries.items()):
        add_dir(g.rsplit("/", 1)[0] or "/")
        entries[g] = Entry("file", 0o755, host=host)

    for g, content in rec.files.items():
        add_dir(g.rsplit("/", 1)[0] or "/")
        data = content.encode() if isinstance(content, str) else bytes(content)
        entries[g] = Entry("file", rec.modes.get(g, 0o644), data=data)
    for g, mode in rec.modes.items():
        if g in entries and g not in rec.files and entries[g].kind == "dir":
            entries[g].mode = mode

    if rec.params:
        root = rec.data_dir.rstrip("/")
        add_dir(root)
        ddirs, dfiles = _dataset_entries(p)
        for d in ddirs:
            entries[f"{root}/{d}"] = Entry("dir", 0o755)
        for rel, data in dfiles.items():
            entries[f"{root}/{rel}"] = Entry("file", 0o644, data=data)

    for g, owner in rec.owners.items():
        if g not in entries:
            raise ImageError(f"owner given for {g}, which is not in recipe {rec.name}")
        entries[g].owner = tuple(owner)

    return Plan(rec, p, dict(sorted(entries.items())), binaries, libraries, src)


PROGRAMS_DIR = Path(__file__).parent / "programs"


def compile_program(src_name: str) -> Path:
    """Build images/programs/<src_name> static with the host's gcc (cached by source hash)."""
    import subprocess

    src = PROGRAMS_DIR / src_name
    if not src.is_file():
        raise ImageError(f"program source {src} does not exist")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = cache_dir().parent / "programs" / f"{src.stem}-{digest}"
    if out.exists():
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise ImageError("gcc is needed to build the image's C programs (Debian package gcc)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run([gcc, "-static", "-O2", "-o", str(tmp), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        raise ImageError(f"gcc failed on {src.name}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------
# keys and cache


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tool(name: str) -> str:
    for d in (None, "/usr/sbin:/sbin:/usr/bin:/bin"):
        p = shutil.which(name, path=d)
        if p:
            return p
    raise ImageError(f"{name} not found: install the Debian package {E2FS_PACKAGE} "
                     f"(apt-get install {E2FS_PACKAGE})")


def _mke2fs_version() -> str:
    import subprocess

    r = subprocess.run([_tool("mke2fs"), "-V"], capture_output=True, text=True)
    return (r.stderr + r.stdout).strip().splitlines()[0] if (r.stderr + r.stdout).strip() else ""


def _plan_key(plan: Plan) -> str:
    h = hashlib.sha256()
    doc = {
        "builder": BUILDER_VERSION,
        "builder_src": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "dataset_src": hashlib.sha256(Path(dataset.__file__).read_bytes()).hexdigest(),
        "recipe": plan.recipe.name,
        "recipe_src": hashlib.sha256(plan.recipe_source).hexdigest(),
        "params": plan.params,
        "host": {g: _sha256_file(h_) for g, h_ in sorted(plan.host_files.items())},
        "mke2fs": _mke2fs_version(),
    }
    h.update(json.dumps(doc, sort_keys=True).encode())
    return h.hexdigest()


def image_key(recipe: str = "base", params: Mapping | None = None) -> str:
    """Cache key: builder version + recipe source + params + sha256 of host files."""
    return _plan_key(make_plan(recipe, params))


def cache_dir() -> Path:
    env = os.environ.get("EMU_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "emu"
    return base / "images"


def cached_image_path(recipe: str = "base", params: Mapping | None = None,
                      key: str | None = None) -> Path:
    key = key or image_key(recipe, params)
    return cache_dir() / f"{recipe}-{key[:20]}.img"


@contextlib.contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# building


def _stage(plan: Plan, stage: Path) -> int:
    """Write the plan into ``stage``; returns the number of inodes used."""
    stage.mkdir(parents=True, exist_ok=True)
    for g, e in plan.entries.items():
        p = stage / g.lstrip("/")
        if e.kind == "dir":
            p.mkdir(exist_ok=True)
        elif e.kind == "file":
            if e.data is not None:
                p.write_bytes(e.data)
            else:
                shutil.copyfile(e.host, p)
    for g, e in plan.entries.items():
        if e.kind == "link":
            os.link(stage / e.target.lstrip("/"), stage / g.lstrip("/"))
    # modes and times (directories last, deepest first, so their mtimes stick)
    for g, e in plan.entries.items():
        if e.kind != "dir":
            p = stage / g.lstrip("/")
            os.chmod(p, e.mode)
            os.utime(p, (FIXED_EPOCH, FIXED_EPOCH))
    for g, e in sorted(plan.entries.items(), key=lambda kv: -kv[0].count("/")):
        if e.kind == "dir":
            p = stage / g.lstrip("/")
            os.chmod(p, e.mode)
            os.utime(p, (FIXED_EPOCH, FIXED_EPOCH))
    os.chmod(stage, 0o755)
    os.utime(stage, (FIXED_EPOCH, FIXED_EPOCH))
    return sum(1 for e in plan.entries.values() if e.kind != "link")


def _image_size(plan: Plan) -> int:
    n = int(plan.staged_bytes() * 1.5) + HEADROOM + plan.recipe.spare_bytes
    return -(-n // ROUND) * ROUND


def _fixed_uuid(key: str) -> str:
    import uuid

    return str(uuid.UUID(hex=hashlib.sha256(f"emu-image:{key}".encode()).hexdigest()[:32]))


def _run(cmd, *, env=None, what: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    import subprocess

    try:
        r = subprocess.run(cmd, capture_output=True, env=env, input=input)
    except FileNotFoundError:
        raise ImageError(f"{cmd[0]} not found: install the Debian package {E2FS_PACKAGE}") \
            from None
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()
        raise ImageError(f"{what} failed (exit {r.returncode}): {msg[-1] if msg else ''}")
    return r


def _e2fs_env() -> dict:
    env = dict(os.environ)
    env["E2FSPROGS_FAKE_TIME"] = str(FIXED_EPOCH)
    env["SOURCE_DATE_EPOCH"] = str(FIXED_EPOCH)
    env["LC_ALL"] = "C"
    env.pop("MKE2FS_CONFIG", None)
    return env


def make_ext2(path: Path, size_bytes: int, key: str, *, block_size: int = 1024, inodes: int | None = None) -> None:
    """An empty ext2 file system in the file `path` (made or overwritten), by the host's mke2fs,
    the same bytes on every host with the same mke2fs: UUID and hash seed from `key`, a fixed
    time, no reserved blocks, root-owned."""
    u = _fixed_uuid(key)
    _run([_tool("mke2fs"), "-q", "-F", "-t", "ext2", "-b", str(block_size), *(["-N", str(inodes)] if inodes else []),
          "-m", "0", "-U", u, "-E", f"hash_seed={u},root_owner=0:0", str(path), f"{size_bytes // 1024}k"],
         env=_e2fs_env(), what=f"mke2fs {path}")


def _build_plan(plan: Plan, out: Path, key: str, progress: Callable[[str], None] | None):
    import subprocess

    say = progress or (lambda msg: None)
    mke2fs, debugfs = _tool("mke2fs"), _tool("debugfs")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = _e2fs_env()
    with tempfile.TemporaryDirectory(prefix=".emu-stage-", dir=out.parent) as td:
        stage = Path(td) / "root"
        say(f"staging {len(plan.entries)} entries")
        ninodes = _stage(plan, stage)
        size = _image_size(plan)
        inodes = max(ninodes + 1024, 2 * ninodes) + plan.recipe.spare_inodes
        u = _fixed_uuid(key)
        tmp_img = Path(td) / "image.img"
        say(f"mke2fs ({size >> 20} MiB, {inodes} inodes)")
        _run([mke2fs, "-q", "-F", "-t", "ext2", "-b", str(BLOCK_SIZE), "-O", "^dir_index",
              "-N", str(inodes), "-U", u, "-L", plan.recipe.name[:16],
              "-E", f"hash_seed={u},root_owner=0:0", "-d", str(stage), str(tmp_img),
              f"{size // 1024}k"], env=env, what="mke2fs")
        # mke2fs -d copies atime/ctime/uid/gid from the host; pin them.
        say("normalising inodes")
        cmds = []
        for g in ["/", "/lost+found", *plan.entries]:
            e = plan.entries.get(g)
            if e is not None and e.kind == "link":
                continue
            uid, gid = e.owner if e is not None else (0, 0)
            for fld, val in (("atime", FIXED_EPOCH), ("ctime", FIXED_EPOCH),
                             ("mtime", FIXED_EPOCH), ("uid", uid), ("gid", gid)):
                cmds.append(f'sif "{g}" {fld} {val}')
        cmdfile = Path(td) / "debugfs.cmds"
        cmdfile.write_text("\n".join(cmds) + "\n")
        r = _run([debugfs, "-w", "-f", str(cmdfile), str(tmp_img)], env=env, what="debugfs")
        errs = [ln for ln in r.stderr.decode(errors="replace").splitlines()
                if ln.strip() and not ln.startswith("debugfs ")]
        if errs:
            raise ImageError(f"debugfs normalisation failed: {errs[0]}")
        say("checking")
        fsck = _tool("e2fsck")
        r = subprocess.run([fsck, "-fn", str(tmp_img)], capture_output=True, env=env)
        if r.returncode != 0:
            raise ImageError(f"e2fsck reports problems in the new image: "
                             f"{r.stdout.decode(errors='replace').strip().splitlines()[-1:]}")
        os.chmod(tmp_img, 0o644)
        os.replace(tmp_img, out)
    say(f"built {out}")
    return out


def build_image(recipe: str = "base", out: Path | None = None, params: dict | None = None,
                *, force: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Build the image for ``recipe``/``params``.

    With ``out=None`` the image goes to the cache (reused if present unless ``force``).
    With an explicit ``out`` the image is always (re)built there atomically.
    """
    say = progress or (lambda msg: None)
    say(f"planning recipe {recipe}")
    plan = make_plan(recipe, params)
    key = _plan_key(plan)
    if out is None:
        out = cached_image_path(recipe, key=key)
        stamp = out.with_name(out.name + ".stamp")
        with _locked(out.with_name(out.name + ".lock")):
            if out.exists() and not force:
                if _stamp_of(out) == _read_stamp(stamp):
                    say(f"cached {out}")
                    return out
                say(f"the cached {out.name} was written since it was built (emu run --image on it?): rebuilding")
            built = _build_plan(plan, out, key, progress)
            stamp.write_text(json.dumps(_stamp_of(built)) + "\n")
            return built
    out = Path(out)
    with _locked(out.with_name(out.name + ".lock")):
        try:
            return _build_plan(plan, out, key, progress)
        finally:
            with contextlib.suppress(OSError):
                out.with_name(out.name + ".lock").unlink()


def _stamp_of(image: Path) -> dict[str, int]:
    """What tells a cached image was written after it was built (size and modification time)."""
    st = image.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_stamp(stamp: Path) -> dict[str, int] | None:
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def default_image(params: dict | None = None, recipe: str = "base", *,
                  progress: Callable[[str], None] | None = None) -> Path:
    """Cached image of ``recipe`` (default ``base``) with ``params``; built if stale."""
    hit = _remembered_image(recipe, params)
    if hit is not None:
        return hit
    path = build_image(recipe, None, params, progress=progress)
    _remember_image(recipe, params)
    return path


# The cache key of an image needs its plan (the recipe's binaries and their library closure)
# and the sha256 of every host file it copies: 30 ms of each `emu run`. The last key is
# remembered with what it was computed from, cheaply checked: the sources of this package, the
# parameters, PATH and where each binary resolves to, the modification times of the
# directories binaries and libraries are looked up in (a file added or removed changes them),
# and the size, mtime, inode and device of every host file and of mke2fs. Anything else moved:
# the full computation, as before.
def _memo_file(recipe: str, params: Mapping | None) -> Path:
    tag = hashlib.sha256(json.dumps(dict(params or {}), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f".{recipe}-{tag}.key.json"


def _memo_inputs(recipe: str, params: Mapping | None, specs: list[str], files: list[str]) -> dict:
    here = Path(__file__).parent
    srcs = sorted([*here.glob("*.py"), *(here / "recipes").glob("*.py"), *PROGRAMS_DIR.iterdir()])
    path_dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]

    def stat(p: str) -> list[int] | None:
        try:
            st = os.stat(p)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]

    def resolved(spec: str) -> str | None:
        found = spec if "/" in spec else shutil.which(spec)
        return os.path.realpath(found) if found else None

    mke2fs = shutil.which("mke2fs") or shutil.which("mke2fs", path="/usr/sbin:/sbin:/usr/bin:/bin")
    return {
        "builder": BUILDER_VERSION, "recipe": recipe, "params": dict(params or {}),
        "srcs": {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in srcs if f.is_file()},
        "path": path_dirs, "which": {spec: resolved(spec) for spec in specs},
        "dirs": {d: stat(d) for d in [*path_dirs, *elfdeps.DEFAULT_LIB_DIRS]},
        "files": {f: stat(f) for f in files}, "mke2fs": [mke2fs, stat(mke2fs) if mke2fs else None],
    }


def _remembered_image(recipe: str, params: Mapping | None) -> Path | None:
    """The cached image the remembered key names, if nothing it was computed from moved and
    the image is there, unwritten since it was built; else None."""
    try:
        memo = json.loads(_memo_file(recipe, params).read_text())
        if memo["inputs"] != _memo_inputs(recipe, params, memo["specs"], memo["files"]):
            return None
        out = cached_image_path(recipe, key=memo["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with _locked(out.with_name(out.name + ".lock")):
        if out.exists() and _stamp_of(out) == _read_stamp(out.with_name(out.name + ".stamp")):
            return out
    return None


def _remember_image(recipe: str, params: Mapping | None) -> None:
    """Remember the key of the image just checked or built (see above). The inputs are taken
    before the key, so that a file changing in between leaves a memo that fails its check."""
    try:
        rec, _src = load_recipe(recipe)
        specs = sorted(rec.binaries)
        plan = make_plan(recipe, params)
        files = sorted(set(plan.host_files.values()))
        inputs = _memo_inputs(recipe, params, specs, files)
        memo = {"inputs": inputs, "specs": specs, "files": files, "key": _plan_key(plan)}
        f = _memo_file(recipe, params)
        tmp = f.with_name(f"{f.name}.{os.getpid()}")
        tmp.write_text(json.dumps(memo, sort_keys=True))
        os.replace(tmp, f)
    except (OSError, ImageError, elfdeps.ElfDepsError):
        pass  # not remembered: the next start computes the key in full


def staged_dataset(params: dict | None = None, recipe: str = "base") -> Path:
    """Cached host directory with exactly the ``/data`` files of the image.

    Generated without building the image (cache key: builder + dataset source + params).
    """
    rec, _ = load_recipe(recipe)
    return _staged(dataset.dataset_params(resolve_params(rec, params)))


def _staged(dp: dict) -> Path:
    h = hashlib.sha256(json.dumps({
        "builder": BUILDER_VERSION,
        "dataset_src": hashlib.sha256(Path(dataset.__file__).read_bytes()).hexdigest(),
        "params": dp,
    }, sort_keys=True).encode()).hexdigest()
    base = cache_dir().parent / "datasets"
    dest = base / f"data-{h[:20]}"
    with _locked(base / f".data-{h[:20]}.lock"):
        if dest.is_dir():
            return dest
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".data-", dir=base))
        try:
            dataset.write_dataset(tmp, dp)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _dataset_entries(p: dict) -> tuple[list[str], dict[str, bytes]]:
    """The data set's (directories, files), read back from its cached staging directory:
    generating it costs seconds, and every `emu run` plans the default image to check that the
    cached image is current."""
    root = _staged(dataset.dataset_params(p))
    dirs: list[str] = []
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            dirs.append(d if rel == "." else f"{rel}/{d}")
        for f in filenames:
            files[f if rel == "." else f"{rel}/{f}"] = (Path(dirpath) / f).read_bytes()
    return sorted(dirs), dict(sorted(files.items()))


# ---------------------------------------------------------------------------
# inspection


def _debugfs(image: Path, request: str) -> subprocess.CompletedProcess:
    import subprocess

    image = Path(image)
    if not image.is_file():
        raise ImageError(f"image {image} does not exist")
    try:
        return subprocess.run([_tool("debugfs"), "-R", request, str(image)],
                              capture_output=True, env=_e2fs_env())
    except FileNotFoundError:
        raise ImageError(f"debugfs not found: install the Debian package {E2FS_PACKAGE}") \
            from None


def _debugfs_script(image: Path, script: Path) -> subprocess.CompletedProcess:
    """debugfs running every command of a file (-f) in one process."""
    import subprocess

    try:
        return subprocess.run([_tool("debugfs"), "-f", str(script), str(image)], capture_output=True, env=_e2fs_env())
    except FileNotFoundError:
        raise ImageError(f"debugfs not found: install the Debian package {E2FS_PACKAGE}") from None


def _norm_guest(guest_path: str) -> str:
    if not guest_path.startswith("/"):
        guest_path = "/" + guest_path
    if any(c in guest_path for c in '"\n'):
        raise ImageError(f"unsupported guest path {guest_path!r}")
    return guest_path.rstrip("/") or "/"


def guest_stat(image: Path, guest_path: str) -> dict:
    """Minimal stat of ``guest_path``: {'type': 'regular'|'directory'|..., 'size': int}."""
    g = _norm_guest(guest_path)
    r = _debugfs(image, f'stat "{g}"')
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    if "Inode:" not in out:
        why = "not found" if "not found" in err else (err.strip().splitlines() or ["?"])[-1]
        raise ImageError(f"{g}: {why} in image {image}")
    info = {"type": "unknown", "size": 0, "mode": 0}
    for tok in out.split("\n", 2)[0:2]:
        if "Type:" in tok:
            info["type"] = tok.split("Type:")[1].split()[0]
        if "Mode:" in tok:
            info["mode"] = int(tok.split("Mode:")[1].split()[0], 8)
    for line in out.splitlines():
        if "Size:" in line and "User:" in line:
            info["size"] = int(line.rsplit("Size:", 1)[1].split()[0])
    return info


def read_file(image: Path, guest_path: str) -> bytes:
    """Contents of regular file ``guest_path`` in ``image``."""
    g = _norm_guest(guest_path)
    st = guest_stat(image, g)
    if st["type"] != "regular":
        raise ImageError(f"{g} in image {image} is a {st['type']}, not a regular file")
    with tempfile.TemporaryDirectory() as td:
        dest = Path(td) / "f"
        r = _debugfs(image, f'dump "{g}" "{dest}"')
        if not dest.exists():
            raise ImageError(f"cannot read {g} from {image}: "
                             f"{r.stderr.decode(errors='replace').strip()}")
        data = dest.read_bytes()
    if len(data) != st["size"]:
        raise ImageError(f"short read of {g} from {image}")
    return data


def extract(image: Path, guest_path: str, dest: Path) -> Path:
    """Copy file or directory tree ``guest_path`` out of ``image`` to host path ``dest``.

    ``dest`` names the copy itself (the file, or the directory that receives the tree);
    if ``dest`` is an existing directory, the copy goes inside it under its basename.
    """
    g = _norm_guest(guest_path)
    st = guest_stat(image, g) if g != "/" else {"type": "directory"}  # (the root is one)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / (g.rsplit("/", 1)[1] or "root")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".extract-") as td:
        if st["type"] == "directory":
            if g == "/":
                tmp = Path(td) / "root"
                tmp.mkdir()
                r = _debugfs(image, "ls -p /")
                names = [parts[4] for line in r.stdout.decode(errors="replace").splitlines()
                         if len(parts := line.strip("/").split("/")) >= 5 and parts[4] not in (".", "..", "")]
                if any(c in n for n in names for c in '"\n'):
                    raise ImageError(f"unsupported name in / of {image}")
                # one debugfs for every entry (a crash campaign reads a tree per point)
                script = Path(td) / "rdump.cmds"
                script.write_text("".join(f'rdump "/{n}" "{tmp}"\n' for n in names))
                r = _debugfs_script(image, script)
            else:
                r = _debugfs(image, f'rdump "{g}" "{td}"')
                tmp = Path(td) / g.rsplit("/", 1)[1]
        else:
            tmp = Path(td) / "file"
            r = _debugfs(image, f'dump -p "{g}" "{tmp}"')
        if not tmp.exists():
            raise ImageError(f"cannot extract {g} from {image}: "
                             f"{r.stderr.decode(errors='replace').strip()}")
        if dest.exists() or dest.is_symlink():
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            else:
                dest.unlink()
        os.replace(tmp, dest)
    return dest


def image_summary(plan: Plan, path: Path) -> dict:
    return {
        "path": str(path),
        "size": path.stat().st_size,
        "files": sum(1 for e in plan.entries.values() if e.kind != "dir"),
        "dirs": sum(1 for e in plan.entries.values() if e.kind == "dir"),
        "binaries": dict(plan.binaries),
        "libraries": dict(plan.libraries),
        "params": dict(plan.params),
    }
