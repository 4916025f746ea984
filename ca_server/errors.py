"""The one exception tree of ca-server, each class carrying the exit code a command ends with.

Every error the project raises on purpose derives from `CAServerError`; a command that stops on
one prints its message as one line and exits with `error.exit_code` (numbers in
`ca_server.exit_codes`). Subclasses override `exit_code`; the tree, with the codes:

    CAServerError                       1   ca_server.errors
    ├── ConfigError                     2   ca_server.config: an option the daemon cannot run with
    ├── BackendUnavailableError        78   ca_server.xp: e.g. --backend cupy without a GPU
    ├── OutOfMemoryError               78   ca_server.errors: out of memory, nothing to drop
    ├── PresetError                    78   ca_server.presets
    │   ├── UnknownPresetError          2
    │   └── PresetFileError            78
    └── WireError                      73   ca_server.wire.errors: ring, paths, control
        ├── UnsafePathError            73
        ├── RingError                  73
        │   ├── ShmTooSmallError       73
        │   ├── RingInUseError         75
        │   ├── RingTruncatedError      1   the ring file shrank under a running daemon
        │   └── RingUnavailableError   69   a reader cannot attach
        │       ├── RingNotFoundError  69
        │       └── RingLayoutError    69
        ├── EndpointRefusedError       78
        └── ControlError      per error code (`ErrorCode.exit_code`): 65, 69 or 70
            └── DaemonUnavailableError 69

Foreign errors (OSError, zmq.ZMQError, msgpack's, CuPy's) are mapped to these where they are
met; anything else reaching a command is a bug and exits 1 with a traceback in the log.
"""

from __future__ import annotations

from ca_server.exit_codes import ExitCode


class CAServerError(Exception):
    """Base of every error ca-server raises on purpose; `exit_code` is the command's exit code."""

    exit_code: ExitCode = ExitCode.UNEXPECTED


class OutOfMemoryError(CAServerError):
    """The daemon ran out of device or host memory with no preset change to drop."""

    exit_code = ExitCode.CONFIG
