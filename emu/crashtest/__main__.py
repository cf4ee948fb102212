"""`python -m emu.crashtest restart --state DIR ...`: one restart from a shell (the command
line a point's JSON gives to reproduce it); `python -m emu.crashtest batch DIR JOBS`: a batch
of points on a cluster worker (emu/crashtest/cluster.py)."""
import sys

from emu.crashtest.restart import restart_main

if __name__ == "__main__":
    if sys.argv[1:2] == ["batch"]:
        from emu.crashtest.cluster import batch_main

        sys.exit(batch_main(sys.argv[2:]))
    sys.exit(restart_main())
