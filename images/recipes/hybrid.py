"""Hybrid-memory image: the base image (its /data corpus and tools) plus the host's stress, xz,
bzip2 and pigz (Debian packages stress, xz-utils, bzip2 and pigz, installed by scripts/setup.sh),
the workloads of `emu reproduce hybrid-mram`: Debian's real `stress`, the tool the paper used, and
compressors as stand-ins for SPEC CPU; xz -T and pigz -p are the multithreaded programs of the
thread tests."""

from dataclasses import replace

from images.recipes.base import RECIPE as BASE

RECIPE = replace(
    BASE,
    name="hybrid",
    binaries={**BASE.binaries, "stress": "/bin/stress", "xz": "/bin/xz", "bzip2": "/bin/bzip2",
              "pigz": "/bin/pigz"},
    files={**BASE.files, "/sbin/init": "#!/bin/sh\nPATH=/bin\nexport PATH\nstress --version\nxz --version\n"},
)
