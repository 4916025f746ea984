"""Files another local user (or a bug) can plant or break under the ring (issue 18): symlinked
runtime folders, rings and lock files owned by someone else, FIFOs, sparse and truncated rings.
Each dangerous case runs in a subprocess with a timeout, so the old behaviour (a hang, SIGBUS)
fails the test instead of killing pytest."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ca_server.wire import layout
from ca_server.wire.errors import RingError, WireError
from ca_server.wire.layout import RingHeader, RingState
from ca_server.wire.paths import ring_path, runtime_dir, validate_ring_name
from ca_server.wire.ring import RingReader, RingStatus, RingWriter

pytestmark = pytest.mark.timeout(120)
OTHER_UID = 54321
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def run_python(
    code: str, env: dict[str, str], timeout_s: float = 30
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_ring_name_with_trailing_newline_is_refused() -> None:
    with pytest.raises(WireError, match="invalid ring name"):
        validate_ring_name("gpu0\n")
    assert validate_ring_name("gpu0") == "gpu0"


def test_symlinked_runtime_folder_is_refused_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "attacker"
    target.mkdir(mode=0o777)
    target.chmod(0o777)
    link = tmp_path / "run-link"
    link.symlink_to(target)
    monkeypatch.setenv("CA_SERVER_RUNTIME_DIR", str(link))
    with pytest.raises(WireError, match="symbolic link"):
        runtime_dir()
    assert stat.S_IMODE(target.stat().st_mode) == 0o777  # never chmodded


def test_runtime_folder_open_to_others_is_refused_not_chmodded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    monkeypatch.setenv("CA_SERVER_RUNTIME_DIR", str(folder))
    with pytest.raises(WireError, match="chmod 700"):
        runtime_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


@needs_root
def test_a_ring_owned_by_another_user_is_not_trusted(ring_env) -> None:
    with RingWriter("planted", 32, 32, slots=2, control_endpoint="ipc:///tmp/attacker.ctl"):
        path = ring_path("planted")
        os.chown(path, OTHER_UID, OTHER_UID)
        reader = RingReader("planted")
        try:
            with pytest.raises(RingError, match="belongs to uid 54321"):
                reader.attach()
            assert reader.status == RingStatus.INCOMPATIBLE
            assert reader.header() is None  # its advertised endpoint is never read
        finally:
            reader.close()
        os.chown(path, 0, 0)


def test_a_fifo_at_the_ring_path_is_refused_without_blocking(ring_env) -> None:
    os.mkfifo(ring_path("fifo"), 0o600)
    completed = run_python(
        """
        from ca_server.wire.errors import RingError
        from ca_server.wire.ring import RingReader
        reader = RingReader("fifo")
        try:
            reader.attach()
        except RingError as exc:
            print("refused:", exc)
        print(reader.status.name)
        """,
        ring_env.env,
    )
    assert completed.returncode == 0, completed.stderr
    assert "refused:" in completed.stdout and "not a regular file" in completed.stdout
    assert "INCOMPATIBLE" in completed.stdout


def test_a_sparse_ring_with_a_huge_consistent_header_is_refused_unmapped(ring_env) -> None:
    header = RingHeader.plan(
        name="sparse",
        width=2048,
        height=2048,
        slot_count=8,  # ~100 MiB: enough to see, not enough to fill a shared /dev/shm
        epoch=1,
        writer_pid=os.getpid(),
        state=RingState.LIVE,
        control_endpoint="",
        created_unix_ns=1,
        nominal_fps_milli=30_000,
        boot_id=bytes(16),
        heartbeat_mono_ns=1,
    )
    path = ring_path("sparse")
    with open(path, "wb") as ring_file:
        ring_file.write(header.encode())
        ring_file.truncate(header.segment_bytes)
    path.chmod(0o600)
    completed = run_python(
        """
        from ca_server.wire.ring import RingReader
        reader = RingReader("sparse")
        print(reader.status.name)
        """,
        ring_env.env,
    )
    allocated = os.stat(path).st_blocks * 512
    assert allocated < 1 << 20, f"reading the sparse ring allocated {allocated} bytes of tmpfs"
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "INCOMPATIBLE"


def test_a_ring_truncated_while_mapped_kills_neither_reader_nor_writer(ring_env) -> None:
    completed = run_python(
        """
        import os
        import numpy as np
        from ca_server.wire.errors import RingError
        from ca_server.wire.ring import RingReader, RingWriter
        writer = RingWriter("cut", 64, 64, slots=4)
        frame = np.zeros((64, 64, 3), np.uint8)
        for _ in range(3):
            writer.write(frame, sim_step=0, params_version=0)
        reader = RingReader("cut")
        reader.attach()
        os.truncate(writer.path, 4096)
        result = reader.read_new(4)
        print("reader", len(result.meta), result.status.name)
        try:
            writer.write(frame, sim_step=0, params_version=0)
        except RingError as exc:
            print("writer refused:", exc)
        reader.close()
        writer.close()
        print("closed")
        """,
        ring_env.env,
    )
    assert completed.returncode == 0, f"exit {completed.returncode}: {completed.stderr[-500:]}"
    assert "reader 0 STALE" in completed.stdout
    assert "writer refused:" in completed.stdout and "truncated" in completed.stdout
    assert "closed" in completed.stdout


@needs_root
def test_another_users_stale_ring_is_refused_not_removed(ring_env) -> None:
    path = ring_path("stale")
    path.write_bytes(bytes(layout.FIXED_HEADER_BYTES))
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(WireError, match="belongs to uid 54321"):
        RingWriter("stale", 32, 32, slots=2)
    assert path.exists()


@needs_root
def test_another_users_ipc_socket_is_refused_not_removed(tmp_path: Path) -> None:
    import socket

    from ca_server.wire.control import remove_stale_ipc_socket

    path = tmp_path / "planted.ctl"
    with socket.socket(socket.AF_UNIX) as planted:
        planted.bind(str(path))
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(WireError, match="belongs to uid 54321"):
        remove_stale_ipc_socket(f"ipc://{path}")
    assert path.exists()
