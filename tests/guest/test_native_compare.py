"""Real GNU grep, gzip, tar and dash under emu produce byte for byte what they produce natively
on the same input files; files they write land in the image; the image stays e2fsck-clean. Each
comparison runs twice: on the block device (page cache) and on storage mapped as memory (DAX)."""
from __future__ import annotations

import pytest

from images.build import read_file
from tests.conftest import put_file, run_native
from vmm.config import apply_overrides, default_machine


@pytest.fixture(params=["block", "memory"], ids=lambda m: f"storage={m}")
def emu(request, emu):
    if request.param == "block":
        return emu
    memory = apply_overrides(default_machine(), ["storage.mode=memory"])

    def run(argv, image=None, config=None):
        return emu(argv, image, config or memory)

    run.fresh_image = emu.fresh_image
    return run

GREP_CASES = [
    ["grep", "-c", "persistent", "data/corpus.txt"],
    ["grep", "-E", "[Cc]heck(point|ed) [a-z]+", "data/corpus.txt"],
    ["grep", "-i", "-c", "MEMORY", "data/corpus.txt"],
    ["grep", "-v", "-c", "e", "data/corpus.txt"],
    ["grep", "-n", "-w", "memory", "data/corpus.txt"],
    ["grep", "-r", "persistent", "data/tree"],
    ["grep", "-r", "-l", "-i", "checkpoint", "data/tree"],
    ["grep", "-c", "no-such-word-anywhere", "data/corpus.txt"],
]


@pytest.mark.parametrize("argv", GREP_CASES, ids=lambda a: " ".join(a[1:-1]))
def test_grep_matches_native(emu, native_root, argv):
    native = run_native(argv, native_root)
    run = emu(["/bin/sh", "-c", 'cd / && exec "$@"', "sh"] + argv)
    assert run.stdout == native.stdout
    assert run.stderr == native.stderr
    assert run.result.exit_code == native.returncode


def test_gzip_compress_and_decompress(emu, native_root):
    native = run_native(["gzip", "-9", "-c", "data/corpus.txt"], native_root)
    run = emu(["/bin/sh", "-c", "gzip -9 -c /data/corpus.txt > /tmp/c.gz && gzip -9 -c /data/corpus.txt && gzip -d -c /tmp/c.gz > /tmp/c.out"])
    assert run.result.exit_code == 0, run.stderr
    assert run.stdout == native.stdout
    assert read_file(run.image, "/tmp/c.gz") == native.stdout
    assert read_file(run.image, "/tmp/c.out") == (native_root / "data/corpus.txt").read_bytes()


REPRO_TAR = ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "--format=gnu"]


def test_tar_create_into_image(emu, native_root):
    native = run_native(["tar", "cf", "tmp/tree.tar", *REPRO_TAR, "-C", "data", "tree"], native_root)
    assert native.returncode == 0
    run = emu(["/bin/tar", "cf", "/tmp/tree.tar", *REPRO_TAR, "-C", "/data", "tree"])
    assert run.result.exit_code == 0, run.stderr
    assert read_file(run.image, "/tmp/tree.tar") == (native_root / "tmp/tree.tar").read_bytes()


def test_tar_czf_runs_gzip_as_a_child(emu, native_root):
    native = run_native(["tar", "czf", "tmp/tree.tgz", *REPRO_TAR, "-C", "data", "tree"], native_root)
    assert native.returncode == 0
    run = emu(["/bin/tar", "czf", "/tmp/tree.tgz", *REPRO_TAR, "-C", "/data", "tree"])
    assert run.result.exit_code == 0, run.stderr
    assert run.result.syscalls.get("execve", 0) >= 1  # gzip was exec'ed by tar's child
    assert read_file(run.image, "/tmp/tree.tgz") == (native_root / "tmp/tree.tgz").read_bytes()


