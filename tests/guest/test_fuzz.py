"""Property-based: random bytes as an ELF and random syscall arguments never break the machine
(no host exception, the image stays clean); the guest gets errors or signals."""
from __future__ import annotations

import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import e2fsck_clean, put_file, run_emu

COMMON = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

ELF_HEADER = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHI", 2, 62, 1)


@COMMON
@given(body=st.binary(min_size=0, max_size=600), keep_header=st.booleans())
def test_random_elf_bytes(base_image, guest_programs, tmp_path_factory, body, keep_header):
    tmp = tmp_path_factory.mktemp("elf")
    image = tmp / "disk.img"
    shutil.copyfile(base_image, image)
    bad = tmp / "bad"
    bad.write_bytes((ELF_HEADER if keep_header else b"") + body)
    put_file(image, bad, "/bin/bad")
    put_file(image, guest_programs / "probe", "/bin/probe")
    run = run_emu(image, ["/bin/probe", "spawn", "/bin/bad"])
    assert run.result.exit_code == 0
    assert run.stdout.startswith(b"status=")
    e2fsck_clean(image)


# Syscalls whose arguments are fuzzed: files, memory, descriptors, time, identity, sockets,
# eventfd and epoll. Calls that end or replace the process (exit, execve, fork bombs, kill) are
# left out so the run finishes, and so are calls that wait without a timeout for another process
# (accept, recv, epoll_wait, futex waits).
FUZZED = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 16, 17, 18, 19, 20, 21, 22, 32, 33, 63, 72, 76, 77, 78, 79,
          80, 82, 83, 84, 86, 87, 88, 89, 90, 95, 96, 97, 99, 102, 137, 201, 217, 228, 257, 262, 263, 292, 293,
          302, 318, 332, 400, 1000,
          41, 42, 44, 46, 48, 49, 50, 51, 52, 53, 54, 55, 233, 290, 291]
arg = st.one_of(
    st.integers(0, 2**64 - 1),
    st.integers(0, 4096),
    st.integers(0, 0xFFFF).map(lambda o: (1 << 62) | o),  # a valid pointer into the scratch buffer
    st.sampled_from([0, 1, 2, 0xFFFFFFFFFFFFFF9C, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFF000, 0xFFFF800000000000]),
)
record = st.tuples(st.sampled_from(FUZZED), arg, arg, arg, arg, arg, arg)


@COMMON
@given(calls=st.lists(record, min_size=1, max_size=40))
def test_random_syscall_arguments(base_image, guest_programs, tmp_path_factory, calls):
    tmp = tmp_path_factory.mktemp("sys")
    image = tmp / "disk.img"
    shutil.copyfile(base_image, image)
    recs = tmp / "calls.bin"
    recs.write_bytes(b"".join(struct.pack("<7Q", *c) for c in calls))
    put_file(image, recs, "/calls.bin", 0o100644)
    put_file(image, guest_programs / "fuzz", "/bin/fuzz")
    run = run_emu(image, ["/bin/fuzz", "/calls.bin"])
    # The fuzzer either finishes or is killed by a signal its own calls provoked (e.g. SIGPIPE,
    # or munmap of its own code): both are guest outcomes, not machine failures.
    assert run.result.exit_code == 0 and run.stdout.endswith(f"done {len(calls)}\n".encode()) or run.result.exit_code > 128
    e2fsck_clean(image)


@pytest.mark.slow
def test_many_random_syscall_sequences(base_image, guest_programs, tmp_path_factory):
    inner = test_random_syscall_arguments.hypothesis.inner_test
    run = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))(
        given(calls=st.lists(record, min_size=1, max_size=60))(
            lambda calls: inner(base_image, guest_programs, tmp_path_factory, calls)))
    run()
