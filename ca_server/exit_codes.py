"""Process exit codes of `ca-server` commands (sysexits-style; usage errors stay 2).

Distinct codes let a supervisor or script tell a startup failure from a runtime error or a usage
mistake without parsing messages.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    BAD_ARGUMENT = 65  # the daemon rejected the arguments (EX_DATAERR)
    UNAVAILABLE = 69  # no daemon answered, or no live ring (EX_UNAVAILABLE)
    INTERNAL = 70  # the daemon reported an internal error (EX_SOFTWARE)
    CANNOT_CREATE = 73  # the ring or its folder could not be created, e.g. /dev/shm full
    IN_USE = 75  # another daemon already serves this name (EX_TEMPFAIL)
    CONFIG = 78  # a configuration the daemon cannot run with, e.g. --backend cupy without GPU
    INTERRUPTED = 130
