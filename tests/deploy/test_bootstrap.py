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


def plugin_installs(pod: FakePod) -> list[str]:
    """The uv calls that install into Scope's venv."""
    scope_python = f"--python {pod.app}/.venv/bin/python"
    return [c for c in pod.uv_calls() if "\tpip install " in c and scope_python in c]


def installed_plugin_tree(pod: FakePod) -> str:
    return (pod.app / ".venv/fake-plugin-installed").read_text().strip()


def test_first_run_installs_each_component_in_its_place(fake_pod: FakePod) -> None:
    tree = fake_pod.snapshot("c1")
    done = bootstrap(fake_pod, tree)
    assert done.returncode == 0, output(done)
    calls = fake_pod.uv_calls()
    venv_calls = [c for c in calls if "\tvenv " in c]
    assert len(venv_calls) == 2 and all("/workspace/ca/envs/" in c for c in venv_calls)
    daemon_install = next(c for c in calls if "pip install" in c and str(tree) in c)
    # the fake GPU is an RTX 5090 on R570: CUDA 12 wheels, only the libraries the daemon loads
    assert "cupy-cuda12x>=14,<15 cuda-toolkit[cudart,nvrtc,cufft]==12.*" in daemon_install
    assert "cuda-toolkit[nvrtc]>=12.8,<13" in daemon_install
    [plugin_install] = plugin_installs(fake_pod)
    assert plugin_install.endswith(f"--reinstall-package ca-server {tree}")
    assert f"--constraint {fake_pod.run_dir}/scope-constraints.txt" in plugin_install
    assert not any(" compile " in c or "daydream-scope install" in c for c in calls)
    assert installed_plugin_tree(fake_pod) == str(tree)
    assert os.readlink(fake_pod.workspace / "ca/current") == str(tree)
    assert (fake_pod.workspace / "ca/venv/bin/ca-server").exists()
    assert set(state(fake_pod)["changed"]) == {"tools", "daemon", "plugin", "config"}
    assert state(fake_pod)["status"] == "ok" and state(fake_pod)["commit"] == "c1"
    conf = (fake_pod.run_dir / "supervisord.conf").read_text()
    assert "serve --gpu 0 --name gpu0 --max-vram-mb 1024" in conf
    assert 'CUPY_GPU_MEMORY_LIMIT="1073741824"' in conf
    assert f"command={fake_pod.app}/.venv/bin/daydream-scope --host 0.0.0.0" in conf
    assert "run --no-sync" not in conf
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
    assert new_calls == plugin_installs(fake_pod)[-1:]
    assert installed_plugin_tree(fake_pod) == str(plugin_change)
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
    assert new_calls == plugin_installs(fake_pod)[-1:]


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


def test_first_plugin_that_does_not_load_is_uninstalled_again(fake_pod: FakePod) -> None:
    tree = fake_pod.snapshot("c1")
    failed = bootstrap(fake_pod, tree, FAKE_PLUGIN_BROKEN="1")
    assert failed.returncode != 0
    assert "FAILED in step 'plugin'" in output(failed)
    assert "fake plugin is broken" in output(failed)
    assert "Scope now runs WITHOUT the plugin" in output(failed)  # not "unchanged"
    assert any("pip uninstall" in c and "ca-server" in c for c in fake_pod.uv_calls())
    assert not (fake_pod.app / ".venv/fake-plugin-installed").exists()
    assert not (fake_pod.app / ".venv/.ca-plugin.stamp").exists()
    assert bootstrap(fake_pod, tree).returncode == 0
    assert (fake_pod.app / ".venv/.ca-plugin.stamp").exists()


def test_failed_scope_install_is_reported(fake_pod: FakePod) -> None:
    failed = bootstrap(fake_pod, fake_pod.snapshot("c1"), FAKE_FAIL="--reinstall-package ca-server")
    assert failed.returncode != 0
    assert "installing the plugin into Scope's venv failed" in output(failed)
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


# ---- issue 24: what broke against a real Scope install ----------------------------------------


def test_plugin_that_does_not_load_puts_the_last_good_one_back(fake_pod: FakePod) -> None:
    """Issue 24 item 3: the failed install replaced the good plugin; the good one is reinstalled,
    so Scope keeps a working plugin, and the log says what really happened."""
    good = fake_pod.snapshot("c1")
    assert bootstrap(fake_pod, good).returncode == 0
    broken = fake_pod.snapshot("c2", plugin_text="BROKEN")
    failed = bootstrap(fake_pod, broken)
    assert failed.returncode != 0
    assert "FAILED in step 'plugin'" in output(failed)
    assert f"The last good plugin ({good}) was reinstalled" in output(failed)
    assert installed_plugin_tree(fake_pod) == str(good)
    check = fake_pod.run(fake_pod.app / ".venv/bin/python", str(good / "deploy/check_plugin.py"))
    assert check.returncode == 0, check.stderr  # Scope's venv loads a plugin again
    assert os.readlink(fake_pod.workspace / "ca/current") == str(good)
    again = bootstrap(fake_pod, good)  # the good tree's stamp is back: nothing to do
    assert again.returncode == 0 and "plugin: up to date" in output(again)


