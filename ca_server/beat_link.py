"""Ableton Link for `serve --link`: join the session on the local network and follow its beat.

Uses the optional `aalink` package (`pip install 'ca-server[link]'`). A thread runs its own
asyncio loop (aalink needs one), reads Link's tempo and beat every `POLL_S` and locks the beat
clock with them at most every `LOCK_PERIOD_S`, or at once when the tempo changes, so the frame
loop never waits on the network. `ctl tempo` while following Link proposes the tempo to the whole
session, as any Link peer may. Link needs UDP multicast on the local network (a container
without it simply finds no peers and keeps its own tempo).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from ca_server.errors import CAServerError
from ca_server.exit_codes import ExitCode

log = logging.getLogger("ca_server.beat")

POLL_S = 0.02
LOCK_PERIOD_S = 0.5
LINK_START_BPM = 120.0


class LinkUnavailableError(CAServerError):
    """aalink is not installed: `serve --link` cannot start (a configuration error)."""

    exit_code = ExitCode.CONFIG


class LinkFollower:
    """Follows an Ableton Link session into a `BeatControl` (see the module docstring)."""

    def __init__(self, beat: Any, beats_per_bar: int = 4) -> None:
        try:
            import aalink  # noqa: F401
        except ImportError:
            raise LinkUnavailableError(
                "--link needs the aalink package: pip install 'ca-server[link]'"
            ) from None
        self.beat, self.beats_per_bar = beat, beats_per_bar
        self.peers = 0
        self._proposed: float | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ableton-link", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=5.0)

    def propose_tempo(self, bpm: float) -> None:
        self._proposed = float(bpm)

    def status(self) -> dict[str, Any]:
        return {"peers": self.peers}

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        from aalink import Link

        link = Link(LINK_START_BPM)
        link.quantum = self.beats_per_bar
        link.enabled = True
        self._ready.set()
        last_lock_s, last_tempo = -1e9, 0.0
        try:
            while not self._stopped.is_set():
                if self._proposed is not None:
                    link.tempo, self._proposed = self._proposed, None
                now = time.monotonic()
                tempo, beat = float(link.tempo), float(link.beat)
                self.peers = int(link.num_peers)
                if tempo != last_tempo or now - last_lock_s >= LOCK_PERIOD_S:
                    self.beat.lock(tempo, beat, now, "link", self.beats_per_bar)
                    last_lock_s, last_tempo = now, tempo
                await asyncio.sleep(POLL_S)
        finally:
            link.enabled = False
