"""Differential tests of the file-system syscalls against Linux: scripts of calls (open/creat,
read/write, pread/pwrite, lseek with SEEK_DATA/SEEK_HOLE, truncation, rename/renameat2, links,
symlinks, directories, chmod, utimensat, getdents, stat, dup, fcntl, record locks, file mappings)
run by tests/programs/fsdiff.c in the guest and natively on a real ext2 file system (a loop mount
made with mke2fs like the guest image), and the two outputs must be identical.

Hypothesis writes the scripts over a small namespace (a, b, c, directories D and E, a link l) so
that calls collide: renames over existing targets, unlinks of open files, links to symlinks.
Many scripts run in one guest boot (one directory each). A mismatch is minimised by deleting
lines (each round one batch of candidates) and reported as the smallest script that still
differs; every mismatch found so far is a named regression script below."""
from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import e2fsck_clean, put_file, run_emu

BLOCK_SIZE = 4096  # as the guest image (images/build.py)


# ----------------------------------------------------------------------------------------------
# the native side: a real ext2 file system


@pytest.fixture(scope="session")
def native_fs():
    """(scratch root, "ext2" or "other"): a loop-mounted ext2 image made like the guest's, or a
    host temporary directory when mounting is not possible (then SEEK_DATA/SEEK_HOLE answer as
    that file system does, and only those lines are normalised)."""
    work = Path(tempfile.mkdtemp(prefix="emu-fsdiff-"))
    img, mnt = work / "native.img", work / "mnt"
    mnt.mkdir()
    mounted = False
    try:
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", str(BLOCK_SIZE), "-O", "^dir_index",
                        str(img), "64m"], check=True, capture_output=True)
        mounted = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True).returncode == 0
    except (OSError, subprocess.CalledProcessError):
        pass
    yield (mnt, "ext2") if mounted else (mnt, "other")
    if mounted:
        subprocess.run(["umount", str(mnt)], check=False)
    shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# running batches of scripts


HEADER = re.compile(r"^=== script (\d+)$", re.M)


def split_outputs(out: str) -> list[str]:
    """Per-script sections of fsdiff's output (what precedes the first header is dropped)."""
    parts = HEADER.split(out)
    return [parts[i + 1] for i in range(1, len(parts) - 1, 2)]


def normalise(section: str, kind: str) -> str:
    if kind == "ext2":
        return section
    # Not ext2 natively (no loop mount): holes are reported as that file system keeps them.
    return re.sub(r"^(lseek \S+ \S+ (data|hole)) = .*$", r"\1 = ?", section, flags=re.M)


class Runner:
    """Runs batches of scripts in one guest (an image with /bin/fsdiff, reused across batches,
    each batch in a fresh directory) and natively in a fresh directory of the native scratch."""

    def __init__(self, image: Path, fsdiff: Path, native: tuple[Path, str], tmp: Path) -> None:
        self.image, self.fsdiff, (self.native_root, self.kind), self.tmp = image, fsdiff, native, tmp
        self.n = 0

    def run(self, scripts: list[str]) -> tuple[list[str], list[str]]:
        self.n += 1
        batch = self.tmp / f"batch{self.n}.txt"
        batch.write_text("\n===\n".join(s.strip("\n") for s in scripts) + "\n")
        put_file(self.image, batch, f"/tmp/batch{self.n}", 0o100644)
        run = run_emu(self.image, ["/bin/sh", "-c", f"mkdir /tmp/t{self.n} && cd /tmp/t{self.n} && "
                                   f"/bin/fsdiff /tmp/batch{self.n}"])
        wd = Path(tempfile.mkdtemp(prefix="t", dir=self.native_root))
        wd.chmod(0o755)  # as the guest's mkdir makes /tmp/tN (mkdtemp's 0700 showed through 'D -> .', 'stat D/..')
        native = subprocess.run([str(self.fsdiff), str(batch)], cwd=wd, capture_output=True)
        shutil.rmtree(wd)
        assert native.returncode == 0 and not native.stderr, native.stderr
        assert run.result.exit_code == 0, (run.result.exit_code, run.stderr.decode(errors="replace"))
        guest_out = [normalise(s, self.kind) for s in split_outputs(run.stdout.decode(errors="replace"))]
        native_out = [normalise(s, self.kind) for s in split_outputs(native.stdout.decode(errors="replace"))]
        assert len(native_out) == len(scripts), native.stdout[-2000:]
        assert len(guest_out) == len(scripts), run.stdout[-2000:]
        return guest_out, native_out

    def minimise(self, script: str, rounds: int = 40) -> str:
        """Delete lines while the script still differs; each round runs every one-line
        deletion in one batch."""
        lines = script.strip("\n").splitlines()
        for _ in range(rounds):
            cands = [lines[:i] + lines[i + 1:] for i in range(len(lines))]
            if not cands:
                break
            guest, native = self.run(["\n".join(c) for c in cands])
            bad = [c for c, g, n in zip(cands, guest, native) if g != n]
            if not bad:
                break
            lines = bad[0]
        return "\n".join(lines)

    def check(self, scripts: list[str]) -> None:
        guest, native = self.run(scripts)
        bad = [i for i, (g, n) in enumerate(zip(guest, native)) if g != n]
        if not bad:
            return
        small = self.minimise(scripts[bad[0]])
        (g,), (n,) = self.run([small])
        diff = "\n".join(difflib.unified_diff(n.splitlines(), g.splitlines(), "linux", "emu", lineterm=""))
        pytest.fail(f"{len(bad)} of {len(scripts)} scripts differ from Linux; the first, minimised:\n"
                    f"{small}\n--- output (linux vs emu):\n{diff}", pytrace=False)


