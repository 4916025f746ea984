"""The beat clock and the pulse it drives, in simulated time (no wall clock anywhere).

The lock test renders 60 s of real frames (numpy Simulation) at 30 fps against a synthetic
120 bpm clock that changes to 140 bpm halfway, fed to the daemon's `BeatControl` the way the
Scope plugin feeds it (a timestamped lock each second and one at once when the tempo changes),
and measures the pulse from the frames alone: the beat frequency fitted to the frames' mean
brightness, and its phase against the clock's, window by window.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from ca_server.beat_clock import BeatClock
from ca_server.beat_control import BeatControl
from ca_server.beat_pulse import NO_PULSE, pulse_for
from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

FPS = 30.0
SIDE = 96


def test_set_tempo_keeps_the_position_continuous_and_zero_stops_it() -> None:
    clock = BeatClock()
    clock.set_tempo(120, 10.0)
    assert clock.beat_at(10.0) == 0.0 and clock.beat_at(11.0) == pytest.approx(2.0)
    clock.set_tempo(60, 11.0)
    assert clock.beat_at(11.0) == pytest.approx(2.0) and clock.beat_at(12.0) == pytest.approx(3.0)
    clock.set_tempo(0, 12.0)
    assert not clock.state(12.5).running and pulse_for(clock.state(12.5), 1.0) is NO_PULSE


def test_a_small_lock_error_is_slewed_in_and_a_large_one_taken_at_once() -> None:
    clock = BeatClock(correction_s=0.5)
    clock.lock(120, 100.0, 0.0, source="scope")  # a new source: taken as it is
    assert clock.beat_at(0.0) == 100.0
    error = clock.lock(120, 102.1, 1.0, source="scope")  # we say 102.0 at t=1
    assert error == pytest.approx(-0.1)
    assert clock.beat_at(1.0) == pytest.approx(102.0)  # no jump
    assert clock.beat_at(1.25) == pytest.approx(102.5 + 0.05)  # half the correction in
    assert clock.beat_at(2.0) == pytest.approx(104.1)  # all of it
    positions = [clock.beat_at(1.0 + i / 300) for i in range(300)]
    assert all(b > a for a, b in itertools.pairwise(positions))  # never backwards
    clock.lock(120, 106.6, 3.0, source="scope")  # 0.5 beat off: a jump
    assert clock.beat_at(3.0) == pytest.approx(106.6)


def test_lock_errors_are_taken_modulo_a_bar() -> None:
    clock = BeatClock()
    clock.lock(120, 4.0, 0.0, source="link", beats_per_bar=4)
    assert clock.lock(120, 10.02, 1.0, source="link") == pytest.approx(-0.02)  # 6 = 10 - a bar


def test_tap_tempo() -> None:
    clock = BeatClock()
    assert clock.tap(5.0) is None  # one tap, no tempo yet
    assert clock.tap(5.5) == pytest.approx(120.0)
    assert clock.tap(6.0) == pytest.approx(120.0)
    assert clock.state(6.0).phase == pytest.approx(0.0)  # the tap is on the beat
    assert clock.tap(6.4) == pytest.approx(60 / ((6.4 - 5.0) / 3))
    clock.tap(20.0)  # after a pause: a new sequence whose first tap moves the beat only
    assert clock.state(20.0).phase == pytest.approx(0.0, abs=1e-9)


def synthetic_beat(t_s: float) -> tuple[float, float]:
    """The music: 120 bpm until 30 s, then 140 bpm, beat position continuous; (bpm, beat)."""
    if t_s < 30.0:
        return 120.0, 0.37 + t_s * 2.0
    return 140.0, 0.37 + 60.0 + (t_s - 30.0) * 140.0 / 60.0


def fitted_beat_frequency(t_s: np.ndarray, signal: np.ndarray, guess_hz: float) -> float:
    """The frequency near `guess_hz` (±15%) where `signal` has the most energy."""
    candidates = np.linspace(0.85 * guess_hz, 1.15 * guess_hz, 601)
    power = [abs(np.sum(signal * np.exp(-2j * np.pi * f * t_s))) for f in candidates]
    return float(candidates[int(np.argmax(power))])


def phase_lag_s(t_s: np.ndarray, signal: np.ndarray, reference: np.ndarray, f_hz: float) -> float:
    """How far `signal`'s component at `f_hz` lags `reference`'s, in seconds, (−½, ½] period."""
    basis = np.exp(-2j * np.pi * f_hz * t_s)
    lag = np.angle(np.sum(reference * basis) / np.sum(signal * basis))
    return float(lag / (2 * np.pi * f_hz))


@pytest.mark.timeout(900)
def test_the_pulse_in_the_frames_is_locked_to_the_clock_within_a_frame() -> None:
    sim = Simulation(numpy_backend(fft_workers=1), width=SIDE, height=SIDE, preset="amoeba")
    now = [0.0]
    beat = BeatControl(now=lambda: now[0])
    frame = np.empty((SIDE, SIDE, 3), np.uint8)
    count = int(60 * FPS)
    times, means, truth = np.arange(count) / FPS, np.empty(count), np.empty(count)
    last_lock_s, last_bpm = -1e9, 0.0
    for index, t_s in enumerate(times):
        now[0] = t_s
        bpm, position = synthetic_beat(t_s)
        if bpm != last_bpm or t_s - last_lock_s >= 1.0:  # as the plugin forwards Scope's beat
            beat.lock(bpm, position, t_s, "scope")
            last_lock_s, last_bpm = t_s, bpm
        sim.pulse = beat.pulse_at(t_s, sim.showing_preset)
        sim.next_frame(host_out=frame)
        means[index] = frame.mean()
        truth[index] = position
    detrended = means - np.convolve(means, np.ones(15) / 15, mode="same")  # drop the organism's
    # slow drift (15 frames: one beat at 120 bpm); the edges of the convolution are left out below
    reference_pulse = np.exp(-(truth % 1.0) / 0.18)  # the flash shape, at the true beat

    for start_s, bpm in ((0.0, 120.0), (30.0, 140.0)):
        half = (times >= start_s + 0.5) & (times < start_s + 29.5)
        fitted = fitted_beat_frequency(times[half], detrended[half], bpm / 60)
        assert fitted == pytest.approx(bpm / 60, rel=0.01), f"fitted {fitted * 60:.1f} bpm"
    lags = []
    for start_s in np.arange(0.5, 59.5, 2.0):  # 2 s windows, one right after the change
        window = (times >= start_s) & (times < start_s + 2.0)
        f_hz = synthetic_beat(start_s + 1.0)[0] / 60
        lags.append(phase_lag_s(times[window], detrended[window], reference_pulse[window], f_hz))
    print("phase lag per 2 s window (ms):", " ".join(f"{1e3 * lag:.1f}" for lag in lags))
    assert max(abs(lag) for lag in lags) <= 1 / FPS, lags


def frames_with(control: BeatControl | None) -> list[bytes]:
    sim = Simulation(numpy_backend(fft_workers=1), width=48, height=48, preset="coral")
    out = np.empty((48, 48, 3), np.uint8)
    frames = []
    for index in range(20):
        if control is not None:
            sim.pulse = control.pulse_at(index / FPS, sim.showing_preset)
        sim.next_frame(host_out=out)
        frames.append(out.tobytes())
    return frames


def test_no_tempo_or_no_amount_leaves_the_frames_byte_identical() -> None:
    no_tempo = BeatControl(now=lambda: 0.0)
    no_amount = BeatControl(now=lambda: 0.0)
    no_amount.set_tempo(120)
    no_amount.set_amount(0.0)
    with_beat = BeatControl(now=lambda: 0.0)
    with_beat.set_tempo(120)
    plain = frames_with(None)
    assert frames_with(no_tempo) == plain
    assert frames_with(no_amount) == plain
    assert frames_with(with_beat) != plain  # the comparison can fail


def test_the_pulse_flashes_on_every_beat_and_surges_on_the_bar() -> None:
    from ca_server.beat_clock import BeatState

    on_downbeat = pulse_for(BeatState(120, 8.0, 4, "ctl"), 1.0)
    on_beat_two = pulse_for(BeatState(120, 9.0, 4, "ctl"), 1.0)
    off_beat = pulse_for(BeatState(120, 9.5, 4, "ctl"), 1.0)
    assert on_downbeat.brightness == on_beat_two.brightness > 1.4 > 1.1 > off_beat.brightness
    assert on_downbeat.bloom > 2.0 and off_beat.bloom < 1.1
    assert on_downbeat.speed == pytest.approx(2.5) and on_beat_two.speed < 1.3
    assert pulse_for(BeatState(120, 8.0, 4, "ctl"), 0.5).brightness < on_downbeat.brightness


def test_the_bar_surge_speeds_the_organism_up() -> None:
    from ca_server.beat_pulse import Pulse

    steps = []
    for surge in (1.0, 2.0):
        sim = Simulation(numpy_backend(fft_workers=1), width=48, height=48, preset="coral")
        sim.pulse = Pulse(speed=surge)
        steps.append(sum(sim.tick() for _ in range(10)))
    assert steps[1] == 2 * steps[0]


def test_a_preset_file_may_set_its_own_beat_amount() -> None:
    from ca_server import presets
    from ca_server.beat_pulse import preset_beat_amount
    from ca_server.engines import ENGINE_CLASSES
    from ca_server.presets import PresetFileError, load_preset, parse_preset

    coral = load_preset("coral")
    assert coral.beat is None and preset_beat_amount(coral) == ENGINE_CLASSES["lenia"].beat_amount
    text = (Path(presets.__file__).parent / "data" / "coral.toml").read_text()
    own = parse_preset(text.replace("[preset]\n", "[preset]\nbeat = 0.9\n", 1), "coral.toml")
    assert preset_beat_amount(own) == 0.9
    with pytest.raises(PresetFileError, match=r"preset\.beat"):
        parse_preset(text.replace("[preset]\n", "[preset]\nbeat = 3\n", 1), "coral.toml")
