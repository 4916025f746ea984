"""A live set's preset switching: does every preset reach the screen, how soon, with what gaps?

`python bench/bench_switching.py [--size 512] [--interval-s 5] [--fps 30] [--compute]`
The daemon's loop in one process (the Simulation with its real renderer and flow, `next_frame`
into a host frame, `ca_server.server.FrameClock` at `--fps`), asking for every preset in turn,
one every `--interval-s` seconds, starting from the last so that each request is a change. Per
preset: when it reached the screen (its crossfade began) after the request, or never (a newer
request that waited with it won); the longest gap between two frames while it was pending, in ms
and in frame periods. With `--compute`, each preset's warm-up is also timed alone, back to back
(its compute time, C), and the table gives landing time / C (issue 25's goal: at most 2).
Markdown on stdout.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from ca_server.presets import load_preset, preset_names
from ca_server.server import FrameClock
from ca_server.simulation import Simulation
from ca_server.warmup import WarmUp
from ca_server.xp import numpy_backend


def warmup_compute_s(sim: Simulation, name: str) -> float:
    """Seconds one warm-up of `name` takes run back to back (no frames in between)."""
    warm = WarmUp(sim.change.factory, load_preset(name), seed=7)
    started = time.perf_counter()
    warm.advance(math.inf, None)
    return time.perf_counter() - started


def run_set(size: int, interval_s: float, fps: float) -> list[dict]:
    names = preset_names()
    sim = Simulation(numpy_backend(), width=size, height=size, preset=names[-1], seed=0)
    host_frame = np.empty((size, size, 3), np.uint8)
    clock = FrameClock(fps)
    rows: list[dict] = []
    pending: list[dict] = []  # asked for, neither on screen yet nor passed over
    started = last_frame = time.monotonic()
    while len(rows) < len(names) or pending:
        now = time.monotonic()
        if len(rows) < len(names) and now - started >= len(rows) * interval_s:
            name = names[len(rows)]
            sim.set_preset(name)
            rows.append({"preset": name, "asked_s": now - started, "landed_s": None, "gap_ms": 0})
            pending.append(rows[-1])
        sim.next_frame(host_out=host_frame)
        now = time.monotonic()
        for row in pending:
            row["gap_ms"] = max(row["gap_ms"], (now - last_frame) * 1e3)
        on_screen = sim.arriving or sim.showing
        landed = next((i for i, row in enumerate(pending) if row["preset"] == on_screen), None)
        if landed is not None:  # requests before it were passed over: never shown
            pending[landed]["landed_s"] = now - started - pending[landed]["asked_s"]
            del pending[: landed + 1]
        health = sim.health()
        if len(rows) == len(names) and not (health["warming"] or health["crossfading"]):
            pending.clear()  # idle with nothing to ask: the rest were passed over
        last_frame = now
        time.sleep(clock.advance())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--compute", action="store_true", help="also time each warm-up alone")
    args = parser.parse_args()
    rows = run_set(args.size, args.interval_s, args.fps)
    if args.compute:
        sim = Simulation(numpy_backend(), width=args.size, height=args.size, preset="coral")
        for row in rows:
            row["compute_s"] = warmup_compute_s(sim, row["preset"])
    period_ms = 1e3 / args.fps
    print(f"size {args.size}², a change every {args.interval_s:g} s, {args.fps:g} fps\n")
    print("| preset | reached the screen after s | compute s | ratio | longest gap ms (periods) |")
    print("|---|---|---|---|---|")
    for row in rows:
        landed = row["landed_s"]
        compute = row.get("compute_s")
        ratio = f"{landed / compute:.2f}" if landed is not None and compute else "-"
        print(
            f"| {row['preset']} | {'never' if landed is None else f'{landed:.2f}'} | "
            f"{'-' if compute is None else f'{compute:.2f}'} | {ratio} | "
            f"{row['gap_ms']:.0f} ({row['gap_ms'] / period_ms:.1f}) |"
        )
    reached = sum(row["landed_s"] is not None for row in rows)
    worst = max(row["gap_ms"] for row in rows)
    print(f"\n{reached}/{len(rows)} presets reached the screen; longest gap {worst:.0f} ms")


if __name__ == "__main__":
    main()