@pytest.fixture
def runner(emu, guest_programs, native_fs, tmp_path) -> Runner:
    image = emu.fresh_image()  # e2fsck -fn'ed by the emu fixture at the end
    put_file(image, guest_programs / "fsdiff", "/bin/fsdiff")
    return Runner(image, guest_programs / "fsdiff", native_fs, tmp_path)


# ----------------------------------------------------------------------------------------------
# regressions: every mismatch the random scripts found, as a fixed script named for what it checks


REGRESSIONS = {
    "moved_directory_keeps_its_mtime": """
mkdir D 755
mkdir E 755
utimens D/ 329 710 nofollow
rename D E/a
mkdir F 755
mkdir G 755
mkdir G/H 755
utimens F 11 22 0
utimens G/H 33 44 0
renameat2 F G/H exchange
""",
    "trailing_slash_names": """
mkdir a/ 755
open 0 b/ rw,creat
open 0 c rw,creat
close 0
open 0 c/ r
rename c d/
mkdir E 755
rename E F/
symlink c l/
link c m/
link c F/
unlink c/
rmdir F/
stat F/
""",
    "rename_order_of_checks": """
mkdir D 755
mkdir D/F 755
open 0 a rw,creat
close 0
rename D/F/ G/
rename a D/F/b
rename D/F D
rename D/F/.. x
rename D/F D/F/x
renameat2 D a noreplace,exchange
renameat2 a . noreplace
renameat2 a . 0
""",
    "rename_exchange_file_and_directory_across_parents": """
mkdir D 755
mkdir D/F 755
open 0 a w,creat
write 0 5 x
renameat2 a D/F exchange
stat D/F
stat a
stat D
lstat a/..
renameat2 D/F a exchange
stat D
mkdir E 755
renameat2 E D/F exchange
stat D/F/..
stat E/..
renameat2 D E/F exchange
renameat2 D/F D exchange
renameat2 D D/F exchange
renameat2 E E exchange
renameat2 E/ a/ exchange
""",
    "mkdir_drops_setuid": """
mkdir b 4755
mkdir c 1777
stat b
stat c
""",
    "pwrite_appends_with_o_append": """
open 0 a rw,creat,append 644
write 0 5 x
pwrite 0 3 y 0
pread 0 10 0
""",
    "getfl_shows_largefile_not_open_time_flags": """
open 0 a rw,creat,append,excl,trunc 644
fcntl 0 getfl
fcntl 0 setfl nonblock
fcntl 0 getfl
dup 0 1
fcntl 1 getfl
open 2 a r
fcntl 2 setfl append
fcntl 2 getfl
""",
    "seek_data_and_hole_follow_the_block_map": """
open 0 a rw,creat 644
lseek 0 0 data
write 0 5 x
lseek 0 0 data
lseek 0 0 hole
lseek 0 9 data
lseek 0 100 hole
pwrite 0 3 y 50000
lseek 0 0 hole
lseek 0 5000 data
lseek 0 49151 data
lseek 0 50002 hole
lseek 0 50003 hole
ftruncate 0 60000
lseek 0 50003 hole
lseek 0 50003 data
""",
    "seek_data_and_hole_in_a_directory": """
mkdir D 755
open 3 D r,directory 644
lseek 3 1 data
lseek 3 1 hole
lseek 3 4096 data
getdents 3
lseek 3 0 set
getdents 3
""",
    "mapped_page_past_the_end_of_the_file_is_sigbus": """
open 0 a rw,creat 644
mmap 0 0 8192 4096 shared
mread 0 1 1
write 0 5000 x
mmap 1 0 8192 0 private
mread 1 4000 96
mread 1 4096 10
""",
    "o_nofollow_on_a_symlink_checks_o_directory_first": """
mkdir D 755
symlink ../a D/l
open 1 D/l w,trunc,directory,nofollow 755
open 1 D/l r,nofollow
symlink D m
open 1 m r,directory,nofollow
""",
    "reading_a_directory_is_eisdir_even_for_zero_bytes": """
mkdir D 755
open 3 D r,directory
read 3 0
pread 3 0 0
read 3 10
""",
    "an_open_directory_outlives_rmdir_and_rename_over_it": """
mkdir D 755
mkdir E 755
open 3 D r,directory
open 2 E r,directory
rmdir D
fstat 3
getdents 3
openat 0 3 x w,creat
openat 0 3 . r
mkdir F 755
rename F E
fstat 2
getdents 2
close 3
close 2
""",
    "mappings_follow_writes_into_holes_and_truncation": """
open 1 b rw,creat 600
pwrite 1 9000 y 50000
mmap 1 1 4096 0 private
mread 1 0 50
pwrite 1 4095 z 5
mread 1 1 96
mmap 0 1 8192 0 shared
mread 0 4000 96
ftruncate 1 4000
mread 0 3990 20
mread 0 4096 1
ftruncate 1 100
mread 1 0 10
write 1 5 q
mread 1 0 10
""",
    "a_private_mapping_keeps_its_own_writes": """
open 0 a rw,creat 644
write 0 100 x
mmap 0 0 8192 0 private
mmap 1 0 4096 0 shared
mread 0 90 20
mwrite 0 95 2 k
pwrite 0 10 y 90
mread 0 85 20
mread 1 85 20
ftruncate 0 5000
mread 0 4096 20
ftruncate 0 10
mread 0 85 20
""",
    "o_trunc_truncates_even_read_only": """
open 0 a w,creat 644
write 0 10 x
open 1 a r,trunc
fstat 1
ftruncate 1 0
ftruncate 1 -1
ftruncate 9 -1
""",
    "o_creat_through_a_dangling_symlink_makes_its_target": """
symlink nowhere l
open 0 l w,creat 600
lstat l
stat nowhere
open 1 l w,creat,excl
symlink l m
open 2 m rw,creat,nofollow
open 2 m rw,creat
symlink D/ n
open 3 n rw,creat
""",
    "o_creat_with_o_directory_is_einval": """
open 0 b rw,directory,creat 600
mkdir D 755
open 0 D r,directory,creat
""",
    "atime_follows_relatime_on_every_access": """
open 0 a rw,creat 644
write 0 10 x
utimens a 100 200 0
read 0 5
stat a
utimens a 300 omit 0
pread 0 2 0
stat a
symlink a l
utimens l 400 500 nofollow
lstat l
stat l
lstat l
utimens l 400 500 nofollow
readlink l
lstat l
mkdir D 755
utimens D 600 700 0
open 1 D r,directory
getdents 1
stat D
""",
    "utimensat_omitting_both_times_looks_nothing_up": """
utimens D/F omit omit 0
utimens D/F omit now 0
""",
    "mmap_of_a_directory_is_enodev": """
mkdir D 755
open 0 D r
mmap 1 0 4096 0 shared
mmap 1 0 4096 0 private
""",
    "o_trunc_of_an_empty_file_still_sets_mtime": """
open 0 a rw,creat 644
utimens a 532 940 0
creat 3 a 000
stat a
utimens a 532 940 0
open 1 a r,trunc
stat a
utimens a 532 940 0
write 0 0 x
truncate a 0
stat a
ftruncate 0 0
stat a
""",
    "o_trunc_on_a_directory_is_eisdir": """
open 0 . r,trunc,directory
mkdir D 755
open 1 D r,trunc
""",
    "unlink_with_a_trailing_slash_does_not_follow_the_name": """
symlink D D
unlink D/
symlink E l
mkdir E 755
unlink l/
unlink E/
unlink nowhere/
rmdir l/
""",
    "link_checks_the_new_name_before_the_old_one_s_type": """
link . .
mkdir D 755
open 0 a w,creat
link D a
link D b
link a D/..
symlink a .
""",
}