def test_tar_extract_reproduces_the_tree(emu, native_root, tmp_path):
    script = ("tar cf /tmp/t.tar -C /data tree && mkdir /tmp/x && tar xf /tmp/t.tar -C /tmp/x && "
              "tar tvf /tmp/t.tar --numeric-owner && cd /tmp/x && find . | sort")
    run = emu(["/bin/sh", "-c", script])
    assert run.result.exit_code == 0, run.stderr
    from images.build import extract

    out = extract(run.image, "/tmp/x/tree", tmp_path / "x")
    src = native_root / "data" / "tree"
    host_files = sorted(p.relative_to(src) for p in src.rglob("*"))
    guest_files = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert guest_files == host_files
    for rel in host_files:
        if (src / rel).is_file():
            assert (out / rel).read_bytes() == (src / rel).read_bytes(), rel
            assert ((out / rel).stat().st_mode & 0o777) == ((src / rel).stat().st_mode & 0o777)
    native_list = run_native(["sh", "-c", "cd data && find tree | sort | sed 's|^tree|./tree|'"], native_root)
    assert run.stdout.endswith(b".\n" + native_list.stdout)


DASH_SCRIPT = r"""
set -e
n=0
for f in data/tree/*; do
  n=$((n + 1))
done
echo "entries: $n"
words=$(cat data/corpus.txt | grep -i memory | wc -l)
echo "memory lines: $words"
cat data/corpus.txt | grep persistent | sed 's/persistent/PERSISTENT/g' | head -n 5
mkdir -p tmp/work/a/b
echo one > tmp/work/a/f1
echo two >> tmp/work/a/f1
cat < tmp/work/a/f1 | wc -c
mv tmp/work/a tmp/work/c
ls tmp/work
rm -r tmp/work/c
rmdir tmp/work
i=0
while [ $i -lt 5 ]; do
  printf '%s:%s ' "$i" "$(echo $i | tr 0-9 a-j 2>/dev/null || echo $i)"
  i=$((i + 1))
done
echo
case "$(grep -c checkpoint data/corpus.txt)" in
  0) echo none ;;
  *) echo "some checkpoints" ;;
esac
{ echo to-stderr >&2; echo to-stdout; } 2>&1 | sort
false || echo "status $?"
exit 3
"""


def test_dash_script_matches_native(emu, native_root):
    native = run_native(["/bin/dash", "-c", DASH_SCRIPT], native_root)
    run = emu(["/bin/sh", "-c", "cd / && " + DASH_SCRIPT.replace("set -e\n", "")])
    native = run_native(["/bin/dash", "-c", DASH_SCRIPT.replace("set -e\n", "")], native_root)
    assert run.stdout == native.stdout
    assert run.result.exit_code == native.returncode == 3


# Renames that replace something, through the syscall layer: over a file (which an open
# descriptor keeps alive), over an empty directory, onto another link of the same inode (a
# no-op), and the refusals (a non-empty directory, a file over a directory and back).
RENAME_SCRIPT = r"""
cd "$1"
printf a > h; printf n > n
exec 3< h
$R n h; cat h; echo; cat <&3; echo
exec 3<&-
printf z > y; $R y h; cat h; echo
mkdir d e; touch d/in; $R d e; ls e; ls -d d 2>/dev/null || echo "d gone"
mkdir f g; touch g/x; $R f g; ls -d f g
printf 1 > l1; ln l1 l2; $R l1 l2; ls l1 l2; stat -c '%h %s' l2
$R h e; $R e h; $R nothere h; $R e e/sub; $R . x
ls -a; stat -c '%n %h %s %F' . e f g h l1 l2
"""


def test_rename_replacing_matches_native(emu, tmp_path, guest_programs):
    (tmp_path / "w").mkdir()
    env_native = f"R={guest_programs / 'renameto'}; "
    native = run_native(["/bin/dash", "-c", env_native + RENAME_SCRIPT, "sh", str(tmp_path / "w")], tmp_path)
    image = emu.fresh_image()
    put_file(image, guest_programs / "renameto", "/bin/renameto")
    run = emu(["/bin/sh", "-c", "R=/bin/renameto; mkdir /tmp/w && " + RENAME_SCRIPT, "sh", "/tmp/w"], image)
    assert native.returncode == 0 and native.stdout.count(b" = 0") == 4, native.stdout
    assert (run.stdout, run.stderr, run.result.exit_code) == (native.stdout, native.stderr, 0)
