"""Stress image: the base image plus the host's stress-ng and fio (Debian packages stress-ng and
fio, installed by scripts/setup.sh), with their shared libraries, to run real file-system stress
and verified I/O in the guest. No /data corpus: the tools make their own files in /tmp."""

from dataclasses import replace

from images.recipes.base import RECIPE as BASE

RECIPE = replace(
    BASE,
    name="stress",
    binaries={**BASE.binaries, "stress-ng": "/bin/stress-ng", "fio": "/bin/fio"},
    files={**BASE.files, "/sbin/init": "#!/bin/sh\nPATH=/bin\nexport PATH\nstress-ng --version\nfio --version\n"},
    params={},
)