@pytest.fixture(scope="module")
def regression_outputs(base_image, guest_programs, native_fs, tmp_path_factory):
    """All regression scripts in one guest run: name -> (emu output, Linux output)."""
    tmp = tmp_path_factory.mktemp("fsdiff-reg")
    image = tmp / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "fsdiff", "/bin/fsdiff")
    guest, native = Runner(image, guest_programs / "fsdiff", native_fs, tmp).run(list(REGRESSIONS.values()))
    e2fsck_clean(image)
    return dict(zip(REGRESSIONS, zip(guest, native)))


# Record locks check the descriptor's access mode and the lock type (found while locks were
# still missing; fixed by the locks module).
REGRESSIONS["record_locks_check_the_access_mode_and_type"] = """
open 0 a rw,creat 644
open 1 a r
open 2 a w
getlk 0 un 0 100
setlk 1 wr 0 0
setlk 2 rd 0 0
setlk 1 rd 0 0
setlk 2 wr 0 0
getlk 0 wr 0 0
mkdir D 755
open 3 D r,directory
setlk 3 rd 0 0
setlk 3 wr 0 0
"""


# Directory positions are ext2's byte offsets (d_off, lseek), and every getdents reads the
# directory again: a CI run found `lseek(dir, -5, SEEK_CUR)` after a full listing refused with
# EINVAL because positions counted entries.
REGRESSIONS["directory_positions_are_byte_offsets"] = """
mkdir D 755
open 0 D/a w,creat 644
open 1 D/bb w,creat 644
open 3 D r,directory 644
getdents 3
lseek 3 0 cur
lseek 3 -5 cur
getdents 3
lseek 3 0 cur
lseek 3 13 set
getdents 3
lseek 3 0 set
open 2 D/ccc w,creat 644
getdents 3
lseek 3 -1 end
getdents 3
lseek 3 0 cur
lseek 3 100000 set
getdents 3
lseek 3 0 cur
lseek 3 0 data
lseek 3 0 hole
lseek 3 -1 set
"""


