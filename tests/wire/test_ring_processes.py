"""The ring across real processes: torn reads (with a naive reader proving the test can fail),
lapped and many readers, writer SIGKILL and restart, dead and closed writers, a reader exiting,
a second writer, and a too-small shared-memory mount."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from ca_server.wire.errors import RingInUseError
from ca_server.wire.paths import lock_path, ring_path
from ca_server.wire.ring import RingReader, RingStatus, RingWriter

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(90)]


def assert_clean(summary: dict) -> None:
    """A checking reader's summary: frames read, none torn, misattributed or out of order."""
    assert summary["frames"] > 0, summary
    bad = {k: summary[k] for k in ("torn", "wrong_id", "wrong_epoch", "noncontiguous")}
    assert bad == dict.fromkeys(bad, 0), summary


def read_until(reader: RingReader, wanted: RingStatus, timeout_s: float) -> list:
    """Poll `read_new` until the status is `wanted`; return every result seen."""
    results, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        results.append(reader.read_new(4))
        if results[-1].status is wanted:
            return results
        time.sleep(0.01)
    pytest.fail(f"status never became {wanted}: {results[-1].status} {results[-1].message}")


def read_until_frames(reader: RingReader, timeout_s: float) -> list:
    """Poll `read_new` until it returns at least one frame; return every result seen."""
    results, deadline = [], time.monotonic() + timeout_s
    while not results or not results[-1].meta:
        if time.monotonic() > deadline:
            pytest.fail(f"no frames within {timeout_s} s: {results[-1].message}")
        results.append(reader.read_new(4))
        time.sleep(0.01)
    return results


@pytest.mark.parametrize(("slots", "frames"), [(4, 2), (8, 4)])
def test_no_torn_frames_under_a_max_speed_writer(ring_env, spawn_worker, slots, frames) -> None:
    writer = spawn_worker(
        "writer",
        "torn",
        "--width",
        256,
        "--height",
        256,
        "--slots",
        slots,
        "--chunks",
        8,
        "--duration-s",
        60,
        env=ring_env.env,
    )
    writer.wait_event("ready")
    common = ("--frames", frames)
    checked = [
        spawn_worker("reader", "torn", *common, "--duration-s", 2.5, env=ring_env.env)
        for _ in range(2)
    ]
    # The same copies without the re-check: stops at its first torn frame, or fails after 20 s.
    naive = spawn_worker(
        "naive", "torn", *common, "--duration-s", 20, "--until-torn", env=ring_env.env
    )
    naive_summary = naive.finish()
    summaries = [reader.finish() for reader in checked]
    writer.proc.send_signal(signal.SIGTERM)
    assert writer.finish()["published"] > 1000
    assert naive_summary["torn"] > 0, "the naive reader never tore: the test cannot fail"
    for summary in summaries:
        assert_clean(summary)
        assert summary["dropped"] > 0  # the writer outran the reader, so it was lapped


def test_slow_reader_gets_correct_frames_and_counts_drops(ring_env, spawn_worker) -> None:
    writer = spawn_worker(
        "writer", "slow", "--fps", 240, "--slots", 8, "--duration-s", 60, env=ring_env.env
    )
    writer.wait_event("ready")
    reader = spawn_worker(
        "reader", "slow", "--frames", 4, "--sleep-s", 0.05, "--duration-s", 1.5, env=ring_env.env
    )
    summary = reader.finish()
    writer.proc.send_signal(signal.SIGTERM)
    writer.finish()
    assert_clean(summary)
    assert summary["dropped"] > 0
    assert summary["max_call_s"] < 1.0  # never blocks (a generous no-hang bound)


def test_eight_readers_at_once(ring_env, spawn_worker) -> None:
    writer = spawn_worker(
        "writer",
        "many",
        "--width",
        128,
        "--height",
        128,
        "--slots",
        8,
        "--duration-s",
        60,
        env=ring_env.env,
    )
    writer.wait_event("ready")
    readers = [
        spawn_worker("reader", "many", "--frames", 4, "--duration-s", 3, env=ring_env.env)
        for _ in range(8)
    ]
    summaries = [reader.finish() for reader in readers]
    writer.proc.send_signal(signal.SIGTERM)
    writer.finish()
    for summary in summaries:
        assert_clean(summary)


def test_reader_reattaches_after_writer_sigkill_and_restart(ring_env, spawn_worker) -> None:
    first = spawn_worker("writer", "phoenix", "--fps", 200, "--duration-s", 60, env=ring_env.env)
    old_epoch = first.wait_event("ready")["epoch"]
    reader = spawn_worker(
        "reader",
        "phoenix",
        "--frames",
        4,
        "--sleep-s",
        0.005,
        "--duration-s",
        3.5,
        env=ring_env.env,
    )
    reader.wait_event("ready")
    time.sleep(1.0)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    second = spawn_worker("writer", "phoenix", "--fps", 200, "--duration-s", 60, env=ring_env.env)
    ready = second.wait_event("ready")
    summary = reader.finish()
    second.proc.send_signal(signal.SIGTERM)
    second.finish()
    assert_clean(summary)
    epochs = summary["epochs"]
    assert [e["epoch"] for e in epochs] == [old_epoch, ready["epoch"]]
    assert ready["epoch"] != old_epoch
    assert epochs[1]["t_mono_ns"] - ready["t_mono_ns"] < 1_000_000_000  # re-attached within 1 s
    assert epochs[1]["ids"][0] < 200  # frame ids restarted with the new writer


