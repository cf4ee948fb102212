"""How every emu entry point ends: a user's mistake is one line and its exit status, a guest
kernel panic one line, a bug in emu one line too (noted for the test suite, see
vmm/errors.note_internal_error), never a traceback unless EMU_DEBUG is set."""
from __future__ import annotations

import errno
import os
import sys
from typing import Callable

from vmm.errors import EXIT_ERROR, EXIT_INTERNAL, EmuError, note_internal_error


def guarded(body: Callable[[], int]) -> int:
    """Run a command's body and turn what it raises into a message and an exit status."""
    try:
        return body()
    except EmuError as e:
        print(f"emu: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", EXIT_ERROR)
    except KeyboardInterrupt:
        print("emu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the host's disk, not a bug of emu
            where = f" writing {e.filename}" if e.filename else ""
            print(f"emu: error: the host file system is full{where}: {e.strerror}", file=sys.stderr)
            return EXIT_ERROR
        return _unexpected(e)
    except Exception as e:  # kernel panics and the like: one line, no traceback
        return _unexpected(e)


def _unexpected(e: Exception) -> int:
    from guestkernel.interface import KernelPanic

    if isinstance(e, KernelPanic):
        print(f"emu: kernel panic: {e}", file=sys.stderr)
        return EXIT_ERROR
    if os.environ.get("EMU_DEBUG"):
        raise e
    note_internal_error("emu " + " ".join(sys.argv[1:3]), e)
    print(f"emu: internal error: {type(e).__name__}: {e} (set EMU_DEBUG=1 for a traceback)", file=sys.stderr)
    return EXIT_INTERNAL


def note_if_bug(where: str, e: BaseException) -> None:
    """For code that reports what it caught as a finding (crash campaigns): note it as an
    internal error unless it is a user's mistake or a guest kernel panic."""
    from guestkernel.interface import KernelPanic

    if not isinstance(e, (EmuError, KernelPanic)):
        note_internal_error(where, e)
