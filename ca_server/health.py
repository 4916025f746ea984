"""World health: cheap per-frame statistics, the actions that keep a world alive, LFO breathing.

`HealthMonitor.queue_measure` reads a decimated view (about 128 px on the short side) of the world
into four scalars: mass (mean), alive (fraction > 0.01), peak (max) and activity (mean absolute
change per engine step); on the GPU as two fused launches (HEALTH_PARTIALS, HEALTH_TOTALS:
`HealthStatisticsKernel`) instead of nine array operations (`HealthStatisticsPasses`), the second
writing the scalars straight into mapped page-locked host memory. Nothing waits for them:
`read_measurement` takes them after the device has finished the frame (the frame copy's wait), so
the loop keeps one device-to-host copy and one wait per frame.
`measure` does both at once, with its own wait (warm-up, off screen). `decide` turns them into at
most one action per frame, following the prototype's coverage management (docs/prototype.md) with
the gaps it left closed: a world that stays dead after cluster drops is fully reseeded; an overfull
world is eroded, harder for MNCA (whose weak erosion let it fill the frame), and reseeded if that
fails; a frozen world (activity below a floor for seconds) is perturbed; a non-finite world is
reseeded. `failing` is the on-screen test, checked every frame without cooldown: dead, invisible
(peak below what the renderer shows), non-finite, or collapsed to a tenth of the mass it had when it
went on screen (`calibrate`); the Simulation answers it by holding the picture and regrowing.
`Breathing` turns the engine's LFO specs into live parameter values; its phase advances per engine
step at a nominal 30 steps/s, so it is deterministic and independent of wall-clock time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from ca_server.engines import ENGINE_CLASSES
from ca_server.engines.base import Breathing
from ca_server.fused import KernelSource
from ca_server.xp import Backend

NOMINAL_STEPS_PER_SECOND = 30.0
ALIVE_THRESHOLD = 0.01
HEALTH_VIEW_PX = 128
# Display density (after the renderer's floor and gain) below which a frame reads as black: a
# peak of 0.1 renders at about 27/255 with the default palette.
VISIBLE_DISPLAY_PEAK = 0.1
# A world whose mass fell below this fraction of its on-screen reference is collapsing; regrowing
# it now, while it is still visible, keeps the crossfade away from black.
COLLAPSE_FRACTION = 0.1
# Cluster nucleation fires below min(policy.sparse_alive, this x the reference coverage), so a
# thin-by-design preset (coral, ~6% alive) is not pelted with seeds that break its pattern.
SPARSE_FRACTION_OF_REFERENCE = 0.3
# Partial sums the statistics kernel splits the view into (one GPU block; no atomics, so the
# result does not depend on thread timing).
HEALTH_PARTIAL_SLOTS = 256

HEALTH_PARTIALS = KernelSource(
    "health_partials",
    r"""
// Slot s sums view cells s, s + slots, ...: value, alive, |change| and max, into partials[4s..];
// it also stores each cell as the previous view for the next frame's change.
extern "C" __global__ void health_partials(
    float* __restrict__ partials, float* __restrict__ previous, const float* __restrict__ world,
    const int view_height, const int view_width, const int stride, const int world_width,
    const float alive_threshold, const long long n) {
    const long long cells = (long long)view_height * view_width;
    CA_FOR_EACH(slot, n) {
        float mass = 0.0f, alive = 0.0f, change = 0.0f, peak = -3.4028235e38f;
        for (long long cell = slot; cell < cells; cell += n) {
            const long long row = cell / view_width, column = cell % view_width;
            const float value = world[row * stride * world_width + column * stride];
            mass += value;
            alive += value > alive_threshold ? 1.0f : 0.0f;
            change += fabsf(value - previous[cell]);
            peak = value > peak || value != value ? value : peak;  // NaN wins, as in numpy
            previous[cell] = value;
        }
        partials[4 * slot] = mass;
        partials[4 * slot + 1] = alive;
        partials[4 * slot + 2] = change;
        partials[4 * slot + 3] = peak;
    }
}
""",
)
HEALTH_TOTALS = KernelSource(
    "health_totals",
    r"""
// One thread: stats = (mean, alive fraction, mean |change|, max) from the partial sums.
extern "C" __global__ void health_totals(
    float* __restrict__ stats, const float* __restrict__ partials, const int slots,
    const float inverse_cells, const long long n) {
    CA_FOR_EACH(unused, n) {
        float mass = 0.0f, alive = 0.0f, change = 0.0f, peak = -3.4028235e38f;
        for (int slot = 0; slot < slots; ++slot) {
            mass += partials[4 * slot];
            alive += partials[4 * slot + 1];
            change += partials[4 * slot + 2];
            const float slot_peak = partials[4 * slot + 3];
            peak = slot_peak > peak || slot_peak != slot_peak ? slot_peak : peak;
        }
        stats[0] = mass * inverse_cells;
        stats[1] = alive * inverse_cells;
        stats[2] = change * inverse_cells;
        stats[3] = peak;
    }
}
""",
)


class Action(Enum):
    NONE = "none"
    CLUSTER = "cluster"  # drop one cluster of small seeds near the centre
    REVIVE = "revive"  # drop eight clusters (the prototype's answer to death)
    RESEED = "reseed"  # full reseed with the preset's recipe
    ERODE = "erode"  # containment again plus a global fade
    PERTURB = "perturb"  # erase a disc and drop a cluster


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds for one engine family; frame counts assume ~30 frames per second.

    The defaults; each engine class states where it differs (`Engine.health_overrides`).
    """

    dead_mass: float = 0.002
    sparse_alive: float = 0.05
    crowded_alive: float = 0.85
    erode_factor: float = 0.97
    erode_containment_passes: int = 1
    frozen_activity: float = 2e-4  # mean |change| per step below this counts as frozen
    frozen_frames: int = 150
    crowded_frames_before_reseed: int = 300
    revives_before_reseed: int = 3
    cooldown_frames: int = 30


