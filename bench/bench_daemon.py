"""Benchmark the real daemon: achieved fps against the target and per-stage ms, per size and rate.

`python bench/bench_daemon.py [--backend numpy|cupy] [--sizes 512 1024] [--fps 30 2000]
[--preset coral] [--warmup-s 8] [--measure-s 6]`
For every (size, target fps) it starts `python -m ca_server.cli serve` as a subprocess with its
own ring name and CA_SERVER_RUNTIME_DIR in a temporary folder, waits `--warmup-s` seconds after
the daemon answers `ctl ping`, then reads `ctl --json status` twice, `--measure-s` apart, and
prints one Markdown row: the daemon's measured fps (its own 1 s window), the published-frame rate
over the measuring interval, frames late, and the stage EMAs (step, render, copy, publish) the
daemon reports. `--fps 2000` is the free-running mode (the config's upper limit): the loop never
waits, so the fps is the loop's capacity. The daemon is stopped with SIGTERM (SIGKILL after 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0


def ctl(name: str, env: dict[str, str], *args: str) -> dict[str, Any] | None:
    """One `ctl --json` call; the `result` object, or None when the daemon did not answer."""
    command = [sys.executable, "-m", "ca_server.cli", "ctl", "--name", name, "--json", *args]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    try:
        reply = json.loads(done.stdout)
    except json.JSONDecodeError:
        return None
    return reply.get("result") if reply.get("ok") else None


def run_daemon(
    backend: str, size: int, fps: float, preset: str, warmup_s: float, measure_s: float
) -> dict[str, Any]:
    """Start one daemon, measure it, stop it; returns the row's numbers."""
    with tempfile.TemporaryDirectory(prefix="ca-bench-") as runtime:
        env = {**os.environ, "CA_SERVER_RUNTIME_DIR": runtime}
        name = f"bench{os.getpid() % 100000}-{size}-{int(fps)}"
        log_path = Path(runtime) / "daemon.log"
        command = [
            sys.executable, "-m", "ca_server.cli", "serve", "--backend", backend,
            "--width", str(size), "--height", str(size), "--fps", str(fps),
            "--preset", preset, "--name", name, "--log-level", "warning",
        ]  # fmt: skip
        with log_path.open("w") as log:
            daemon = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while ctl(name, env, "ping") is None:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text()[-2000:]
                    raise SystemExit(f"daemon {size}px @ {fps} fps did not come up:\n{tail}")
                time.sleep(0.5)
            time.sleep(warmup_s)
            first = ctl(name, env, "status")
            time.sleep(measure_s)
            second = ctl(name, env, "status")
            if first is None or second is None:
                raise SystemExit(f"daemon {size}px @ {fps} fps stopped answering `ctl status`")
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    interval_s = second["uptime_s"] - first["uptime_s"]
    published = second["frames_published"] - first["frames_published"]
    return {
        "size": size,
        "target_fps": fps,
        "measured_fps": second["measured_fps"],
        "published_fps": published / interval_s if interval_s > 0 else 0.0,
        "late": second["frames_late"] - first["frames_late"],
        "stage_ms": second["stage_ms"],
        "backend": f"{second['backend']} ({second['device']})",
        "vram_mib": second["vram_bytes"] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--fps", type=float, nargs="+", default=[30.0, 2000.0])
    parser.add_argument("--preset", default="coral")
    parser.add_argument("--warmup-s", type=float, default=8.0)
    parser.add_argument("--measure-s", type=float, default=6.0)
    args = parser.parse_args()
    print(
        "| backend | size | target fps | measured fps | published fps | late | step ms "
        "| render ms | copy ms | publish ms | VRAM MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for fps in args.fps:
            row = run_daemon(args.backend, size, fps, args.preset, args.warmup_s, args.measure_s)
            stage = row["stage_ms"]
            print(
                f"| {row['backend']} | {size} | {fps:g} | {row['measured_fps']:.1f} | "
                f"{row['published_fps']:.1f} | {row['late']} | {stage['step']:.2f} | "
                f"{stage['render']:.2f} | {stage['copy']:.2f} | {stage['publish']:.2f} | "
                f"{row['vram_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
