"""The control page of `ca-server view` over plain HTTP: controls reach the daemon through the
control protocol, changes made with `ctl` show on the page, thumbnails are drawn and cached, and
the access rules hold (loopback Host, same-origin JSON posts, the token). The real-browser test
is test_control_page_browser.py."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from view_process import ViewProcess, http

pytestmark = pytest.mark.subprocess

BOUND_S = 60.0  # hang bound on a loaded 2-core box


def wait_for(check, what: str, bound_s: float = BOUND_S):
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {bound_s} s")


@pytest.fixture
def view(daemon: DaemonProcess):
    viewer = ViewProcess(daemon)
    viewer.wait_serving()
    yield viewer
    viewer.stop()


def test_page_controls_go_through_the_daemon_and_ctl_changes_show_on_the_page(
    daemon: DaemonProcess, view: ViewProcess
) -> None:
    status, page = http(f"{view.url}/")
    assert status == 200 and b'id="gallery"' in page
    for op, args, key, expected in [
        ("speed", {"value": 2.5}, "speed", 2.5),
        ("hue", {"value": 0.25}, "hue", 0.25),
        ("brightness", {"value": 1.5}, "brightness", 1.5),
        ("preset", {"name": "labyrinth"}, "preset", "labyrinth"),
        ("reseed", {"seed": 77}, "seed", 77),
        ("pause", {}, "paused", True),
        ("beat", {"value": 0.5}, "beat", {"amount": 0.5}),
        ("tempo", {"bpm": 128}, "beat", {"bpm": 128.0, "source": "ctl"}),
        ("tap", {}, "beat", {"source": "tap"}),
    ]:
        status, reply = http(f"{view.url}/api/control", body={"op": op, "args": args})
        assert status == 200 and reply["ok"], reply
        shown = daemon.status()[key]
        if isinstance(expected, dict):
            shown = {name: shown[name] for name in expected}
        assert shown == expected
    daemon.ctl("resume")
    daemon.ctl("hue", "0.75")
    state = wait_for(
        lambda: (
            ((s := http(f"{view.url}/api/state")[1]).get("status") or {}).get("hue") == 0.75 and s
        ),
        "the page's state shows a change made with ctl",
    )
    assert state["connected"] and not state["status"]["paused"]
    assert len(state["history"]["fps"]) >= 2 and "vram_mib" in state["history"]


def test_a_bad_control_is_one_clear_error_and_the_daemon_keeps_going(
    daemon: DaemonProcess, view: ViewProcess
) -> None:
    status, reply = http(f"{view.url}/api/control", body={"op": "speed", "args": {"value": 99}})
    assert status == 400 and reply["error"]["code"] == "bad_args"
    assert "speed" in reply["error"]["message"]
    status, reply = http(f"{view.url}/api/control", body={"op": "shutdown", "args": {}})
    assert status == 400 and "op in" in reply["error"]["message"]
    status, reply = http(f"{view.url}/api/control", body={"op": "preset", "args": {"name": "x"}})
    assert status == 400 and reply["error"]["code"] == "unknown_preset"
    assert daemon.status()["speed"] == 1.0


def test_thumbnails_are_drawn_by_the_renderer_and_cached_in_the_runtime_folder(
    daemon: DaemonProcess, view: ViewProcess, runtime_dir: Path
) -> None:
    from PIL import Image

    first = wait_for(
        lambda: [
            p for p in (http(f"{view.url}/api/state")[1] or {}).get("presets", []) if p["thumbnail"]
        ],
        "a first thumbnail",
    )[0]
    status, png = http(f"{view.url}/thumbnails/{first['name']}.png")
    assert status == 200
    image = Image.open(io.BytesIO(png))
    assert image.size == (96, 96)
    colours = image.convert("RGB").getextrema()
    assert max(high for _, high in colours) > 32, "a thumbnail with a visible organism"
    cached = list((runtime_dir / "cache" / "thumbnails").glob(f"{first['name']}-*.png"))
    assert len(cached) == 1 and cached[0].read_bytes() == png


def test_cross_site_posts_and_foreign_host_names_are_refused(
    daemon: DaemonProcess, view: ViewProcess
) -> None:
    body = {"op": "speed", "args": {"value": 3}}
    status, _ = http(f"{view.url}/api/control", body=body, content_type="text/plain")
    assert status == 403  # what an HTML form on another site could send without preflight
    status, _ = http(f"{view.url}/api/control", body=body, headers={"Origin": "http://evil.test"})
    assert status == 403
    status, _ = http(f"{view.url}/api/state", headers={"Host": "rebound.evil.test"})
    assert status == 403  # DNS rebinding: a foreign name pointing at 127.0.0.1
    assert daemon.status()["speed"] == 1.0


def test_a_token_is_required_once_set_and_generated_off_loopback(daemon: DaemonProcess) -> None:
    token = "a-long-enough-test-token"
    viewer = ViewProcess(daemon, "--token", token)
    try:
        viewer.wait_serving()
        assert http(f"{viewer.url}/api/state")[0] == 401
        assert http(f"{viewer.url}/api/state?token=wrong-token-wrong")[0] == 403
        assert (
            http(f"{viewer.url}/api/state", headers={"Authorization": f"Bearer {token}"})[0] == 200
        )
        assert (
            http(f"{viewer.url}/api/state", headers={"Cookie": f"ca_server_token={token}"})[0]
            == 200
        )
        body = {"op": "speed", "args": {"value": 3}}
        assert http(f"{viewer.url}/api/control", body=body)[0] == 401
        assert daemon.status()["speed"] == 1.0
    finally:
        viewer.stop()

    remote = ViewProcess(daemon, "--host", "0.0.0.0", "--allow-remote")
    try:
        remote.wait_serving()
        assert http(f"{remote.url}/api/state")[0] == 401
        assert remote.process.stderr is not None
        line = ""
        while "?token=" not in line:  # the URL is logged before the server starts answering
            line = remote.process.stderr.readline()
            assert line, "view exited without printing its URL"
        printed = line.split("?token=")[1].split()[0]
        assert len(printed) >= 16
        status, reply = http(f"{remote.url}/api/state?token={printed}")
        assert status == 200 and reply["connected"] in (True, False)
    finally:
        remote.stop()
