"""Tests of the guest-image builder (images/)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from images import build, dataset, elfdeps

pytestmark = pytest.mark.skipif(shutil.which("mke2fs", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None,
                                reason="e2fsprogs not installed")

SMALL = {"corpus_bytes": 64 << 10, "tree_files": 30}
BASE_TOOLS = ["dash", "grep", "tar", "gzip", "cat", "ls", "mkdir", "rm", "wc", "sed", "find",
              "date"]


def _tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _debugfs(img, req):
    return subprocess.run([_tool("debugfs"), "-R", req, str(img)], capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("emu-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("EMU_CACHE_DIR", str(d))
    yield d
    mp.undo()


@pytest.fixture(scope="module")
def small_image(cache):
    return build.default_image(SMALL)


def test_e2fsck_clean(small_image):
    r = subprocess.run([_tool("e2fsck"), "-fn", str(small_image)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert small_image.stat().st_size % (4 << 20) == 0


def test_layout(small_image):
    root = _debugfs(small_image, "ls -l /")
    for name in ("bin", "sbin", "etc", "lib", "lib64", "tmp", "dev", "root", "home", "data"):
        assert re.search(rf"\s{name}\s*$", root, re.M), (name, root)
    assert "41777" in [line.split()[1] for line in root.splitlines() if line.strip().endswith(" tmp")]
    sh = build.guest_stat(small_image, "/bin/sh")
    assert sh["type"] == "regular" and sh["mode"] == 0o755
    assert build.read_file(small_image, "/bin/sh") == Path(shutil.which("dash")).read_bytes()
    assert build.read_file(small_image, "/bin/dash") == Path(shutil.which("dash")).read_bytes()
    ld = build.read_file(small_image, "/lib64/ld-linux-x86-64.so.2")
    assert ld == Path(os.path.realpath("/lib64/ld-linux-x86-64.so.2")).read_bytes()
    assert build.guest_stat(small_image, "/lib/x86_64-linux-gnu/libc.so.6")["type"] == "regular"
    init = build.read_file(small_image, "/sbin/init")
    assert init.startswith(b"#!/bin/sh\n")
    assert build.guest_stat(small_image, "/sbin/init")["mode"] == 0o755
    assert b"root:x:0:0:" in build.read_file(small_image, "/etc/passwd")
    assert b"user:x:1000:" in build.read_file(small_image, "/etc/group")
    assert "User:  1000   Group:  1000" in _debugfs(small_image, "stat /home/user")
    for t in BASE_TOOLS[1:]:
        assert build.guest_stat(small_image, f"/bin/{t}")["mode"] == 0o755
    # fixed timestamps and root ownership
    st = _debugfs(small_image, "stat /data/corpus.txt")
    assert st.count("0x6553f100") == 4 and "User:     0   Group:     0" in st


def _ldd(path):
    libs = set()
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            name, rest = line.split("=>", 1)
            if rest.strip().startswith("/"):
                libs.add(name.strip())
        elif line.startswith("/"):
            libs.add(line.split()[0])  # the interpreter
    return libs


@pytest.mark.skipif(shutil.which("ldd") is None, reason="no ldd")
def test_library_closure_matches_ldd(small_image):
    plan = build.make_plan("base", SMALL)
    guest_libs = set(plan.libraries)
    bin_ls = _debugfs(small_image, "ls /lib/x86_64-linux-gnu") + _debugfs(small_image,
                                                                            "ls /lib64")
    for tool in BASE_TOOLS:
        for lib in _ldd(shutil.which(tool)):
            guest = lib if lib.startswith("/") else f"/lib/x86_64-linux-gnu/{lib}"
            assert guest in guest_libs, (tool, lib)
            assert os.path.basename(guest) in bin_ls
            data = build.read_file(small_image, guest)
            if not lib.startswith("/"):
                host = elfdeps.resolve_soname(lib)
                assert data == Path(host).read_bytes()
    # gzip (run by tar czf through PATH) is in /bin with its libraries
    assert "/bin/gzip" in plan.binaries
    assert _ldd(shutil.which("gzip")) <= {os.path.basename(g) for g in guest_libs} | \
        {"/lib64/ld-linux-x86-64.so.2"}


def test_elfdeps_cache_follows_the_file_and_survives_the_process(tmp_path, monkeypatch):
    """What elf_info read is kept by file identity (emu's start-up re-checks the image's
    closure every time): a file written since is read again; a saved cache is adopted."""
    exe = tmp_path / "prog"
    shutil.copyfile(shutil.which("dash"), exe)
    monkeypatch.setattr(elfdeps, "_cache", {})
    first = elfdeps.elf_info(exe)
    assert first.interp and "libc.so.6" in first.needed
    cache = tmp_path / "elfinfo.json"
    elfdeps.save_cache(cache)
    monkeypatch.setattr(elfdeps, "_cache", {})
    elfdeps.load_cache(cache)
    assert elfdeps.elf_info(exe) == first and len(elfdeps._cache) == 1  # adopted, not parsed again
    shutil.copyfile(build.compile_program("holdmem.c"), exe)  # a static program at the same path
    os.utime(exe, ns=(1, 1))
    assert elfdeps.elf_info(exe).interp is None and elfdeps.elf_info(exe).needed == ()
    cache.write_text("{not json")
    elfdeps.load_cache(cache)  # an unreadable cache is ignored


def test_elfdeps_interp():
    clo = elfdeps.closure([shutil.which("dash")])
    assert "/lib64/ld-linux-x86-64.so.2" in clo.interpreters
    assert "/lib/x86_64-linux-gnu/libc.so.6" in clo.libraries
    with pytest.raises(elfdeps.ElfDepsError):
        elfdeps.resolve_soname("libdoesnotexist.so.9")


def test_dataset_determinism_and_size(tmp_path):
    p = {"corpus_bytes": 12345, "tree_files": 17, "tree_dirs": 6, "seed": 3}
    a, b = tmp_path / "a", tmp_path / "b"
    dataset.write_dataset(a, p)
    dataset.write_dataset(b, p)
    assert (a / "corpus.txt").stat().st_size == 12345
    fa = {str(f.relative_to(a)): f.read_bytes() for f in sorted(a.rglob("*")) if f.is_file()}
    fb = {str(f.relative_to(b)): f.read_bytes() for f in sorted(b.rglob("*")) if f.is_file()}
    assert fa == fb and len(fa) == 1 + 17
    assert sum(1 for d in (a / "tree").rglob("*") if d.is_dir()) == 6
    other = dataset.corpus_bytes(12345, seed=4)
    assert other != fa["corpus.txt"] and len(other) == 12345
    text = dataset.corpus_bytes(200_000).decode()
    for marker in dataset.MARKERS:
        assert marker in text
    assert re.search(r"\b[A-Z][a-z]+", text) and re.search(r"\d", text)
    assert all(len(line) <= 100 for line in text.splitlines())
    names = list(fa)
    assert any(re.search(r"mod_\d+\.c$", n) for n in names)
    assert any(re.search(r"util_\d+\.h$", n) for n in names)
    assert dataset.corpus_bytes(2 << 20) [:4096] == dataset.corpus_bytes(2 << 20)[:4096]
    assert len(dataset.corpus_bytes(2 << 20)) == 2 << 20


def test_staged_dataset_matches_image(small_image, cache, tmp_path):
    d = build.staged_dataset(SMALL)
    assert d == build.staged_dataset(SMALL)
    assert (d / "corpus.txt").stat().st_size == SMALL["corpus_bytes"]
    out = build.extract(small_image, "/data", tmp_path / "data")
    host = {str(f.relative_to(d)): f.read_bytes() for f in d.rglob("*") if f.is_file()}
    guest = {str(f.relative_to(out)): f.read_bytes() for f in out.rglob("*") if f.is_file()}
    assert host == guest and len(host) == 1 + SMALL["tree_files"]
    assert build.read_file(small_image, "/data/corpus.txt") == (d / "corpus.txt").read_bytes()
    f = build.extract(small_image, "/etc/passwd", tmp_path / "pw")
    assert f.read_bytes().startswith(b"root:")


def test_missing_paths(small_image, tmp_path):
    with pytest.raises(build.ImageError, match="not found"):
        build.read_file(small_image, "/no/such/file")
    with pytest.raises(build.ImageError, match="not found"):
        build.extract(small_image, "/nope", tmp_path / "x")
    with pytest.raises(build.ImageError):
        build.read_file(small_image, "/bin")
    with pytest.raises(build.ImageError, match="does not exist"):
        build.read_file(tmp_path / "missing.img", "/bin/sh")


def test_byte_identical_builds(cache, tmp_path):
    import time

    a = build.build_image("base", tmp_path / "a.img", SMALL)
    time.sleep(1.1)  # host atime/ctime change; the image must not
    b = build.build_image("base", tmp_path / "b.img", SMALL)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    # and identical to the cached one
    assert a.read_bytes() == build.default_image(SMALL).read_bytes()


def test_cache_hit_and_key(small_image, cache, monkeypatch):
    st = small_image.stat()
    calls = []
    monkeypatch.setattr(build, "_build_plan", lambda *a, **k: calls.append(a))
    assert build.default_image(SMALL) == small_image
    assert not calls
    assert small_image.stat().st_ino == st.st_ino and small_image.stat().st_mtime_ns == st.st_mtime_ns
    assert small_image.parent == cache / "images"
    k1 = build.image_key("base", SMALL)
    k2 = build.image_key("base", {**SMALL, "seed": 2})
    assert k1 != k2 and k1 == build.image_key("base", dict(SMALL))
    assert build.cached_image_path("base", {**SMALL, "seed": 2}) != small_image
    monkeypatch.undo()
    other = build.default_image({**SMALL, "corpus_bytes": 1000})
    assert other != small_image and other.exists()
    assert build.read_file(other, "/data/corpus.txt").__len__() == 1000


def test_a_cached_image_written_since_its_build_is_rebuilt(cache):
    """`emu run --image CACHED` writes the cached image itself; the next user of the cache must
    get the built image back, not what that run left."""
    params = {**SMALL, "seed": 5}
    img = build.default_image(params)
    good = img.read_bytes()
    with open(img, "r+b") as f:  # a write to the root directory's block group: mount count, a file...
        f.seek(1024 + 52)
        f.write(b"\x07\x00")
    assert img.read_bytes() != good
    again = build.default_image(params)
    assert again == img and again.read_bytes() == good
    assert build.default_image(params).stat().st_mtime_ns == again.stat().st_mtime_ns  # and now a hit


def test_the_remembered_key_follows_what_it_was_computed_from(small_image, cache, tmp_path, monkeypatch):
    """default_image skips the plan and the hashing of every host file when nothing they were
    computed from moved; anything that did sends it the full way."""
    assert build._remembered_image("base", SMALL) == small_image
    calls = []
    monkeypatch.setattr(build, "make_plan", lambda *a, **k: calls.append(a))
    assert build.default_image(SMALL) == small_image and not calls  # remembered
    monkeypatch.undo()
    assert build._remembered_image("base", {**SMALL, "seed": 9}) is None  # other parameters: not this memo
    f = tmp_path / "host-file"
    f.write_bytes(b"one")
    before = build._memo_inputs("base", SMALL, ["gzip"], [str(f)])
    assert build._memo_inputs("base", SMALL, ["gzip"], [str(f)]) == before
    f.write_bytes(b"two!")
    assert build._memo_inputs("base", SMALL, ["gzip"], [str(f)]) != before  # a host file changed
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    assert build._remembered_image("base", SMALL) is None  # PATH changed: the binaries may resolve elsewhere
    monkeypatch.undo()
    with open(small_image, "r+b") as fh:  # written since it was built (emu run --image): not a hit
        fh.seek(1024 + 52)
        fh.write(b"\x07\x00")
    assert build._remembered_image("base", SMALL) is None
    assert build.default_image(SMALL) == small_image and build._remembered_image("base", SMALL) == small_image


def test_key_tracks_host_files(monkeypatch):
    k1 = build.image_key("base", SMALL)
    real = build._sha256_file
    monkeypatch.setattr(build, "_sha256_file",
                        lambda p: real(p) + ("x" if p.endswith("/gzip") else ""))
    assert build.image_key("base", SMALL) != k1  # host binary upgraded -> stale


def test_bad_recipe_and_params():
    assert "base" in build.list_recipes()
    with pytest.raises(build.ImageError, match="known recipes: .*base"):
        build.build_image("no-such-recipe")
    with pytest.raises(build.ImageError, match="unknown parameter"):
        build.image_key("base", {"bogus": 1})


def test_missing_e2fsprogs(monkeypatch, tmp_path):
    real = shutil.which
    monkeypatch.setattr(build.shutil, "which", lambda *a, **k: None
                        if a and a[0] in ("mke2fs", "debugfs", "e2fsck") else real(*a, **k))
    with pytest.raises(build.ImageError, match="e2fsprogs"):
        build._tool("mke2fs")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None,
                    reason="needs root for chroot")
def test_init_runs_in_chroot(small_image, tmp_path):
    root = build.extract(small_image, "/", tmp_path / "root")
    (root / "tmp").chmod(0o1777)
    r = subprocess.run([shutil.which("chroot"), str(root), "/sbin/init"], capture_output=True, text=True,
                       timeout=60, env={"PATH": "/bin"})
    assert r.returncode == 0, r.stderr
    d = build.staged_dataset(SMALL)
    corpus = (d / "corpus.txt").read_bytes()
    want = sum(1 for line in corpus.splitlines() if b"memory" in line)
    assert f"grep -c memory: {want}" in r.stdout
    assert f"corpus bytes: {len(corpus)}" in r.stdout
    assert "emu base image: done" in r.stdout
