"""bootstrap.sh against a fake pod: what a first run installs and where, that a second run
changes nothing, that an update reinstalls only the component whose inputs changed, and that a
failed step says which and leaves the last good install (links, stamps, plugin) in place."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import FakePod


def bootstrap(pod: FakePod, tree, **env: str):
    return pod.run(tree / "deploy" / "bootstrap.sh", **env)


def output(done) -> str:
    """Everything a run printed (bootstrap sends both streams through its log's tee)."""
    return done.stdout + done.stderr


def state(pod: FakePod) -> dict:
    return json.loads((pod.workspace / "ca/state/bootstrap.json").read_text())


def test_first_run_installs_each_component_in_its_place(fake_pod: FakePod) -> None:
    tree = fake_pod.snapshot("c1")
    done = bootstrap(fake_pod, tree)
    assert done.returncode == 0, output(done)
    calls = fake_pod.uv_calls()
    venv_calls = [c for c in calls if "\tvenv " in c]
    assert len(venv_calls) == 2 and all("/workspace/ca/envs/" in c for c in venv_calls)
    daemon_install = next(c for c in calls if "pip install" in c and str(tree) in c)
    assert "cupy-cuda12x[ctk]>=14,<15" in daemon_install  # the fake GPU is an RTX 5090 on R570
    assert "cuda-toolkit[nvrtc]>=12.8,<13" in daemon_install
    plugin_install = next(c for c in calls if "daydream-scope install" in c)
    cwd, args = plugin_install.split("\t")
    assert cwd == str(fake_pod.app)  # Scope reads pyproject.toml and uv.lock from its cwd
    assert args == f"run --no-sync daydream-scope install {tree}"
    assert os.readlink(fake_pod.workspace / "ca/current") == str(tree)
    assert (fake_pod.workspace / "ca/venv/bin/ca-server").exists()
    assert (fake_pod.workspace / "scope/plugins/plugins.txt").read_text().strip() == str(tree)
    assert set(state(fake_pod)["changed"]) == {"tools", "daemon", "plugin", "config"}
    assert state(fake_pod)["status"] == "ok" and state(fake_pod)["commit"] == "c1"
    conf = (fake_pod.run_dir / "supervisord.conf").read_text()
    assert "serve --gpu 0 --name gpu0 --max-vram-mb 1024" in conf
    assert 'CUPY_GPU_MEMORY_LIMIT="1073741824"' in conf
    assert "run --no-sync daydream-scope --host 0.0.0.0" in conf
    assert f"stdout_logfile={fake_pod.workspace}/logs/ca-server.log" in conf
    assert "scope-logs-" not in conf  # Scope deletes files with its own prefix daily


def test_second_run_changes_nothing(fake_pod: FakePod) -> None:
    tree = fake_pod.snapshot("c1")
    assert bootstrap(fake_pod, tree).returncode == 0
    conf_before = (fake_pod.run_dir / "supervisord.conf").stat().st_mtime_ns
    mutating_before = fake_pod.mutating_uv_calls()
    again = bootstrap(fake_pod, tree)
    assert again.returncode == 0, output(again)
    assert fake_pod.mutating_uv_calls() == mutating_before
    assert state(fake_pod)["changed"] == []
    assert (fake_pod.run_dir / "supervisord.conf").stat().st_mtime_ns == conf_before
    assert "changed: nothing" in output(again)


def test_update_reinstalls_only_what_changed(fake_pod: FakePod) -> None:
    assert bootstrap(fake_pod, fake_pod.snapshot("c1")).returncode == 0
    first_daemon_env = os.readlink(fake_pod.workspace / "ca/venv")

    daemon_only = fake_pod.snapshot("c2", daemon_text="v2")
    before = len(fake_pod.mutating_uv_calls())
    assert bootstrap(fake_pod, daemon_only).returncode == 0
    new_calls = fake_pod.mutating_uv_calls()[before:]
    assert len([c for c in new_calls if "\tvenv " in c]) == 1
    assert not any("daydream-scope install" in c for c in new_calls)
    assert state(fake_pod)["changed"] == ["daemon"]
    assert os.readlink(fake_pod.workspace / "ca/venv") != first_daemon_env
    assert os.readlink(fake_pod.workspace / "ca/current") == str(daemon_only)

    plugin_change = fake_pod.snapshot("c3", daemon_text="v2", plugin_text="v2")
    before = len(fake_pod.mutating_uv_calls())
    assert bootstrap(fake_pod, plugin_change).returncode == 0
    new_calls = fake_pod.mutating_uv_calls()[before:]
    assert [c.split("\t")[1] for c in new_calls] == [
        f"run --no-sync daydream-scope install {plugin_change}"
    ]
    assert state(fake_pod)["changed"] == ["plugin"]


def test_container_reset_reinstalls_only_the_plugin(fake_pod: FakePod) -> None:
    tree = fake_pod.snapshot("c1")
    assert bootstrap(fake_pod, tree).returncode == 0
    # A pod restart restores /app/.venv from the image: our marker and the plugin are gone.
    for name in (".ca-plugin.stamp", "fake-plugin-installed"):
        (fake_pod.app / ".venv" / name).unlink()
    before = len(fake_pod.mutating_uv_calls())
    assert bootstrap(fake_pod, tree).returncode == 0
    new_calls = fake_pod.mutating_uv_calls()[before:]
    assert len(new_calls) == 1 and "daydream-scope install" in new_calls[0]


def test_failed_daemon_install_keeps_the_last_good_one(fake_pod: FakePod) -> None:
    assert bootstrap(fake_pod, fake_pod.snapshot("c1")).returncode == 0
    good_env = os.readlink(fake_pod.workspace / "ca/venv")
    good_stamp = (fake_pod.workspace / "ca/state/daemon.stamp").read_text()

    broken = fake_pod.snapshot("c2", daemon_text="v2")
    failed = bootstrap(fake_pod, broken, FAKE_FAIL="--refresh-package")
    assert failed.returncode != 0
    assert "FAILED in step 'daemon'" in output(failed)
    assert os.readlink(fake_pod.workspace / "ca/venv") == good_env
    assert (fake_pod.workspace / "ca/state/daemon.stamp").read_text() == good_stamp
    envs = sorted(p.name for p in (fake_pod.workspace / "ca/envs").iterdir())
    assert len([e for e in envs if e.startswith("daemon-")]) == 1, envs  # no half-built venv
    assert os.readlink(fake_pod.workspace / "ca/current") != str(broken)
    assert state(fake_pod)["status"] == "failed" and state(fake_pod)["step"] == "daemon"

    retried = bootstrap(fake_pod, broken)
    assert retried.returncode == 0, output(retried)
    assert state(fake_pod)["changed"] == ["daemon"]


def test_failed_cupy_check_is_reported_and_not_switched_in(fake_pod: FakePod) -> None:
    failed = bootstrap(fake_pod, fake_pod.snapshot("c1"), FAKE_CUPY_RC="1")
    assert failed.returncode != 0
    assert "FAILED in step 'daemon'" in output(failed)
    assert not (fake_pod.workspace / "ca/venv").exists()
    assert not (fake_pod.workspace / "ca/state/daemon.stamp").exists()


def test_plugin_that_does_not_load_is_uninstalled_again(fake_pod: FakePod) -> None:
    tree = fake_pod.snapshot("c1")
    failed = bootstrap(fake_pod, tree, FAKE_PLUGIN_BROKEN="1")
    assert failed.returncode != 0
    assert "FAILED in step 'plugin'" in output(failed)
    assert "fake plugin is broken" in output(failed)
    assert any("daydream-scope uninstall ca-server" in c for c in fake_pod.uv_calls())
    assert not (fake_pod.app / ".venv/.ca-plugin.stamp").exists()
    assert bootstrap(fake_pod, tree).returncode == 0
    assert (fake_pod.app / ".venv/.ca-plugin.stamp").exists()


def test_failed_scope_install_is_reported(fake_pod: FakePod) -> None:
    failed = bootstrap(fake_pod, fake_pod.snapshot("c1"), FAKE_FAIL="daydream-scope install")
    assert failed.returncode != 0
    assert "daydream-scope install failed" in output(failed)
    assert not (fake_pod.app / ".venv/.ca-plugin.stamp").exists()


def test_no_gpu_is_degraded_not_fatal(fake_pod: FakePod) -> None:
    done = bootstrap(fake_pod, fake_pod.snapshot("c1"), FAKE_GPU="none")
    assert done.returncode == 0, output(done)
    assert "DEGRADED" in output(done)
    assert state(fake_pod)["degraded"] is True
    daemon_install = next(c for c in fake_pod.uv_calls() if "--refresh-package" in c)
    assert "cupy" not in daemon_install
    required = bootstrap(fake_pod, fake_pod.snapshot("c1"), FAKE_GPU="none", CA_REQUIRE_GPU="1")
    assert required.returncode != 0 and "no GPU visible" in output(required)


def test_old_driver_for_blackwell_stops_in_preflight(fake_pod: FakePod) -> None:
    done = bootstrap(fake_pod, fake_pod.snapshot("c1"), FAKE_DRIVER_CUDA="12.4")
    assert done.returncode != 0
    assert "FAILED in step 'preflight'" in output(done) and "CUDA >= 12.8" in output(done)
    assert fake_pod.mutating_uv_calls() == []


def test_small_shm_stops_in_preflight(fake_pod: FakePod) -> None:
    done = bootstrap(fake_pod, fake_pod.snapshot("c1"), CA_SHM_MIN_MB=str(2**40))
    assert done.returncode != 0
    assert "the ring needs" in output(done)
    assert fake_pod.mutating_uv_calls() == []


def test_concurrent_deploy_is_refused(fake_pod: FakePod) -> None:
    import fcntl

    tree = fake_pod.snapshot("c1")
    with open(fake_pod.run_dir / "deploy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = bootstrap(fake_pod, tree)
    assert done.returncode != 0 and "another deploy step holds" in output(done)
