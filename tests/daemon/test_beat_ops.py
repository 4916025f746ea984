"""The beat through a real daemon: `ctl tempo`, `ctl tap`, `ctl beat`, a timestamped lock as the
Scope plugin sends it, and Ableton Link between the daemon and a second process on loopback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from daemon_process import DaemonProcess

from ca_server.wire.control import ControlClient
from ca_server.wire.paths import default_control_endpoint

pytestmark = pytest.mark.subprocess

BOUND_S = 60.0  # hang bound on a loaded 2-core box


def test_ctl_sets_the_tempo_taps_and_the_beat_amount(daemon: DaemonProcess) -> None:
    assert daemon.status()["beat"]["bpm"] == 0  # no tempo: no pulse, frames as before
    assert daemon.ctl("tempo", "128", "--beats-per-bar", "3").returncode == 0
    beat = daemon.status()["beat"]
    assert (beat["bpm"], beat["beats_per_bar"], beat["source"]) == (128, 3, "ctl")
    assert daemon.ctl("beat", "0.5").returncode == 0
    assert daemon.status()["beat"]["amount"] == 0.5
    refused = daemon.ctl("tempo", "10")
    assert refused.returncode == 65 and "20 to 400" in refused.stderr
    assert daemon.ctl("tap").returncode == 0
    assert daemon.status()["beat"]["source"] == "tap"
    assert "128 bpm from tap" in daemon.ctl("status").stdout
    assert daemon.ctl("tempo", "0").returncode == 0
    assert daemon.status()["beat"]["bpm"] == 0


def test_a_timestamped_lock_sets_the_phase_the_sender_saw(daemon: DaemonProcess) -> None:
    with ControlClient(default_control_endpoint(daemon.name), timeout_s=2.0) as client:
        sent_ns = time.monotonic_ns()
        client.call("beat_lock", bpm=120.0, beat=8.25, t_ns=sent_ns, source="scope")
        beat = client.call("status")["beat"]
    elapsed_beats = (time.monotonic_ns() - sent_ns) / 1e9 * 2.0
    assert beat["source"] == "scope" and beat["bpm"] == 120
    assert 8.25 <= beat["beat"] <= 8.25 + elapsed_beats + 0.01


LINK_PEER = textwrap.dedent(
    """
    import asyncio, sys
    from aalink import Link

    async def main():
        link = Link(float(sys.argv[1]))
        link.enabled = True
        for _ in range(int(float(sys.argv[2]) / 0.2)):
            print(f"tempo {link.tempo:.2f} peers {link.num_peers}", flush=True)
            await asyncio.sleep(0.2)

    asyncio.run(main())
    """
)


def test_link_between_the_daemon_and_another_process_on_loopback(daemon_factory) -> None:
    pytest.importorskip("aalink", reason="Ableton Link needs the `link` extra (aalink)")
    # The peer starts the session at 137 bpm; the daemon joins it and so takes its tempo.
    peer = subprocess.Popen(
        [sys.executable, "-c", LINK_PEER, "137", str(2 * BOUND_S)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # not a synchronisation: the peer must simply exist first
        daemon: DaemonProcess = daemon_factory()
        daemon.start("--link")
        deadline = time.monotonic() + BOUND_S
        beat = daemon.status()["beat"]
        while time.monotonic() < deadline and not beat["link"]["peers"]:
            time.sleep(0.5)
            beat = daemon.status()["beat"]
        if not beat["link"]["peers"]:
            pytest.skip("no Link peer seen on loopback: UDP multicast is not allowed here")
        while time.monotonic() < deadline and beat["bpm"] != pytest.approx(137, abs=0.01):
            time.sleep(0.2)
            beat = daemon.status()["beat"]
        assert beat["source"] == "link" and beat["bpm"] == pytest.approx(137, abs=0.01), beat

        assert daemon.ctl("tempo", "133").returncode == 0  # proposed to the whole session
        while time.monotonic() < deadline and beat["bpm"] != pytest.approx(133, abs=0.01):
            time.sleep(0.2)
            beat = daemon.status()["beat"]
        assert beat["source"] == "link" and beat["bpm"] == pytest.approx(133, abs=0.01), beat
        daemon.stop()
    finally:
        peer.terminate()
        output, _ = peer.communicate(timeout=10)
    assert "tempo 133.00 peers 1" in output  # the other process follows the daemon's tempo


def test_link_without_aalink_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from typer.testing import CliRunner

    from ca_server.cli import app

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "aalink" else real_find_spec(name, *a),
    )
    result = CliRunner().invoke(app, ["serve", "--backend", "numpy", "--link"])
    assert result.exit_code == 78
    assert "pip install 'ca-server[link]'" in result.output