# A mapping keeps an unlinked file alive after its last descriptor is closed: a CI run found
# the inode freed at close, reused by the next creat, and the mapping's page past that file's end
# (SIGBUS where Linux writes).
REGRESSIONS["a_mapping_keeps_an_unlinked_file"] = """
open 1 b rw,creat 600
pwrite 1 1 y 8192
mmap 1 1 4096 0 private
unlink b
open 1 a w,creat 644
mwrite 1 0 5 z
mread 1 0 8
munmap 1
open 2 c w,creat 644
write 2 0 x
fstat 2
"""

# A symlink to "." lets a script stat the directory above its scratch directory: the harness's
# native one was mkdtemp's 0700 while the guest's is mkdir's 0755 (a harness mismatch, not emu's).
REGRESSIONS["a_symlink_to_dot_reaches_the_batch_directory"] = """
symlink . D
stat D/..
"""


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression_script_matches_linux(regression_outputs, name):
    guest, native = regression_outputs[name]
    assert guest == native, "\n".join(difflib.unified_diff(native.splitlines(), guest.splitlines(), "linux", "emu",
                                                          lineterm=""))


# ----------------------------------------------------------------------------------------------
# the scripts Hypothesis writes


NAMES = ["a", "b", "c", "D", "E", "l", "D/a", "D/b", "D/F", "D/l", "E/a", "D/F/a"]
ODD_PATHS = ["a/", "D/", "a/x", "nowhere/x", ".", "D/..", "l/", "D/F/.."]
TARGETS = ["a", "b", "D", "../a", "../D", "l", "nowhere", "D/a", ".", "F/a"]
MODES = ["644", "600", "755", "700", "000", "444", "4755", "1777"]
SIZES = [0, 1, 3, 7, 100, 4095, 4096, 4097, 9000]
OFFSETS = [0, 1, 5, 100, 4095, 4096, 8192, 12288, 50000, 4300000]  # 50000: indirect, 4300000: double indirect
ACCESS = ["r", "w", "rw"]
OPEN_FLAGS = ["creat", "excl", "trunc", "append", "directory", "nofollow", "cloexec"]
SLOTS = st.sampled_from("0123")
MAPS = st.sampled_from("01")
paths = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), st.sampled_from(ODD_PATHS))
chars = st.sampled_from("xyz")
sizes = st.sampled_from(SIZES)
offsets = st.sampled_from(OFFSETS)
modes = st.sampled_from(MODES)


