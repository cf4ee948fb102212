"""Power failure: what is lost and what survives.

At the cut every volatile thing is gone: DRAM, the cache and its pending flushes, non-temporal
stores not yet fenced, and every kernel structure (the page cache's dirty pages included). What
survives is the SCM media files and the storage image as they stood. The cut can come after an
exact number of instructions or at the K-th persistence event, which may be inside kernel work:
Python code on the event path raises PowerFailure, which unwinds the kernel wherever it is.
"""
from __future__ import annotations


class PowerFailure(BaseException):
    """The power is cut. A BaseException, so no `except Exception` in kernel code swallows it."""
