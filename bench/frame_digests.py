"""Frame digests: proof that a refactor leaves the numpy frames byte-identical for a seed.

`python bench/frame_digests.py [--size 128] [--frames 60] [--record | --check]`
For each case (one preset per engine, each from seed 0; a preset change and a reseed mid-run) it
runs the Simulation on numpy with a fixed warm-up step count per tick (so the frame a change lands
on does not depend on the machine's load), hashes every frame, and prints one sha256 per case.
`--record` writes them to bench/frame_digests.json beside the numpy/scipy versions; `--check`
compares with that file and exits 1 on any difference. Digests depend on the numpy and scipy
builds (FFT and SIMD code paths), so compare only on the machine and versions that recorded them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import scipy

from ca_server.simulation import Simulation
from ca_server.xp import numpy_backend

RECORD = Path(__file__).with_name("frame_digests.json")

# name -> (preset at start, {frame index: action}); an action is ("preset", name) or ("reseed", s)
CASES: dict[str, tuple[str, dict[int, tuple[str, object]]]] = {
    "coral": ("coral", {}),
    "jellyfish": ("jellyfish", {}),
    "sl_gliders": ("sl_gliders", {}),
    "mnca_worm": ("mnca_worm", {}),
    "labyrinth": ("labyrinth", {}),
    "coral->labyrinth": ("coral", {5: ("preset", "labyrinth")}),
    "sl_pulse->mnca_hunt": ("sl_pulse", {3: ("preset", "mnca_hunt")}),
    "amoeba reseed": ("amoeba", {10: ("reseed", 42)}),
}


def case_digest(start: str, actions: dict, size: int, frames: int) -> str:
    """sha256 over `frames` frames, each (size, size, 3) uint8 from the numpy backend."""
    sim = Simulation(
        numpy_backend(fft_workers=1),
        width=size,
        height=size,
        preset=start,
        seed=0,
        warmup_steps_per_tick=64,
        crossfade_frames=10,
    )
    digest = hashlib.sha256()
    host = np.empty((size, size, 3), np.uint8)
    for index in range(frames):
        kind, value = actions.get(index, (None, None))
        if kind == "preset":
            sim.set_preset(str(value))
        elif kind == "reseed":
            sim.reseed(int(value))
        sim.next_frame(host_out=host)
        digest.update(host.tobytes())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=60)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--record", action="store_true", help=f"write {RECORD.name}")
    mode.add_argument("--check", action="store_true", help=f"compare with {RECORD.name}")
    args = parser.parse_args()
    versions = {"numpy": np.__version__, "scipy": scipy.__version__}
    key = f"{args.size}x{args.frames}"
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    expected = recorded.get(key, {}).get("digests", {}) if args.check else {}
    if args.check and recorded.get(key, {}).get("versions") != versions:
        print(
            f"{RECORD.name} was recorded with {recorded.get(key, {}).get('versions')}, "
            f"this is {versions}: digests are not comparable",
            file=sys.stderr,
        )
        return 2
    digests, mismatches = {}, 0
    print("| case | sha256 (first 16) | vs record |\n|---|---|---|")
    for name, (start, actions) in CASES.items():
        digests[name] = case_digest(start, actions, args.size, args.frames)
        verdict = ""
        if args.check:
            same = expected.get(name) == digests[name]
            mismatches += not same
            verdict = "same" if same else f"DIFFERENT (was {str(expected.get(name))[:16]})"
        print(f"| {name} | {digests[name][:16]} | {verdict} |")
    if args.record:
        recorded[key] = {"versions": versions, "digests": digests}
        RECORD.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
