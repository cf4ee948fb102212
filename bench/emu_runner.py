"""Run one command in emu and print a JSON line with timing and output digest.

Usage: .venv/bin/python bench/emu_runner.py IMAGE [--level fast|persist|full|hookonly[-hooklist]] -- /bin/prog args...

The image is copied first (a run writes into its image); the copy is not timed, nor synced to
the host's disk (it is thrown away).  The timed region is Machine construction + Machine.run
(kernel boot, guest run, shutdown).
Run in its own process so a pathological workload can be killed by the caller's timeout.
With --level the machine is default_machine() with that model_level, and (at persist/full)
the cache model's counters and per-channel traffic are reported under "cache". A level ending
in -hooklist runs with EMU_UNICORN=memhook: level full's accesses through Unicorn's hook list, not
the patched library's direct callback (the comparison of bench_models.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time


def main() -> int:
    args = sys.argv[1:]
    level = None
    if len(args) >= 3 and args[1] == "--level":
        level = args[2]
        args = args[:1] + args[3:]
    if len(args) < 3 or args[1] != "--":
        print("usage: emu_runner.py IMAGE [--level fast|persist|full|hookonly[-hooklist]] -- /bin/prog args...",
              file=sys.stderr)
        return 2
    image, argv = args[0], args[2:]
    if level is not None and level.endswith("-hooklist"):
        level = level.removesuffix("-hooklist")
        os.environ["EMU_UNICORN"] = "memhook"  # read when the machine is built
    from vmm.machine import Machine
    from hw.console import Console

    cfg = None
    hook_only = level == "hookonly"  # level full's memory hook, with a model that does nothing:
    if hook_only:                    # Unicorn's own per-access dispatch cost, the bound for full
        level = "full"
    if level is not None:
        from vmm.config import default_machine, derive
        cfg = derive(default_machine(), model_level=level)

    with tempfile.TemporaryDirectory(prefix="emu-bench-") as td:
        img = os.path.join(td, "image.img")
        shutil.copy(image, img)
        t0 = time.perf_counter()
        # The copy is thrown away: no fsync of it at shutdown (host_durable=False), as `emu run`
        # does for its scratch copies; qiling and QEMU sync nothing either.
        m = Machine(img, cfg, console=Console(out_fd=None, err_fd=None, capture=True), host_durable=False)
        if hook_only:
            m.cache.set_level("fast")
        r = m.run(argv)
        wall = time.perf_counter() - t0
    out = bytes(m.console.captured[1])
    err = bytes(m.console.captured[2])
    top = sorted(r.syscalls.items(), key=lambda kv: -kv[1])[:8]
    cache = None
    if getattr(m, "cache", None) is not None:
        cache = {"counters": m.cache.counters(),
                 "channels": {str(ch): m.cache.channel(ch) for ch in m.cache.channels()}}
    print(json.dumps({
        "model_level": r.model_level, "cache": cache,
        "wall_s": wall, "run_wall_s": r.wall_s, "exit_code": r.exit_code,
        "instructions": r.instructions, "virtual_ns": r.virtual_ns,
        "page_faults": r.page_faults, "syscalls_total": sum(r.syscalls.values()),
        "syscalls_top": dict(top),
        "stdout_bytes": len(out), "stdout": out.hex() if len(out) <= 1 << 16 else None,
        "stdout_sha256": hashlib.sha256(out).hexdigest(),
        "stderr_tail": err[-500:].decode(errors="replace"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