def test_plugin_install_leaves_scopes_packages_identical(fake_pod: FakePod) -> None:
    """Issue 24 item 4: no re-resolution of Scope's dependencies; Scope's installed versions are
    identical before and after (only our distribution and pyzmq are added)."""
    before = fake_pod.scope_freeze()
    first = bootstrap(fake_pod, fake_pod.snapshot("c1"))
    assert first.returncode == 0, output(first)
    update = bootstrap(fake_pod, fake_pod.snapshot("c2", plugin_text="v2"))
    assert update.returncode == 0, output(update)
    after = fake_pod.scope_freeze()
    assert [line for line in after if line in before] == before
    added = sorted(set(after) - set(before))
    assert added == [f"ca-server @ file://{fake_pod.workspace}/ca/src/c2", "pyzmq==27.1.0"]
    assert not any(" compile " in c for c in fake_pod.uv_calls())
    # Every package Scope's venv had before the update is pinned as installed.
    with_pyzmq = sorted([*before, "pyzmq==27.1.0"])
    assert (fake_pod.run_dir / "scope-constraints.txt").read_text().split() == with_pyzmq
    freezes = sorted((fake_pod.workspace / "logs/deploy").glob("scope-freeze-*-after.txt"))
    assert len(freezes) == 2 and freezes[-1].read_text().split() == with_pyzmq


def test_our_old_plugins_txt_entries_are_removed(fake_pod: FakePod) -> None:
    """Issue 24 items 1/4: an earlier deploy left our tree in Scope's plugins.txt, which makes
    Scope re-resolve its venv at startup; ours go, other plugins stay."""
    plugins_txt = fake_pod.workspace / "scope/plugins/plugins.txt"
    plugins_txt.parent.mkdir(parents=True)
    plugins_txt.write_text(f"{fake_pod.workspace}/ca/src/old\nscope-plugin-hello-world\n")
    assert bootstrap(fake_pod, fake_pod.snapshot("c1")).returncode == 0
    assert plugins_txt.read_text() == "scope-plugin-hello-world\n"


def test_newer_uv_cannot_wipe_scopes_venv(fake_pod: FakePod) -> None:
    """Issue 24 item 6: uv 0.13.9's `uv run --no-sync` in Scope's folder replaced its .venv;
    nothing runs `uv run` any more, so Scope's venv survives a deploy with such a uv."""
    before = fake_pod.scope_freeze()
    done = bootstrap(fake_pod, fake_pod.snapshot("c1"), FAKE_UV_VERSION="0.13.9")
    assert done.returncode == 0, output(done)
    assert (fake_pod.app / ".venv/bin/daydream-scope").exists()
    assert set(before) <= set(fake_pod.scope_freeze())
    assert not any("\trun " in c for c in fake_pod.uv_calls())


def test_preflight_failure_is_not_reported_as_degraded(fake_pod: FakePod) -> None:
    """Issue 24 item 7: preflight stopped before the GPU check: degraded is unknown (null)."""
    done = bootstrap(fake_pod, fake_pod.snapshot("c1"), CA_SHM_MIN_MB=str(2**40))
    assert done.returncode != 0
    assert state(fake_pod)["status"] == "failed" and state(fake_pod)["degraded"] is None


def test_keep_snapshots_counts_besides_current_and_plugin_source(fake_pod: FakePod) -> None:
    """Issue 24 item 7: CA_KEEP_SNAPSHOTS=1 keeps one pushed tree besides `current` and the
    plugin's install source, as the README says."""
    assert bootstrap(fake_pod, fake_pod.snapshot("c1")).returncode == 0  # plugin source: c1
    for age, commit in enumerate(("c2", "c3", "c4")):
        tree = fake_pod.snapshot(commit, daemon_text=commit)
        os.utime(tree, (1_000_000 + age, 1_000_000 + age))  # c4 is the newest
        os.utime(fake_pod.workspace / "ca/src/c1", (900_000, 900_000))
    done = bootstrap(fake_pod, fake_pod.workspace / "ca/src/c4", CA_KEEP_SNAPSHOTS="1")
    assert done.returncode == 0, output(done)
    kept = sorted(p.name for p in (fake_pod.workspace / "ca/src").iterdir())
    assert kept == ["c1", "c3", "c4"]


def test_shm_dir_setting_reaches_the_daemon_and_scope(fake_pod: FakePod) -> None:
    """Issue 24 item 7: CA_SHM_DIR alone made preflight check a folder the daemon did not use;
    the checked folder is now the one both programs get as CA_SERVER_SHM_DIR."""
    fake_pod.env.pop("CA_SERVER_SHM_DIR")
    shm = fake_pod.root / "big-shm"
    done = bootstrap(fake_pod, fake_pod.snapshot("c1"), CA_SHM_DIR=str(shm))
    assert done.returncode == 0, output(done)
    assert shm.is_dir()  # the folder preflight checked
    conf = (fake_pod.run_dir / "supervisord.conf").read_text()
    assert conf.count(f'CA_SERVER_SHM_DIR="{shm}"') == 2  # ca-server and scope
