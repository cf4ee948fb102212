"""Run one command under qiling and print a JSON line with timing and output digest.

Usage (with the qiling venv's python): qiling_runner.py ROOTFS -- /bin/prog args...

Guest paths are relative to ROOTFS (an extracted emu image).  The timed region is
Qiling(...) construction (ELF/ld.so loading) + ql.run().
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
import traceback


def _capture_file(name: str):
    """A host temp file wrapped as a qiling file object (so fstat/newfstatat on fd 1/2 work)."""
    from qiling.os.filestruct import PersistentQlFile

    tmp = tempfile.TemporaryFile(prefix=f"ql-{name}-")
    return tmp, PersistentQlFile(f"/proc/self/fd/{tmp.fileno()}", tmp.fileno())


def _read_all(tmp) -> bytes:
    tmp.seek(0)
    return tmp.read()


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        print("usage: qiling_runner.py ROOTFS -- /bin/prog args...", file=sys.stderr)
        return 2
    rootfs, argv = args[0].rstrip("/"), args[2:]
    res: dict = {}
    try:
        import qiling
        import unicorn
        from qiling import Qiling
        from qiling.const import QL_VERBOSE

        res["qiling_version"] = getattr(qiling, "__version__", "?")
        res["unicorn_version"] = unicorn.__version__
        out_tmp, out = _capture_file("stdout")
        err_tmp, err = _capture_file("stderr")
        t0 = time.perf_counter()
        ql = Qiling([rootfs + argv[0], *argv[1:]], rootfs, verbose=QL_VERBOSE.DISABLED,
                    console=False)
        ql.os.stdout = out
        ql.os.stderr = err
        ql.run()
        res["wall_s"] = time.perf_counter() - t0
        exit_code = getattr(ql.os, "exit_code", None)
        res["exit_code"] = exit_code
        o = _read_all(out_tmp)
        res["stdout_bytes"] = len(o)
        res["stdout"] = o.hex() if len(o) <= 1 << 16 else None
        res["stdout_sha256"] = hashlib.sha256(o).hexdigest()
        res["stderr_tail"] = _read_all(err_tmp)[-500:].decode(errors="replace")
    except BaseException as e:  # report, never crash the benchmark
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback_tail"] = traceback.format_exc()[-1500:]
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