def test_reader_polling_through_restarts_never_sees_a_half_made_ring(ring_env, spawn_worker):
    reader = spawn_worker("reader", "birth", "--duration-s", 4, env=ring_env.env)
    reader.wait_event("ready")
    epochs = set()
    for _ in range(4):
        writer = spawn_worker(
            "writer", "birth", "--fps", 200, "--duration-s", 0.3, env=ring_env.env
        )
        epochs.add(writer.wait_event("ready")["epoch"])
        assert writer.finish()["published"] > 0
    summary = reader.finish()
    statuses = {s["status"] for s in summary["statuses"]}
    assert statuses <= {"ABSENT", "LIVE", "CLOSED"}, summary["statuses"]
    assert {e["epoch"] for e in summary["epochs"]} <= epochs
    assert len(summary["epochs"]) >= 2
    assert_clean(summary)


def test_dead_writer_is_stale_and_its_last_frames_stay_readable(ring_env, spawn_worker) -> None:
    writer = spawn_worker("writer", "dead", "--fps", 100, "--duration-s", 60, env=ring_env.env)
    writer.wait_event("ready")
    reader = RingReader("dead", stale_after_s=1.0)
    seen = read_until_frames(reader, timeout_s=5)
    time.sleep(0.1)
    writer.proc.send_signal(signal.SIGKILL)
    writer.proc.wait(timeout=10)
    killed_at = time.monotonic()
    seen += read_until(reader, RingStatus.STALE, timeout_s=5)
    assert time.monotonic() - killed_at < 2.0  # within stale_after_s plus slack
    seen.append(reader.read_new(4))
    published = reader.header()["published"]
    returned = [m.frame_id for result in seen for m in result.meta]
    assert returned[-1] == published - 1  # the newest frame before the kill was delivered
    for result in seen:
        for frame, meta in zip(result.pixels, result.meta, strict=True):
            assert int(frame[-1, -1, -1]) == meta.frame_id % 256
    last = reader.read_new(4)
    assert last.status is RingStatus.STALE and last.meta == () and "gone" in last.message
    reader.close()


def test_graceful_stop_closes_and_removes_files(ring_env, spawn_worker) -> None:
    writer = spawn_worker("writer", "calm", "--fps", 100, "--duration-s", 60, env=ring_env.env)
    writer.wait_event("ready")
    reader = RingReader("calm")
    read_until_frames(reader, timeout_s=5)
    writer.proc.send_signal(signal.SIGTERM)
    assert writer.finish(timeout_s=5)["published"] > 0
    assert writer.proc.returncode == 0
    results = read_until(reader, RingStatus.CLOSED, timeout_s=3)
    assert "ca-server serve" in results[-1].message
    assert not ring_path("calm").exists() and not lock_path("calm").exists()
    reader.close()


def test_reader_process_exit_leaves_the_segment(ring_env, spawn_worker) -> None:
    with RingWriter("stay", 32, 32) as writer:
        writer.write(np.full((32, 32, 3), 9, np.uint8), sim_step=0, params_version=0)
        inode = writer.path.stat().st_ino
        for _ in range(2):
            summary = spawn_worker("attach-exit", "stay", env=ring_env.env).finish()
            assert summary["attached"] == writer.epoch and summary["frames"] == 1
        assert writer.path.stat().st_ino == inode
        writer.write(np.full((32, 32, 3), 10, np.uint8), sim_step=1, params_version=0)
        with RingReader("stay") as reader:
            assert [int(p[0, 0, 0]) for p in reader.read_new(2).pixels] == [9, 10]


def test_second_writer_in_another_process_is_refused(ring_env, spawn_worker) -> None:
    first = spawn_worker("writer", "taken", "--fps", 100, "--duration-s", 60, env=ring_env.env)
    pid = first.wait_event("ready")["pid"]
    with pytest.raises(RingInUseError, match=rf"'taken'.*live daemon \(pid {pid}"):
        RingWriter("taken", 64, 64)
    reader = RingReader("taken")
    before = read_until(reader, RingStatus.LIVE, timeout_s=5)[-1]
    after = read_until_frames(reader, timeout_s=5)[-1]  # the first writer keeps publishing
    assert after.status is RingStatus.LIVE and after.meta
    assert after.meta[0].epoch == reader.epoch and (not before.meta or after.meta[0].frame_id > 0)
    reader.close()
    first.proc.send_signal(signal.SIGTERM)
    first.finish()


def _small_tmpfs_prefix(folder) -> list[str]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    mount = 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@"'
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", mount, str(folder), "true"], capture_output=True, timeout=10
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here: {probe.stderr.decode().strip()}")
    return ["unshare", "-m", "sh", "-c", mount, str(folder)]


@pytest.mark.parametrize("skip_preflight", [False, True], ids=["preflight", "fallocate"])
def test_too_small_tmpfs_is_a_clean_error(ring_env, spawn_worker, tmp_path, skip_preflight):
    folder = tmp_path / "small-shm"
    folder.mkdir()
    prefix = _small_tmpfs_prefix(folder)
    env = {**ring_env.env, "CA_SERVER_SHM_DIR": str(folder)}
    extra = ["--skip-preflight"] if skip_preflight else []
    worker = spawn_worker(
        "create",
        "huge",
        "--width",
        1024,
        "--height",
        1024,
        "--slots",
        8,
        *extra,
        env=env,
        prefix=prefix,
    )
    summary = worker.finish()
    assert worker.proc.returncode == 0  # no SIGBUS (exit 135 / -7)
    assert summary["error"] == "ShmTooSmallError"
    assert "24.0 MiB" in summary["message"] and "--shm-size" in summary["message"]
    assert summary["left"] == []
    assert os.listdir(folder) == []  # the tmpfs lived only in the worker's mount namespace
