"""mremap as Linux does it (tests/programs/remap.c, the same output in the guest and natively): a
move keeps a mapping what it is. A private file mapping moved and grown reads the file where it
was never touched and keeps its offset; copy-on-write pages moved in a child after fork stay the
parent's; pieces of one mapping grow in place; MREMAP_DONTUNMAP and old_len 0; Linux's errors.
Before, every move copied the bytes into a fresh anonymous mapping: the grown part of a file
mapping read zeros, /proc/self/maps showed offset 0, DONTUNMAP kept the old pages."""
from __future__ import annotations

import shutil

from tests.conftest import put_file, run_emu, run_native


def test_mremap_moves_mappings_as_linux_does(base_image, guest_programs, tmp_path):
    image = tmp_path / "disk.img"
    shutil.copyfile(base_image, image)
    put_file(image, guest_programs / "remap", "/bin/remap")
    guest = run_emu(image, ["/bin/remap"])
    native = run_native([str(guest_programs / "remap")], tmp_path)
    assert guest.result.exit_code == native.returncode == 0, guest.stdout
    assert guest.stdout == native.stdout
    out = guest.stdout.decode()
    for line in ("page 0: written before the move; page 3: file page 5; page 5: file page 7",
                 "moved file mapping: rw-p offset 2000 remap.data", "middle part moved: rw-p offset 4000 remap.data",
                 "dontunmap file: old file page 0 | new private write", "pieces grown in place: same address, last page",
                 "parent after the child's move: parent page 0 | parent page 1 | status 0",
                 "grow over two mappings: Bad address", "dontunmap anon: old all zeros | new anonymous data",
                 "shared: old shared | moved shared through the duplicate | duplicate shared"):
        assert line + "\n" in out