def policy_for(engine: str, side_px: int = 0) -> HealthPolicy:
    """The health policy for engine `engine` on a grid whose short side is `side_px`: the
    defaults above with the engine class's `health_bands`."""
    return HealthPolicy(**ENGINE_CLASSES[engine].health_bands(side_px))


@dataclass
class HealthCounters:
    reseeds: int = 0
    revives: int = 0
    clusters: int = 0
    erosions: int = 0
    perturbs: int = 0


class HealthMonitor:
    """Per-frame statistics of one world and the action they call for."""

    def __init__(
        self,
        backend: Backend,
        height: int,
        width: int,
        policy: HealthPolicy,
        visible_peak: float = VISIBLE_DISPLAY_PEAK,
    ):
        self.backend, self.policy = backend, policy
        self.visible_peak = visible_peak
        self.stride = max(1, min(height, width) // HEALTH_VIEW_PX)
        view_shape = (len(range(0, height, self.stride)), len(range(0, width, self.stride)))
        self._previous_view = backend.xp.zeros(view_shape, backend.xp.float32)
        # (mass, alive, mean |change|, peak): written on the device, read on the host.
        self._stats_host, stats = backend.host_mapped_array((4,), np.float32)
        statistics = backend.hot_pass(HealthStatisticsKernel, HealthStatisticsPasses)
        self._queue_statistics = statistics(backend, self._previous_view, stats, self.stride, width)
        self._has_previous = False
        self.counters = HealthCounters()
        self.mass = self.alive = self.activity = self.peak = 0.0
        self.reference_mass = self.reference_alive = 0.0  # 0 until `calibrate`
        self._frames_since_action = 10**9
        self._frozen_frames = 0
        self._crowded_frames = 0
        self._revives_in_a_row = 0
        self._frame = 0

    def reset(self) -> None:
        """Forget the previous view and streaks (after a reseed or a preset change)."""
        self._has_previous = False
        self._frozen_frames = self._crowded_frames = self._revives_in_a_row = 0

    def calibrate(self) -> None:
        """Take the latest measurement as this world's normal (when it goes on screen)."""
        self.reference_mass, self.reference_alive = self.mass, self.alive

    def measure(self, world: Any, steps: int) -> tuple[float, float, float]:
        """(mass, alive, activity) of `world` ((H, W) float32 on device), waiting for the device.

        Also updates `peak` (the view's maximum).
        """
        self.queue_measure(world)
        self.backend.synchronize()
        return self.read_measurement(steps)

    def queue_measure(self, world: Any) -> None:
        """Queue the statistics of `world` ((H, W) float32 on device); stores the view as the
        previous one. Read them with `read_measurement` once the device has finished."""
        self._queue_statistics(world)

    def read_measurement(self, steps: int) -> tuple[float, float, float]:
        """(mass, alive, activity) from the last `queue_measure`, over `steps` engine steps.

        Call it only after the device finished that work (`Backend.synchronize`); also updates
        `peak`.
        """
        mass, alive, change, peak = (float(value) for value in self._stats_host)
        self.peak = peak
        if self._has_previous and steps > 0:
            self.activity = change / steps
        elif not self._has_previous:
            self.activity = float("nan")  # unknown until two frames were seen
        self._has_previous = True
        self.mass, self.alive = mass, alive
        return mass, alive, self.activity

    @property
    def visible(self) -> bool:
        """True when the latest measurement would render as more than a black frame."""
        return self.peak >= self.visible_peak and self.mass >= self.policy.dead_mass

    def failing(self) -> bool:
        """Dead, invisible, non-finite or collapsed: the on-screen test (no cooldown applies)."""
        if not (math.isfinite(self.mass) and math.isfinite(self.peak)):
            return True
        collapsed = self.mass < COLLAPSE_FRACTION * self.reference_mass
        return collapsed or not self.visible

    def decide(self, steps: int) -> Action:
        """The action for this frame, given the latest `measure`; updates streaks and counters."""
        policy, counters = self.policy, self.counters
        self._frame += 1
        self._frames_since_action += 1
        if not math.isfinite(self.mass):
            return self._act(Action.RESEED)
        cooling = self._frames_since_action < policy.cooldown_frames
        if self.mass < policy.dead_mass:
            if cooling:
                return Action.NONE
            if self._revives_in_a_row >= policy.revives_before_reseed:
                self._revives_in_a_row = 0
                return self._act(Action.RESEED)
            self._revives_in_a_row += 1
            return self._act(Action.REVIVE)
        if self.alive > 0.05:
            self._revives_in_a_row = 0
        if self.alive > policy.crowded_alive:
            self._crowded_frames += 1
            if self._crowded_frames > policy.crowded_frames_before_reseed:
                self._crowded_frames = 0
                return self._act(Action.RESEED)
            if policy.erode_factor < 1.0:
                counters.erosions += 1
                return Action.ERODE
        else:
            self._crowded_frames = max(0, self._crowded_frames - 1)
        if steps > 0 and math.isfinite(self.activity):
            frozen = self.activity < policy.frozen_activity
            self._frozen_frames = self._frozen_frames + 1 if frozen else 0
            if self._frozen_frames > policy.frozen_frames and not cooling:
                self._frozen_frames = 0
                return self._act(Action.PERTURB)
        sparse_alive = policy.sparse_alive
        if self.reference_alive > 0:
            sparse_alive = min(sparse_alive, SPARSE_FRACTION_OF_REFERENCE * self.reference_alive)
        if self.alive < sparse_alive and not cooling:
            period = 15 if self.alive < 0.01 else 30
            if self._frame % period == 0:
                return self._act(Action.CLUSTER)
        return Action.NONE

    def _act(self, action: Action) -> Action:
        self._frames_since_action = 0
        counters = self.counters
        if action is Action.RESEED:
            counters.reseeds += 1
        elif action is Action.REVIVE:
            counters.revives += 1
        elif action is Action.CLUSTER:
            counters.clusters += 1
        elif action is Action.PERTURB:
            counters.perturbs += 1
        return action


class BreathingLFO:
    """Sinusoidal modulation of engine parameters; phases advance per engine step."""

    def __init__(self, specs: Sequence[Breathing], base: Mapping[str, float]):
        self.specs = tuple(specs)
        self.base = {spec.parameter: float(base[spec.parameter]) for spec in self.specs}
        self.phases = np.zeros(len(self.specs))

    def reset(self) -> None:
        self.phases[:] = 0.0

    def advance(self, steps: int) -> dict[str, float]:
        """Advance `steps` engine steps and return the modulated values by parameter name."""
        values = {}
        for index, spec in enumerate(self.specs):
            self.phases[index] += 2 * math.pi * spec.frequency_hz * steps / NOMINAL_STEPS_PER_SECOND
            value = self.base[spec.parameter] + spec.amplitude * math.sin(self.phases[index])
            values[spec.parameter] = max(spec.minimum, value)
        return values


class HealthStatisticsKernel:
    """The view's statistics as two launches: HEALTH_PARTIALS (one block of partial sums, which
    also stores the view as the previous one) and HEALTH_TOTALS (the scalars, into `stats`)."""

    def __init__(
        self, backend: Backend, previous_view: Any, stats: Any, stride: int, world_width: int
    ) -> None:
        self._previous_view, self._stats = previous_view, stats
        self._stride, self._world_width = stride, world_width
        self._partials_launch = backend.fused_kernel(HEALTH_PARTIALS)
        self._totals_launch = backend.fused_kernel(HEALTH_TOTALS)
        self._partials = backend.xp.empty(4 * HEALTH_PARTIAL_SLOTS, backend.xp.float32)

    def __call__(self, world: Any) -> None:
        """Queue (mass, alive, mean |change|, peak) of `world` ((H, W) float32, device) into
        `stats` ((4,) float32, device) and store its view as the previous one."""
        view_height, view_width = self._previous_view.shape
        self._partials_launch(
            HEALTH_PARTIAL_SLOTS,
            self._partials,
            self._previous_view,
            world,
            view_height,
            view_width,
            self._stride,
            self._world_width,
            ALIVE_THRESHOLD,
        )
        inverse_cells = 1.0 / (view_height * view_width)
        self._totals_launch(1, self._stats, self._partials, HEALTH_PARTIAL_SLOTS, inverse_cells)


class HealthStatisticsPasses:
    """The view's statistics as numpy reductions, with one view-sized scratch frame."""

    def __init__(
        self, backend: Backend, previous_view: Any, stats: Any, stride: int, world_width: int
    ) -> None:
        self._xp, self._stride = backend.xp, stride
        self._previous_view, self._stats = previous_view, stats
        self._difference = backend.xp.empty(previous_view.shape, backend.xp.float32)

    def __call__(self, world: Any) -> None:
        """As `HealthStatisticsKernel.__call__`."""
        xp, stats = self._xp, self._stats
        view = world[:: self._stride, :: self._stride]
        xp.subtract(view, self._previous_view, out=self._difference)
        xp.abs(self._difference, out=self._difference)
        stats[0] = view.mean()
        stats[1] = (view > ALIVE_THRESHOLD).mean(dtype=xp.float32)
        stats[2] = self._difference.mean()
        stats[3] = view.max()
        xp.copyto(self._previous_view, view)