SETUP = [
    "mkdir D 755", "mkdir E 755", "mkdir D/F 755",
    "open 0 a rw,creat 644\nwrite 0 {n} x",
    "open 1 b rw,creat 600\npwrite 1 {n} y {off}",
    "open 2 D/a w,creat 644\nwrite 2 {n} z",
    "symlink a l", "symlink ../a D/l", "link a c",
    "open 3 D r,directory 644",
    "mmap 0 0 8192 0 shared\nmmap 1 1 4096 0 private",
]


@st.composite
def open_flags(draw, creat_likely: bool = True) -> str:  # type: ignore[no-untyped-def]
    access = draw(st.sampled_from(ACCESS))
    extra = draw(st.lists(st.sampled_from(OPEN_FLAGS), max_size=3, unique=True))
    if creat_likely and draw(st.booleans()) and "creat" not in extra:
        extra.append("creat")
    return ",".join([access] + extra)


def times() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["now", "omit"]), st.integers(100, 999).map(str))


@st.composite
def script(draw, max_ops: int = 24) -> str:  # type: ignore[no-untyped-def]
    """One script over a small namespace, so that calls collide."""

    # A populated start (each step drawn in or out), so that most calls meet something.
    lines: list[str] = []
    for step in SETUP:
        if draw(st.booleans()):
            for line in step.format(n=draw(sizes), off=draw(offsets)).splitlines():
                lines.append(line)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from([
            "open", "open", "open", "openat", "creat", "close", "read", "read", "write", "write",
            "pread", "pwrite", "lseek", "ftruncate", "truncate", "fsync", "rename", "rename",
            "renameat2", "link", "unlink", "symlink", "readlink", "mkdir", "mkdir", "rmdir", "chmod",
            "fchmod", "utimens", "stat", "lstat", "fstat", "getdents", "dup", "dup3", "fcntl", "lock",
            "mmap", "mread", "mwrite", "munmap"]))
        s = draw(SLOTS)
        if op == "open":
            fl = draw(open_flags())
            lines.append(f"open {s} {draw(paths)} {fl} {draw(modes)}")
        elif op == "openat":
            fl = draw(open_flags())
            lines.append(f"openat {s} {draw(st.sampled_from(['cwd', '3', '3', '0']))} {draw(paths)} {fl}")
        elif op == "creat":
            lines.append(f"creat {s} {draw(paths)} {draw(modes)}")
        elif op in ("close", "fsync", "fstat", "getdents"):
            lines.append(f"{op} {s}")
        elif op == "read":
            lines.append(f"read {s} {draw(sizes)}")
        elif op == "write":
            lines.append(f"write {s} {draw(sizes)} {draw(chars)}")
        elif op == "pread":
            lines.append(f"pread {s} {draw(sizes)} {draw(offsets)}")
        elif op == "pwrite":
            lines.append(f"pwrite {s} {draw(sizes)} {draw(chars)} {draw(offsets)}")
        elif op == "lseek":
            whence = draw(st.sampled_from(["set", "cur", "end", "data", "hole"]))
            off = draw(st.one_of(offsets, st.sampled_from([-1, -5])))
            lines.append(f"lseek {s} {off} {whence}")
        elif op == "ftruncate":
            lines.append(f"ftruncate {s} {draw(st.one_of(offsets, st.just(-1)))}")
        elif op == "truncate":
            lines.append(f"truncate {draw(paths)} {draw(offsets)}")
        elif op in ("rename", "link"):
            lines.append(f"{op} {draw(paths)} {draw(paths)}")
        elif op == "renameat2":
            fl = draw(st.sampled_from(["0", "noreplace", "exchange", "exchange", "noreplace,exchange"]))
            lines.append(f"renameat2 {draw(paths)} {draw(paths)} {fl}")
        elif op in ("unlink", "rmdir", "readlink", "stat", "lstat"):
            lines.append(f"{op} {draw(paths)}")
        elif op == "symlink":
            lines.append(f"symlink {draw(st.sampled_from(TARGETS))} {draw(paths)}")
        elif op in ("mkdir", "chmod"):
            lines.append(f"{op} {draw(paths)} {draw(modes)}")
        elif op == "fchmod":
            lines.append(f"fchmod {s} {draw(modes)}")
        elif op == "utimens":
            fl = draw(st.sampled_from(["0", "nofollow"]))
            lines.append(f"utimens {draw(paths)} {draw(times())} {draw(times())} {fl}")
        elif op in ("dup", "dup3"):
            t = draw(SLOTS)
            lines.append(f"dup {s} {t}" if op == "dup" else f"dup3 {s} {t} {draw(st.sampled_from(['0', 'cloexec']))}")
        elif op == "fcntl":
            cmd = draw(st.sampled_from(["getfl", "getfd", "setfl", "setfd"]))
            arg = {"setfl": draw(st.sampled_from(["0", "append", "nonblock", "append,nonblock"])),
                   "setfd": draw(st.sampled_from(["0", "1"]))}.get(cmd, "")
            lines.append(f"fcntl {s} {cmd} {arg}".rstrip())
        elif op == "lock":
            cmd = draw(st.sampled_from(["setlk", "getlk"]))
            kinds = ["rd", "wr", "un"]
            lines.append(f"{cmd} {s} {draw(st.sampled_from(kinds))} "
                         f"{draw(st.sampled_from([0, 10, 4096]))} {draw(st.sampled_from([0, 1, 100]))}")
        elif op == "mmap":
            lines.append(f"mmap {draw(MAPS)} {s} {draw(st.sampled_from([4096, 8192]))} "
                         f"{draw(st.sampled_from([0, 4096]))} {draw(st.sampled_from(['private', 'shared']))}")
        elif op == "mread":
            lines.append(f"mread {draw(MAPS)} {draw(st.sampled_from([0, 1, 4000, 4096]))} {draw(st.sampled_from([1, 50, 96]))}")
        elif op == "mwrite":
            lines.append(f"mwrite {draw(MAPS)} {draw(st.sampled_from([0, 10, 4096]))} 5 {draw(chars)}")
        elif op == "munmap":
            lines.append(f"munmap {draw(MAPS)}")
    return "\n".join(lines)


