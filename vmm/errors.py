"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""


class EmuError(Exception):
    """A problem with what the user asked for (bad image, bad config, bad arguments)."""


# Exit statuses of `emu` besides the guest's own (documented in README.md). A guest can exit with
# any status of 0..255, so report.json / --summary-json say unambiguously what happened; these
# come from sysexits.h, which guest programs seldom use.
EXIT_ERROR = 1             # a user mistake (one line on stderr)
EXIT_USAGE = 2             # bad command-line arguments
EXIT_RESTART_REFUSED = 65  # EX_DATAERR: `emu restart` cannot resume faithfully; nothing changed
EXIT_INTERNAL = 70         # EX_SOFTWARE: a bug in emu
EXIT_POWER_FAILED = 75     # EX_TEMPFAIL: the run was cut by a power failure (restart it)


class RestartRefusedError(EmuError):
    """`emu restart` refuses: the persistent state cannot reproduce an uninterrupted run."""

    exit_status = EXIT_RESTART_REFUSED


# Where internal errors are also written, one line each, when set: the test suite sets it and
# fails any test during which one happened, in whatever process (campaign workers, restarts).
INTERNAL_ERROR_LOG = "EMU_INTERNAL_ERROR_LOG"


def note_internal_error(where: str, e: BaseException) -> None:
    """Record an exception that is a bug in emu (not an EmuError, not a guest kernel panic)."""
    import os

    path = os.environ.get(INTERNAL_ERROR_LOG)
    if path:
        with open(path, "a") as f:
            f.write(f"{where}: {type(e).__name__}: {e}".replace("\n", " ") + "\n")
