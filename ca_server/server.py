"""The daemon: a fixed-rate tick loop that steps the simulation and publishes frames into the ring.

Each tick: poll control (non-blocking) → `Simulation.next_frame` (advance by the speed with the
health statistics queued on the device, render on the device, one device-to-host copy straight into
the ring slot, the frame's only wait, then act on the health verdicts, rendering again in the rare
frame whose world failed) → publish. The loop keeps its own clock at `fps`; readers never slow it,
and a frame that overruns its period is counted as late rather than queued. Control requests are
served while the loop waits for the next tick, so a `ctl` call is answered within a frame. Signal
handlers only set flags; the loop decides. Start-up builds ring → backend → simulation → control
endpoint, shutdown undoes it in reverse.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from ca_server import __version__
from ca_server.beat_control import BeatControl
from ca_server.config import ServerConfig
from ca_server.exit_codes import ExitCode
from ca_server.presets import PresetFileError, UnknownPresetError, catalog
from ca_server.simulation import Simulation
from ca_server.wire.control import ControlEndpoint, remove_stale_ipc_socket
from ca_server.wire.errors import ControlError
from ca_server.wire.paths import default_control_endpoint
from ca_server.wire.protocol import PROTOCOL_VERSION, ErrorCode
from ca_server.wire.ring import RingWriter
from ca_server.xp import Backend

log = logging.getLogger("ca_server.server")

STAGES = ("step", "render", "copy", "publish")
STAGE_EMA_WEIGHT = 0.05  # ~20-frame memory: steady enough to read, quick to show a change
FPS_WINDOW_S = 1.0
# Control may use this share of a frame period even when the frame loop has no idle time left;
# the rest of a request flood waits for the next tick, so the video keeps its rate.
CONTROL_SHARE_OF_PERIOD = 0.1
# A preset change or reseed rebuilds the world in the next frames (~50 ms at 256² on a CPU), so
# changes closer together than this are merged (the latest preset and seed win) and applied at
# the interval: a flood of changes costs what a steady stream of 4 a second does.
CHANGE_INTERVAL_S = 0.25


class FrameClock:
    """Fixed-rate schedule: when the next frame is due, and how many frames ran late."""

    def __init__(self, fps: float) -> None:
        self.period_s = 1.0 / fps
        self.next_due_s = time.monotonic()
        self.late_frames = 0

    def advance(self) -> float:
        """Schedule the next frame; return seconds to wait for it (0 when behind).

        A frame that overran its period is counted once and the schedule restarts from now, so a
        slow stretch never turns into a burst of catch-up frames.
        """
        self.next_due_s += self.period_s
        now = time.monotonic()
        if now > self.next_due_s:
            self.late_frames += 1
            self.next_due_s = now
            return 0.0
        return self.next_due_s - now


class FrameStats:
    """Per-stage times (EMA, ms), published-frame counter and measured frame rate."""

    def __init__(self) -> None:
        self.stage_ms = dict.fromkeys(STAGES, 0.0)
        self.frames_published = 0
        self.measured_fps = 0.0
        self._window_start_s = time.monotonic()
        self._window_frames = 0

    def record(self, stage_s: Mapping[str, float]) -> None:
        for stage, seconds in stage_s.items():
            old = self.stage_ms[stage]
            self.stage_ms[stage] = old + STAGE_EMA_WEIGHT * (seconds * 1e3 - old)
        self.frames_published += 1
        self._window_frames += 1
        now = time.monotonic()
        if now - self._window_start_s >= FPS_WINDOW_S:
            self.measured_fps = self._window_frames / (now - self._window_start_s)
            self._window_start_s, self._window_frames = now, 0

    def idle(self) -> None:
        """While paused the measured rate drops to zero instead of freezing at its last value."""
        self.measured_fps = 0.0
        self._window_start_s, self._window_frames = time.monotonic(), 0


class CAServer:
    """One running daemon: owns the ring writer, the simulation and the control endpoint."""

    def __init__(self, config: ServerConfig, backend: Backend) -> None:
        assert config.name and config.width and config.height, "pass config.resolved()"
        self.config = config
        self.backend = backend
        self.stop_requested = False
        self.paused = False
        self.params_version = 0
        self.started_s = time.monotonic()
        self.stats = FrameStats()
        self.clock = FrameClock(config.fps)
        self._problems_logged: set[str] = set()
        self._pending_preset: str | None = None
        self._pending_seed: int | None = None
        self._last_change_s = -math.inf
        control = config.control or default_control_endpoint(config.name)
        # The ring's lock makes this process the only server of the name, so only after taking it
        # is it safe to remove an ipc socket left behind by a killed predecessor.
        self.writer = RingWriter(
            config.name,
            config.width,
            config.height,
            slots=config.slots,
            control_endpoint=control,
            nominal_fps=config.fps,
        )
        self._unpin_slots: Callable[[], None] = lambda: None
        try:
            self.simulation = Simulation(
                backend,
                width=config.width,
                height=config.height,
                preset=config.preset,
                seed=config.seed,
                presets_dir=config.presets_dir,
            )
            # Pinned once for the daemon's life: the loop's one device-to-host copy lands in a
            # ring slot directly (written for CuPy, a no-op on numpy).
            self._unpin_slots = backend.pin_host_memory(self.writer.data_region())
            remove_stale_ipc_socket(control)
            self.beat = BeatControl(link=config.link)
            self.endpoint = ControlEndpoint(
                control, self._handlers(), allow_remote=config.allow_remote
            )
        except BaseException:
            if hasattr(self, "beat"):
                self.beat.close()
            self._unpin_slots()
            self.writer.close()
            raise

    # --- lifecycle -------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until `stop_requested` is set (by a signal or the caller)."""
        log.info(
            "serving ring %s (%dx%d, %s on %s) at %.0f fps; control %s",
            self.writer.path,
            self.config.width,
            self.config.height,
            self.backend.name,
            self.backend.device_name,
            self.config.fps,
            self.endpoint.endpoint,
        )
        self._presets()  # name any bad file in --presets-dir now, not at the first request
        while not self.stop_requested:
            self.endpoint.poll(0, budget_s=CONTROL_SHARE_OF_PERIOD * self.clock.period_s)
            self._apply_pending_change()
            if self.paused:
                self.writer.heartbeat()
                self.stats.idle()
            else:
                self._produce_frame()
            self._wait(self.clock.advance())

    def close(self) -> None:
        """Tear down in reverse start-up order; safe to call twice."""
        for close in (self.endpoint.close, self.beat.close, self._unpin_slots, self.writer.close):
            try:
                close()
            except Exception:
                log.exception("error during shutdown")

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT request a clean stop; a second SIGINT exits at once."""

        def request_stop(signum: int, _frame: Any) -> None:
            if self.stop_requested and signum == signal.SIGINT:
                os._exit(ExitCode.INTERRUPTED)
            self.stop_requested = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    # --- the tick ----------------------------------------------------------------------------

    def _produce_frame(self) -> None:
        sim = self.simulation
        sim.pulse = self.beat.pulse_at(self.clock.next_due_s, sim.showing_preset)
        self.simulation.next_frame(host_out=self.writer.next_slot())
        started = time.perf_counter()
        self.writer.publish(sim_step=self.simulation.sim_step, params_version=self.params_version)
        publish_s = time.perf_counter() - started
        self.stats.record({**self.simulation.stage_s, "publish": publish_s})

    def _wait(self, seconds: float) -> None:
        """Sleep until the next frame is due, answering control requests meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested:
            remaining_s = deadline - time.monotonic()
            remaining_ms = int(remaining_s * 1e3)
            if remaining_ms <= 0:
                return
            self.endpoint.poll(min(remaining_ms, 100), budget_s=remaining_s)
            if self.paused:
                self.writer.heartbeat()

    # --- control ops ---------------------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        return {
            "hello": lambda _args: self._hello(),
            "ping": lambda _args: {"pong": True, "pid": os.getpid()},
            "status": lambda _args: self.status(),
            "presets": lambda _args: self._presets(),
            "preset": lambda args: self._change(self._request_preset, args["name"]),
            "speed": lambda args: self._change(self._set_attr, "speed", args["value"]),
            "hue": lambda args: self._change(self._set_attr, "hue_shift", args["value"]),
            "brightness": lambda args: self._change(self._set_attr, "brightness", args["value"]),
            "reseed": lambda args: self._change(self._request_reseed, args.get("seed")),
            "pause": lambda _args: self._change(self._set_paused, True),
            "resume": lambda _args: self._change(self._set_paused, False),
            **{
                op: lambda args, handle=handle: self._change(handle, args)
                for op, handle in self.beat.handlers().items()
            },
        }

    def _change(self, apply: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """Apply one control change between frames and bump the params version frames carry."""
        value = apply(*args)
        self.params_version += 1
        result = {"params_version": self.params_version}
        if value is not None:
            result["value"] = value
        return result

    def _request_preset(self, name: str) -> str:
        try:
            catalog(self.config.presets_dir).get(name)  # refuse a bad name now, from memory
        except UnknownPresetError as exc:
            raise ControlError(ErrorCode.UNKNOWN_PRESET, str(exc).strip("'\"")) from exc
        except PresetFileError as exc:
            raise ControlError(ErrorCode.UNKNOWN_PRESET, f"cannot load it: {exc}") from exc
        self._pending_preset = name
        self._apply_pending_change()
        return name

    def _request_reseed(self, seed: int | None) -> int:
        if seed is None:  # drawn here, so the reply can name it even if the change waits
            seed = random.randrange(2**31 - 1)
        self._pending_seed = seed
        self._apply_pending_change()
        return seed

    def _apply_pending_change(self) -> None:
        """Start the merged pending preset change and reseed, unless one started less than
        CHANGE_INTERVAL_S ago (then the next tick tries again)."""
        if self._pending_preset is None and self._pending_seed is None:
            return
        now = time.monotonic()
        if now - self._last_change_s < CHANGE_INTERVAL_S:
            return
        self._last_change_s = now
        name, seed = self._pending_preset, self._pending_seed
        self._pending_preset = self._pending_seed = None
        try:
            if name is not None:
                self.simulation.set_preset(name)
                log.info("preset -> %s", name)
            if seed is not None:
                self.simulation.reseed(seed)
        except (UnknownPresetError, PresetFileError) as exc:  # the file changed since the check
            log.warning("preset change dropped: %s", exc)

    def _set_attr(self, attribute: str, value: float) -> float:
        setattr(self.simulation, attribute, value)
        return getattr(self.simulation, attribute)

    def _set_paused(self, paused: bool) -> bool:
        self.paused = paused
        self.writer.set_paused(paused)
        return paused

    def _presets(self) -> list[dict[str, str]]:
        """The presets that load (from memory: see `presets.catalog`); a bad user file is logged
        by name once and left out."""
        found = catalog(self.config.presets_dir)
        for problem in found.problems.values():
            if problem not in self._problems_logged:
                self._problems_logged.add(problem)
                log.warning("preset file skipped: %s", problem)
        return [
            {"name": p.name, "title": p.title, "engine": p.engine, "description": p.description}
            for p in found.presets
        ]

    def _hello(self) -> dict[str, Any]:
        return {
            "server": "ca-server",
            "version": __version__,
            "protocol": [PROTOCOL_VERSION],
            "ring": {
                "name": self.config.name,
                "path": str(self.writer.path),
                "epoch": self.writer.epoch,
                "width": self.config.width,
                "height": self.config.height,
                "channels": 3,
                "dtype": "uint8",
                "slots": self.config.slots,
            },
        }

    def status(self) -> dict[str, Any]:
        """Everything `ctl status` shows; plain msgpack-able values only."""
        sim = self.simulation
        return {
            "version": __version__,
            "pid": os.getpid(),
            "backend": self.backend.name,
            "device": self.backend.device_name,
            "width": self.config.width,
            "height": self.config.height,
            "preset": self._pending_preset or sim.preset_name,
            "speed": sim.speed,
            "hue": sim.hue_shift,
            "brightness": sim.brightness,
            "seed": sim.seed if self._pending_seed is None else self._pending_seed,
            "paused": self.paused,
            "params_version": self.params_version,
            "target_fps": self.config.fps,
            "measured_fps": round(self.stats.measured_fps, 2),
            "stage_ms": {k: round(v, 3) for k, v in self.stats.stage_ms.items()},
            "frames_published": self.stats.frames_published,
            "frames_late": self.clock.late_frames,
            "sim_step": sim.sim_step,
            "health": {key: _plain(value) for key, value in sim.health().items()},
            "uptime_s": round(time.monotonic() - self.started_s, 3),
            "vram_bytes": self.backend.memory_in_use_bytes(),
            "ring": {"name": self.config.name, "path": str(self.writer.path)},
            "control_endpoint": self.endpoint.endpoint,
            "beat": self.beat.status(sim.showing_preset),
        }


def _plain(value: Any) -> Any:
    """A numpy/CuPy scalar as the Python number msgpack can encode; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value
