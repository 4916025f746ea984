"""The command line under bad input and hostile files (issue 18): one line and an exit code
instead of a traceback, a hang or a silent bind; CURVE-guarded TCP control end to end; user
preset folders with FIFOs, symlinks to devices and nesting bombs. Real CLI subprocesses."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from daemon_process import DaemonProcess, cli_command

from ca_server.exit_codes import ExitCode
from ca_server.wire.paths import ring_path

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(180)]
HANG_BOUND_S = 30
CORAL = (Path(__file__).parents[2] / "ca_server/presets/data/coral.toml").read_text()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args),
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=HANG_BOUND_S,
    )


def one_line_failure(completed: subprocess.CompletedProcess, code: int) -> str:
    assert completed.returncode == code, (completed.returncode, completed.stderr[-800:])
    assert "Traceback" not in completed.stderr, completed.stderr[-800:]
    return completed.stderr


def test_serve_width_below_the_simulation_minimum_is_a_usage_error(runtime_dir) -> None:
    stderr = one_line_failure(
        run_cli("serve", "--backend", "numpy", "--width", "20", "--name", "w20"), ExitCode.USAGE
    )
    assert "--width 20" in stderr and "32" in stderr


def test_view_refuses_a_non_loopback_host_without_allow_remote(runtime_dir) -> None:
    stderr = one_line_failure(run_cli("view", "--host", "0.0.0.0", "--port", "0"), ExitCode.CONFIG)
    assert "--allow-remote" in stderr


def test_snapshot_and_record_with_bad_paths_fail_with_one_line(daemon: DaemonProcess, tmp_path):
    cases = [
        (("snapshot", str(tmp_path / "frame.nosuchformat")), ExitCode.USAGE),
        (("snapshot", str(tmp_path / "missing" / "frame.png")), ExitCode.CANNOT_CREATE),
        (("snapshot", str(tmp_path)), ExitCode.USAGE),
        (("record", str(tmp_path / "clip.avi"), "--seconds", "1"), ExitCode.USAGE),
        (("record", str(tmp_path / "missing" / "clip.gif"), "--seconds", "1"), 73),
    ]
    for args, code in cases:
        stderr = one_line_failure(daemon.cli(*args, "--name", daemon.name), code)
        assert "cannot write" in stderr


def test_an_explicit_ipc_control_socket_is_0600_whatever_the_umask(
    daemon_factory, tmp_path: Path
) -> None:
    folder = tmp_path / "sockets"
    folder.mkdir(mode=0o700)
    socket_path = folder / "explicit.ctl"
    daemon: DaemonProcess = daemon_factory()
    daemon.serve_options = ("--control", f"ipc://{socket_path}")
    old_umask = os.umask(0o022)  # the daemon inherits it
    try:
        daemon.start(wait=False)
    finally:
        os.umask(old_umask)
    daemon.wait_ready()  # ctl finds the explicit endpoint advertised in the ring
    assert stat.S_IMODE(os.lstat(socket_path).st_mode) == 0o600


def test_tcp_control_works_with_the_key_and_not_without(daemon_factory, tmp_path: Path) -> None:
    daemon: DaemonProcess = daemon_factory()
    with socket.socket() as probe:  # a fixed port: the ring advertises the endpoint as given
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon.serve_options = ("--control", f"tcp://127.0.0.1:{port}")
    daemon.start()  # ctl finds the endpoint in the ring and the key in the runtime folder
    runtime = Path(daemon.env["CA_SERVER_RUNTIME_DIR"])
    assert stat.S_IMODE(os.stat(runtime / "control.key").st_mode) == 0o600
    assert daemon.ctl_json("ping")["pong"] is True
    elsewhere = tmp_path / "no-key"
    elsewhere.mkdir(mode=0o700)
    endpoint = daemon.status()["control_endpoint"]
    no_key = {**daemon.env, "CA_SERVER_CONTROL_KEY": str(elsewhere / "control.key")}
    completed = run_cli("ctl", "--control", endpoint, "--timeout", "0.5", "ping", env=no_key)
    stderr = one_line_failure(completed, ExitCode.UNAVAILABLE)
    assert "control key" in stderr and "CA_SERVER_CONTROL_KEY" in stderr
    copy = elsewhere / "copied.key"  # as on another machine: a copy of the file, given by option
    copy.write_bytes((runtime / "control.key").read_bytes())
    copy.chmod(0o600)
    with_copy = run_cli(
        "ctl", "--control", endpoint, "--control-key", str(copy), "--timeout", "5", "ping",
        env=no_key,
    )  # fmt: skip
    assert with_copy.returncode == 0, with_copy.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another uid's file needs root")
def test_serve_exits_73_on_another_users_stale_ring(daemon_factory) -> None:
    daemon: DaemonProcess = daemon_factory()
    path = ring_path(daemon.name)
    path.write_bytes(bytes(4096))
    os.chown(path, 54321, 54321)
    daemon.start(wait=False)
    daemon.process.wait(timeout=HANG_BOUND_S)
    stderr = daemon.stderr()
    assert daemon.process.returncode == ExitCode.CANNOT_CREATE, stderr[-800:]
    assert "belongs to uid 54321" in stderr and "Traceback" not in stderr
    assert path.exists()  # never removed


def planted_presets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "mine.toml").write_text(CORAL.replace('name = "coral"', 'name = "mine"'))
    os.mkfifo(folder / "fifo.toml")
    (folder / "zero.toml").symlink_to("/dev/zero")
    (folder / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (folder / "huge.toml").write_text("# " + "x" * 200_000 + "\n")
    return folder


def test_the_presets_command_names_each_bad_file_and_lists_the_rest(tmp_path: Path) -> None:
    folder = planted_presets_dir(tmp_path)
    completed = run_cli("presets", "--presets-dir", str(folder))
    stderr = one_line_failure(completed, ExitCode.CONFIG)
    assert "mine" in completed.stdout and "coral" in completed.stdout
    for bad in ("fifo.toml", "zero.toml", "deep.toml", "huge.toml"):
        assert bad in stderr


def test_a_planted_presets_folder_neither_blocks_nor_breaks_the_daemon(
    daemon_factory, tmp_path: Path
) -> None:
    folder = planted_presets_dir(tmp_path)
    daemon: DaemonProcess = daemon_factory()
    daemon.serve_options = ("--presets-dir", str(folder))
    daemon.start()
    names = [row["name"] for row in daemon.ctl_json("presets")]
    assert "mine" in names and "coral" in names
    refused = daemon.ctl("--json", "preset", "deep")
    assert refused.returncode == 65 and "deep.toml" in refused.stdout
    assert daemon.ctl_json("preset", "mine")["value"] == "mine"


def test_serve_with_a_broken_requested_preset_exits_78_naming_the_file(
    runtime_dir, tmp_path: Path
) -> None:
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "broken.toml").write_text("[preset\nname=")
    completed = run_cli(
        "serve", "--backend", "numpy", "--width", "64", "--height", "64", "--name", "brk",
        "--presets-dir", str(folder), "--preset", "broken",
    )  # fmt: skip
    stderr = one_line_failure(completed, ExitCode.CONFIG)
    assert "broken.toml" in stderr


def test_the_catalogue_is_parsed_once_and_reloaded_on_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ca_server.presets.loading as loading
    from ca_server.presets import catalog

    parsed: list[str] = []
    real_parse = loading.parse_preset

    def counting_parse(text: str, source: str, expected_name: str | None = None):
        parsed.append(source)
        return real_parse(text, source, expected_name)

    monkeypatch.setattr(loading, "parse_preset", counting_parse)
    path = tmp_path / "mine.toml"
    path.write_text(CORAL.replace('name = "coral"', 'name = "mine"'))
    first = catalog(tmp_path)
    parsed.clear()
    for _ in range(5):
        assert catalog(tmp_path).presets == first.presets
    assert parsed == []  # served from memory
    edited = CORAL.replace('name = "coral"', 'name = "mine"').replace("order = 20", "order = -5")
    path.write_text(edited)
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert catalog(tmp_path).presets[0].name == "mine"
    assert parsed == [str(path)]
