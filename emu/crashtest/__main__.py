"""`python -m emu.crashtest restart --state DIR ...`: one restart from a shell (the command
line a point's JSON gives to reproduce it)."""
import sys

from emu.crashtest.restart import restart_main

if __name__ == "__main__":
    sys.exit(restart_main())
