"""What `emu run` skips at start-up must give what it used to: the sites of a piece of code read
back from the disk cache, the parser of one subcommand, the remembered image key, and an `emu
run` process that ends without the interpreter's teardown."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emu.cli import COMMANDS, build_parser, command_of
from hw import sites

ROOT = Path(__file__).parents[2]

# rdtsc, clflush [rax], mfence, lock-prefixed noise, clwb [rdi+8] (66 0f ae 77 08), movnti
# [rsi], eax (0f c3 06), and bytes that only look like the opcodes' starts.
CODE = (b"\x90\x0f\x31\x48\x0f\xae\x38\x0f\xae\xf0\xf0\x0f\xc3\x06\x66\x0f\xae\x77\x08"
        b"\x12\x0f\x09\x0f\xae\x0f\x01\xf9\xc3" + bytes(range(256)))


def test_sites_come_back_from_the_disk_cache_as_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMU_CACHE_DIR", str(tmp_path))
    sites._cache_dir.cache_clear()
    monkeypatch.setattr(sites, "_scanned", {})
    try:
        fresh = sites._scan(CODE, 0x400000)
        assert {s.kind for s in fresh} >= {"rdtsc", "clflush", "mfence", "clwb", "nt", "wbinvd", "rdtscp"}
        assert sites.scan(CODE, 0x400000) == fresh
        assert len(list(tmp_path.glob("sites/*/*.json"))) == 1
        sites._scanned.clear()

        def no_scan(code: bytes, base: int) -> list[sites.Site]:
            raise AssertionError("scanned again")

        monkeypatch.setattr(sites, "_scan", no_scan)
        assert sites.scan(CODE, 0x400000) == fresh  # from the disk cache
        monkeypatch.setattr(sites, "_scanned", {})
        with pytest.raises(AssertionError, match="scanned again"):
            sites.scan(CODE, 0x401000)  # another address: another entry
    finally:
        sites._cache_dir.cache_clear()


@pytest.mark.parametrize("argv", [
    ["run", "--level", "persist", "--checkpoint", "tcp=1ms", "--summary", "--", "/bin/true"],
    ["boot", "--set", "seed=3"],
    ["restart", "some/dir", "--start-over"],
    ["machine", "show", "--json"],
    ["stats", "dir", "--json"],
    ["crashtest", "--dir", "d", "--points", "3", "--", "/bin/true"],
    ["reproduce", "checkpoint", "--quick"],
    ["image", "build", "base"],
    ["snapshot", "info", "d"],
    ["resume", "d", "--summary"],
])
def test_the_parser_of_one_subcommand_parses_as_the_whole(argv: list[str]) -> None:
    assert command_of(argv) == argv[0] and argv[0] in COMMANDS
    assert vars(build_parser(command_of(argv)).parse_args(argv)) == vars(build_parser().parse_args(argv))
    assert command_of(["--help"]) is None and command_of(["bogus"]) is None and command_of([]) is None


def test_an_emu_run_process_ends_with_its_status_output_and_no_temporary_files(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", "import sys; from emu.cli import main; sys.exit(main())",
                        "run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
                       capture_output=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert p.returncode == 3 and p.stdout == b"out\n" and p.stderr.endswith(b"err\n")
    assert list(tmp_path.iterdir()) == []  # the media directory removed (atexit ran)
