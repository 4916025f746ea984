"""The daemon's one configuration object, built once at the edge (CLI or tests) and passed inward.

Defaults live only here. `ServerConfig.resolved()` fills the defaults that depend on other fields
(ring name from the GPU index, frame size from the backend) and validates everything, raising
`ConfigError` with a message that names the option and says what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ca_server.errors import CAServerError
from ca_server.exit_codes import ExitCode
from ca_server.wire.errors import WireError
from ca_server.wire.paths import default_ring_name, validate_ring_name

GPU_DEFAULT_SIZE = 1024
CPU_DEFAULT_SIZE = 512
# The one rule for frame sides, also enforced by Simulation: below 32 the kernels' radii and
# the flow field's cells do not fit; above 8192 no card we target holds the fields.
MIN_FRAME_SIDE = 32
MAX_FRAME_SIDE = 8192
LOG_LEVELS = ("debug", "info", "warning", "error")
BACKEND_CHOICES = ("auto", "numpy", "cupy")  # `auto`: CuPy when it works, else numpy (xp.py)

# The GPU memory cap (CuPy's pool): --max-vram-mb, or by default scaled with the frame size so a
# preset change fits at any size, never below DEFAULT_VRAM_CAP_MB (what 1024², the GPU default,
# has always had). The model of a change's peak (BENCHMARKS.md "GPU memory cap at 2048²"): the
# pool's peak through a change to another engine, counted on the CPU by tests/device_boundary.py,
# grows by at most CHANGE_BYTES_PER_PIXEL per frame pixel above MODEL_FIXED_MB
# (tests/ca/test_memory_model.py measures 205-262 B/px between 128² and 192², 2.5 MiB fixed).
# cuFFT's work areas come out of the same pool and are not seen on the CPU: modelled as one complex
# half-spectrum (4 B/px) per cached plan, 16 plans (CuPy's plan cache size). The margin covers the
# pool's rounding to its block sizes and fragmentation.
DEFAULT_VRAM_CAP_MB = 1024
CHANGE_BYTES_PER_PIXEL = 288
FFT_WORK_BYTES_PER_PIXEL = 64
MODEL_FIXED_MB = 16
MODEL_MARGIN = 1.25


def change_memory_mb(width: int, height: int) -> int:
    """The modelled peak of CuPy's pool (MiB) while a (width, height) frame changes preset."""
    per_pixel = CHANGE_BYTES_PER_PIXEL + FFT_WORK_BYTES_PER_PIXEL
    return math.ceil(MODEL_MARGIN * (MODEL_FIXED_MB + width * height * per_pixel / 2**20))


def scaled_vram_cap_mb(width: int, height: int) -> int:
    """The default --max-vram-mb for a (width, height) frame: the model's peak, at least 1024."""
    return max(DEFAULT_VRAM_CAP_MB, change_memory_mb(width, height))


class ConfigError(CAServerError, ValueError):
    """An option has a value the daemon cannot run with."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class ServerConfig:
    """Everything `ca-server serve` needs; `None` means "derive it" (see `resolved`)."""

    gpu: int = 0
    backend: str = "auto"
    width: int | None = None
    height: int | None = None
    fps: float = 30.0
    preset: str = "coral"
    seed: int = 0
    name: str | None = None
    slots: int = 8
    control: str | None = None
    allow_remote: bool = False
    link: bool = False  # follow an Ableton Link session (needs the `link` extra: aalink)
    presets_dir: Path | None = None
    max_vram_mb: int | None = None  # None: scaled with the frame size (`gpu_memory_cap_mb`)
    log_level: str = "info"

    def resolved(self, backend_name: str | None = None) -> ServerConfig:
        """A validated copy with the derived defaults filled in.

        `backend_name` is the backend actually selected ("numpy" or "cupy"); it decides the default
        frame size (1024² on a GPU, 512² on the CPU).
        """
        self._validate()
        side = GPU_DEFAULT_SIZE if backend_name == "cupy" else CPU_DEFAULT_SIZE
        return dataclasses.replace(
            self,
            name=self.name or default_ring_name(self.gpu),
            width=self.width or side,
            height=self.height or side,
        )

    @property
    def gpu_memory_cap_mb(self) -> int:
        """The cap on CuPy's pool: --max-vram-mb, or scaled with the size a GPU run has."""
        if self.max_vram_mb is not None:
            return self.max_vram_mb
        return scaled_vram_cap_mb(self.width or GPU_DEFAULT_SIZE, self.height or GPU_DEFAULT_SIZE)

    def memory_cap_warning(self) -> str | None:
        """One line when an explicit --max-vram-mb is below the model's peak for a preset change
        at the GPU frame size (such changes would be dropped as out of memory); else None."""
        width, height = self.width or GPU_DEFAULT_SIZE, self.height or GPU_DEFAULT_SIZE
        needed = change_memory_mb(width, height)
        if self.max_vram_mb is None or self.max_vram_mb >= needed:
            return None
        return (
            f"--max-vram-mb {self.max_vram_mb} is below the ≈{needed} MB a preset change needs "
            f"at {width}x{height}: changes may be dropped as out of memory; raise it or leave it "
            "unset (the default scales with the frame size)"
        )

    def _validate(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(f"--backend {self.backend!r}: choose one of {BACKEND_CHOICES}")
        if self.gpu < 0:
            raise ConfigError(f"--gpu {self.gpu}: a GPU index is 0 or more")
        for option, side in (("--width", self.width), ("--height", self.height)):
            if side is not None and not MIN_FRAME_SIDE <= side <= MAX_FRAME_SIDE:
                raise ConfigError(
                    f"{option} {side}: choose a size from {MIN_FRAME_SIDE} to {MAX_FRAME_SIDE} "
                    "pixels"
                )
        if not (math.isfinite(self.fps) and 1 <= self.fps <= 2000):
            raise ConfigError(f"--fps {self.fps}: choose a frame rate from 1 to 2000")
        if not 2 <= self.slots <= 56:
            raise ConfigError(f"--slots {self.slots}: choose from 2 to 56 ring slots")
        if self.max_vram_mb is not None and self.max_vram_mb < 64:
            raise ConfigError(f"--max-vram-mb {self.max_vram_mb}: allow at least 64 MB")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level {self.log_level!r}: choose one of {LOG_LEVELS}")
        if self.presets_dir is not None and not self.presets_dir.is_dir():
            raise ConfigError(f"--presets-dir {self.presets_dir}: no such folder")
        if self.name is not None:
            try:
                validate_ring_name(self.name)
            except WireError as exc:
                raise ConfigError(f"--name: {exc}") from exc
