"""The Scope-agnostic core of the plugin: ring reading, control forwarding and pacing.

`FrameSource.poll(params)` is what one Scope `__call__` does, minus torch: forward the `ca_*`
parameters that changed (fire-and-forget over `ControlClient.send`), read the newest frames the
caller has not had yet from the shared-memory ring, and say what to show. It never raises and
never waits on the network: the ring read is a bounded memcpy, control sends are non-blocking,
and while the daemon is absent, frozen or incompatible the ring is re-probed only every
`attach_retry_s` and a placeholder card is offered every `placeholder_period_s`, with one log
line naming the ring and the command that starts the daemon. When the daemon comes back (a new
ring epoch) the last values Scope asked for are sent to it again. Tests drive this class with a
`RingWriter` and a fake control endpoint; the Scope classes are a thin layer over it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ca_scope_client.control_link import ControlLink
from ca_scope_client.placeholder import placeholder_frame
from ca_server.wire.control import ControlClient
from ca_server.wire.errors import WireError
from ca_server.wire.paths import default_control_endpoint, ring_path, validate_ring_name
from ca_server.wire.ring import RingReader

logger = logging.getLogger("ca_scope_client")

ATTACH_RETRY_S = 0.5
PLACEHOLDER_PERIOD_S = 0.5
PLACEHOLDER_FPS = 1.0 / PLACEHOLDER_PERIOD_S
STALE_AFTER_S = 2.0
LIVE_STATES = frozenset({"LIVE", "PAUSED"})
# A daemon in these states has its ring up: learn its size and talk to its control endpoint.
ATTACHED_STATES = LIVE_STATES | {"STARTING"}

BufferFactory = Callable[[int, int, int], np.ndarray]


@dataclass(frozen=True)
class FrameBatch:
    """What one poll has to show.

    `pixels`: (n, H, W, 3) uint8 RGB in [0, 255], host memory, oldest first; it may be a view
    of a buffer the next poll overwrites. `frame_ids` are the daemon's ids (empty for a
    placeholder); `fps` the rate to play them at (None when unknown).
    """

    pixels: np.ndarray
    frame_ids: tuple[int, ...]
    fps: float | None
    placeholder: bool


def _status_name(status: Any) -> str:
    return str(getattr(status, "name", status)).upper()


class _Handles:
    """The OS resources a FrameSource holds, kept apart so a finalizer can close them without
    keeping the FrameSource alive."""

    def __init__(self) -> None:
        self.reader: Any = None
        self.client: Any = None
        self.lock = threading.Lock()

    def close_client(self) -> None:
        with self.lock:
            client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                logger.debug("control client close failed: %s", exc)

    def close(self) -> None:
        self.close_client()
        with self.lock:
            reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception as exc:
                logger.debug("ring reader close failed: %s", exc)


class FrameSource:
    """Newest unseen frames from ring `ring_name`, with parameter forwarding and pacing.

    `frames_per_call` bounds n in each batch. `control_endpoint` overrides the endpoint the
    ring header advertises ("" = the header's, else the default for the name).
    `buffer_factory(frames, height, width)` supplies the (frames, H, W, 3) uint8 buffer reads
    land in (e.g. pinned memory); None means every batch gets fresh memory. `placeholder_size`
    is (height, width) of the placeholder until a ring's own size is known (then the last ring
    seen decides). `control_rate_hz` caps the control messages sent per second. One thread
    uses a FrameSource (ZeroMQ sockets are single-threaded); `close` may come from any thread.
    """

    def __init__(
        self,
        ring_name: str,
        *,
        frames_per_call: int = 4,
        control_endpoint: str = "",
        forward_control: bool = True,
        buffer_factory: BufferFactory | None = None,
        placeholder_size: tuple[int, int] = (512, 512),
        attach_retry_s: float = ATTACH_RETRY_S,
        placeholder_period_s: float = PLACEHOLDER_PERIOD_S,
        stale_after_s: float = STALE_AFTER_S,
        control_rate_hz: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ring_name = validate_ring_name(ring_name)
        if isinstance(frames_per_call, bool) or not isinstance(frames_per_call, int):
            raise ValueError(f"frames_per_call must be an integer >= 1, got {frames_per_call!r}")
        if frames_per_call < 1:
            raise ValueError(f"frames_per_call must be >= 1, got {frames_per_call}")
        self.frames_per_call = frames_per_call
        self._endpoint_override = control_endpoint.strip()
        self._forward_control = forward_control
        self._buffer_factory = buffer_factory
        self._buffer: np.ndarray | None = None
        self._placeholder_hw = placeholder_size
        self._attach_retry_s = attach_retry_s
        self._placeholder_period_s = placeholder_period_s
        self._clock = clock
        rate = {} if control_rate_hz is None else {"rate_hz": control_rate_hz}
        self._link = ControlLink(self._warn_once, **rate)
        self._handles = _Handles()
        self._handles.reader = RingReader(self.ring_name, stale_after_s=stale_after_s)
        self._finalizer = weakref.finalize(self, _Handles.close, self._handles)
        self._status = "UNKNOWN"
        self._message = ""
        self._epoch: int | None = None
        self._last_frame_id = -1
        self._fps: float | None = None
        self._geometry: tuple[int, int] | None = None
        self._next_probe_s = float("-inf")
        self._next_placeholder_s = float("-inf")
        self._reported: set[str] = set()
        self._warned = False  # a warning was logged since frames last flowed
        self.frames_returned = 0
        self.placeholders_returned = 0

    # -- public -------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The ring's last seen state: LIVE, PAUSED, STARTING, ABSENT, STALE, CLOSED,
        INCOMPATIBLE or UNKNOWN (before the first read)."""
        return self._status

    @property
    def live(self) -> bool:
        return self._status in LIVE_STATES

    @property
    def fps(self) -> float | None:
        """The daemon's nominal frame rate (None until attached, or for a free-running ring)."""
        return self._fps

    @property
    def ops_sent(self) -> collections.Counter[str]:
        """Control ops handed to the socket, by op name."""
        return self._link.ops_sent

    @property
    def ops_refused(self) -> collections.Counter[str]:
        """Control ops the daemon answered with an error, by op name."""
        return self._link.ops_refused

    def start_session(self) -> None:
        """A new Scope session begins: forward its parameters, not what the last one sent."""
        self._link.forwarder.start_session()

    def poll(self, params: Mapping[str, Any] | None = None) -> FrameBatch | None:
        """One call's worth of work: forward changed params, read new frames, pace.

        Returns the newest ≤ `frames_per_call` frames not returned before (oldest first), a
        placeholder batch at `1 / placeholder_period_s` while the daemon is not live, or None
        when there is nothing new to show. Never raises for anything the daemon does.
        """
        now = self._clock()
        if params:
            self._link.observe(params)
        batch = None
        if self.live or self._status == "STARTING" or now >= self._next_probe_s:
            batch = self._read(now)
        if self._forward_control:
            self._exchange_control(now)
        if batch is not None:
            return batch
        if not self.live and now >= self._next_placeholder_s:
            self._next_placeholder_s = now + self._placeholder_period_s
            return self._placeholder()
        return None

    def close(self) -> None:
        """Release the ring mapping and the control socket; idempotent."""
        self._finalizer()

    # -- ring -----------------------------------------------------------------------------------

    def _read(self, now: float) -> FrameBatch | None:
        reader = self._handles.reader
        if reader is None:
            return None
        result = reader.read_new(self.frames_per_call, out=self._buffer)
        status = _status_name(result.status)
        was_live = self.live
        self._status, self._message = status, result.message or ""
        if status in ATTACHED_STATES or (status == "STALE" and self._epoch is None):
            epoch = result.meta[-1].epoch if result.meta else reader.epoch
            if epoch is not None and epoch != self._epoch:
                self._on_attach(epoch)
        if status not in LIVE_STATES:
            self._next_probe_s = now + self._attach_retry_s
            if was_live or status not in self._reported:
                self._report_waiting()
            self._link.forwarder.drop_reseeds()
            return None
        if not was_live:
            self._reported.clear()
            self._report_recovered()
        meta = result.meta
        keep = [i for i, m in enumerate(meta) if m.frame_id > self._last_frame_id]
        if not keep:
            return None
        pixels = result.pixels if len(keep) == len(meta) else result.pixels[keep]
        ids = tuple(meta[i].frame_id for i in keep)
        self._last_frame_id = ids[-1]
        self.frames_returned += len(ids)
        return FrameBatch(pixels=pixels, frame_ids=ids, fps=self._fps, placeholder=False)

    def _on_attach(self, epoch: int) -> None:
        """A new daemon (or the first one): learn its geometry and rate, re-send our values."""
        self._epoch = epoch
        self._last_frame_id = -1
        self._link.new_daemon()
        self._handles.close_client()  # the next exchange connects to the new daemon
        header = self._safe_header() or {}
        width, height = int(header.get("width", 0)), int(header.get("height", 0))
        fps = float(header.get("nominal_fps", 0.0))
        self._fps = fps if fps > 0 else None
        if width > 0 and height > 0:
            self._geometry = (height, width)
            self._placeholder_hw = (height, width)  # the size the daemon serves
            if self._buffer_factory is not None:
                self._buffer = self._buffer_factory(self.frames_per_call, height, width)

    def _safe_header(self) -> dict[str, Any] | None:
        reader = self._handles.reader
        try:
            return reader.header() if reader is not None else None
        except Exception as exc:  # a header torn by a restarting daemon: try next epoch
            logger.debug("ring header unreadable: %s", exc)
            return None

    # -- control --------------------------------------------------------------------------------

    def _control_endpoint(self, header: Mapping[str, Any] | None) -> str:
        if self._endpoint_override:
            return self._endpoint_override
        advertised = (header or {}).get("control_endpoint") or ""
        if advertised:
            return str(advertised)
        try:
            return default_control_endpoint(self.ring_name)
        except WireError as exc:
            self._warn_once(f"no control endpoint for ring {self.ring_name!r}: {exc}")
            return ""

    def _exchange_control(self, now: float) -> None:
        """Send pending ops and read replies; both non-blocking, and only to a daemon whose
        ring is up (a starting daemon takes them as soon as its endpoint is bound)."""
        if self._status not in ATTACHED_STATES:
            return
        client = self._handles.client
        if client is None:
            endpoint = self._control_endpoint(self._safe_header())
            if not endpoint:
                return
            try:
                client = ControlClient(endpoint, timeout_s=1.0, retries=0)
            except (WireError, ValueError) as exc:
                self._warn_once(f"cannot open control endpoint {endpoint}: {exc}")
                return
            with self._handles.lock:
                self._handles.client = client
        self._link.exchange(client, now)

    # -- reporting ------------------------------------------------------------------------------

    def _problem_and_fix(self) -> tuple[str, str]:
        name = self.ring_name
        start = f"ca-server serve --name {name}"
        if self._status == "STARTING":
            return f"ca-server on ring '{name}' is starting…", "frames appear when it is ready"
        if self._status == "STALE":
            return f"ca-server ring '{name}' is not updating", f"restart the daemon: {start}"
        if self._status == "CLOSED":
            return f"ca-server on ring '{name}' has stopped", f"start it again: {start}"
        if self._status == "INCOMPATIBLE":
            return (
                f"ca-server ring '{name}' has a layout this plugin cannot read",
                "use the same ca-server version for the daemon and the plugin",
            )
        return f"no ca-server daemon on ring '{name}'", f"start it with: {start}"

    def _report_waiting(self) -> None:
        self._reported.add(self._status)
        problem, fix = self._problem_and_fix()
        # The reader's own message adds the pid / heartbeat age for a stale or closed ring;
        # for an absent one it would repeat what the line already says.
        detail = f" ({self._message})" if self._message and self._status != "ABSENT" else ""
        line = "%s%s; %s; showing a placeholder until frames arrive [ring file %s]"
        args = (problem, detail, fix, ring_path(self.ring_name))
        if self._status == "STARTING":  # a normal start is news, not a problem
            logger.info(line, *args)
            return
        self._warned = True
        logger.warning(line, *args)

    def _report_recovered(self) -> None:
        """Frames flow again: say so, at WARNING if the user was last told of a problem."""
        height, width = self._geometry or (0, 0)
        rate = f"{self._fps:g} fps" if self._fps else "free-running"
        endpoint = self._control_endpoint(self._safe_header()) or "unavailable"
        level = logging.WARNING if self._warned else logging.INFO
        self._warned = False
        logger.log(
            level,
            "ca-server ring %r attached: %dx%d at %s, control %s; frames are flowing",
            self.ring_name,
            width,
            height,
            rate,
            endpoint,
        )

    def _warn_once(self, line: str) -> None:
        if line not in self._reported:
            self._reported.add(line)
            logger.warning("%s", line)

    def _placeholder(self) -> FrameBatch:
        problem, fix = self._problem_and_fix()
        height, width = self._placeholder_hw
        pixels = placeholder_frame(height, width, problem, fix)
        self.placeholders_returned += 1
        return FrameBatch(pixels=pixels, frame_ids=(), fps=PLACEHOLDER_FPS, placeholder=True)
