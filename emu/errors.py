"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""


class EmuError(Exception):
    """A problem with what the user asked for (bad image, bad config, bad arguments)."""
