"""Snapshot image: the base image plus `holdmem`, the user process of `emu reproduce sonicshot`
(allocates and touches N MiB, then sleeps holding it, as in the SonicShot paper)."""

from dataclasses import replace

from images.recipes.base import RECIPE as BASE

RECIPE = replace(
    BASE,
    name="snapshot",
    programs={**BASE.programs, "/bin/holdmem": "holdmem.c"},
    files={**BASE.files, "/sbin/init": "#!/bin/sh\nPATH=/bin\nexport PATH\nholdmem 1 &\nsleep 1\n"},
)
