"""Hybrid-memory image: the base image (its /data corpus and tools) plus the host's stress, xz
and bzip2 (Debian packages stress, xz-utils and bzip2, installed by scripts/setup.sh), the
workloads of `emu reproduce hybrid-mram`: Debian's real `stress`, the tool the paper used, and
compressors as stand-ins for SPEC CPU."""

from dataclasses import replace

from images.recipes.base import RECIPE as BASE

RECIPE = replace(
    BASE,
    name="hybrid",
    binaries={**BASE.binaries, "stress": "/bin/stress", "xz": "/bin/xz", "bzip2": "/bin/bzip2"},
    files={**BASE.files, "/sbin/init": "#!/bin/sh\nPATH=/bin\nexport PATH\nstress --version\nxz --version\n"},
)