# The quick suite: BATCHES guest runs of BATCH scripts each; the slow one many more.
BATCH = 50
BATCHES = 12
SLOW_BATCHES = 120
SLOW_BATCH = 50
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]  # Runner.minimise shrinks, in batches


@settings(max_examples=BATCHES, phases=NO_SHRINK, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scripts=st.lists(script(), min_size=BATCH, max_size=BATCH))
def test_random_scripts_match_linux(runner, scripts):
    runner.check(scripts)


@pytest.mark.slow
@settings(max_examples=SLOW_BATCHES, phases=NO_SHRINK, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scripts=st.lists(script(), min_size=SLOW_BATCH, max_size=SLOW_BATCH))
def test_many_random_scripts_match_linux(runner, scripts):
    runner.check(scripts)


def test_a_wrong_kernel_answer_is_caught_and_minimised(runner, monkeypatch):
    """The harness can fail: with an ext2 whose RENAME_EXCHANGE does nothing (and says it did),
    the mismatch is found among other scripts and cut down to the lines that make it."""
    from guestkernel.ext2 import Ext2

    monkeypatch.setattr(Ext2, "exchange", lambda self, *args: None)
    script = "open 0 a w,creat\nwrite 0 3 x\nmkdir D 755\nstat a\nrenameat2 a D exchange\nstat D"
    with pytest.raises(pytest.fail.Exception) as failed:
        runner.check(["mkdir E 755\nstat E", script, "symlink a l\nreadlink l"])
    report = str(failed.value)
    assert report.startswith("1 of 3 scripts differ from Linux; the first, minimised:\n"
                             "open 0 a w,creat\nmkdir D 755\nrenameat2 a D exchange\n--- output"), report
    assert "-tree s0/D reg 0644 size=0" in report and "+tree s0/D dir 0755 size=4096" in report, report
