"""Health and smoke probes for a deployed pod, using only `ca-server ctl` and Scope's HTTP API.

The deploy scripts call this file with whichever Python the pod has (standard library only, so
it runs in Scope's venv, ours, or a bare interpreter). `health` proves the daemon is alive and its
frame counter rises and that Scope has registered our plugin without failure; `session` runs a
headless Scope session with our pipeline and fetches output frames until one differs from the
first (the CA moves); `chain` feeds our pipeline
into Krea Realtime (video mode, a graph with a source node) and reports fps and VRAM of both.
Each prints one JSON report on stdout and exits with a per-component code (see EXIT_*).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DAEMON = 3
EXIT_SCOPE = 4
EXIT_PLUGIN = 5
EXIT_SESSION = 6
EXIT_CHAIN = 7


class ProbeFailure(Exception):
    """A check failed; `exit_code` names the component, the message says what to look at."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def http_json(
    method: str,
    url: str,
    body: Any = None,
    timeout_s: float = 10.0,
    http_error_code: int = EXIT_SCOPE,
) -> Any:
    """One HTTP request with a JSON body/response; raises ProbeFailure on failure: EXIT_SCOPE
    when Scope does not answer, `http_error_code` when it answers with an HTTP error (a session
    call that Scope refuses is a session failure, not Scope being down)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise ProbeFailure(http_error_code, f"{method} {url} -> HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ProbeFailure(EXIT_SCOPE, f"{method} {url} failed: {exc}") from exc


def http_bytes(url: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """GET `url`; returns (status, body) and never raises for an HTTP status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise ProbeFailure(EXIT_SCOPE, f"GET {url} failed: {exc}") from exc


def daemon_status(ctl_bin: str, ring: str, timeout_s: float) -> dict[str, Any]:
    """`ca-server ctl --json status` as a dict; ProbeFailure(EXIT_DAEMON) when it is not ok."""
    command = [ctl_bin, "ctl", "--name", ring, "--timeout", str(timeout_s), "--json", "status"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s + 5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeFailure(EXIT_DAEMON, f"cannot run {ctl_bin} ctl: {exc}") from exc
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or not reply.get("ok"):
        reason = (reply or {}).get("error", {}).get("message") if reply else done.stderr.strip()
        raise ProbeFailure(
            EXIT_DAEMON, f"daemon '{ring}' not answering (exit {done.returncode}): {reason}"
        )
    return reply["result"]


def check_daemon(ctl_bin: str, ring: str, sample_s: float, timeout_s: float) -> dict[str, Any]:
    """Two status samples `sample_s` apart; the frame counter must rise between them."""
    first = daemon_status(ctl_bin, ring, timeout_s)
    time.sleep(sample_s)
    second = daemon_status(ctl_bin, ring, timeout_s)
    rise = int(second["frames_published"]) - int(first["frames_published"])
    report = {
        "ring": ring,
        "pid": second.get("pid"),
        "backend": second.get("backend"),
        "device": second.get("device"),
        "size": [second.get("width"), second.get("height")],
        "preset": second.get("preset"),
        "measured_fps": second.get("measured_fps"),
        "frames_published": second["frames_published"],
        "frames_rise": rise,
        "vram_mb": round(int(second.get("vram_bytes") or 0) / 2**20, 1),
    }
    if rise <= 0:
        raise ProbeFailure(
            EXIT_DAEMON,
            f"daemon '{ring}' answers but frames_published did not rise in {sample_s} s "
            f"(stuck at {second['frames_published']}; paused={second.get('paused')})",
        )
    return report


def our_pipelines(url: str, dist: str, wanted: str | None) -> list[str]:
    """Pipeline ids Scope attributes to `dist`; `wanted`, when given, must be among them."""
    schemas = http_json("GET", f"{url}/api/v1/pipelines/schemas").get("pipelines", {})
    ids = sorted(pid for pid, meta in schemas.items() if (meta or {}).get("plugin_name") == dist)
    if not ids:
        raise ProbeFailure(
            EXIT_PLUGIN,
            f"Scope lists no pipeline from plugin '{dist}' "
            "(a GPU-less restart hides nothing of ours; check scope.out.log for plugin errors)",
        )
    if wanted and wanted not in ids:
        raise ProbeFailure(EXIT_PLUGIN, f"pipeline '{wanted}' not registered; plugin has {ids}")
    return ids


def check_scope(url: str, dist: str, wanted: str | None) -> dict[str, Any]:
    """Scope healthy, plugin installed and not failed, its pipeline registered."""
    health = http_json("GET", f"{url}/health")
    if (health or {}).get("status") != "healthy":
        raise ProbeFailure(EXIT_SCOPE, f"Scope /health says {health!r}")
    plugins = http_json("GET", f"{url}/api/v1/plugins")
    norm = dist.lower().replace("_", "-")
    failed = [
        f
        for f in plugins.get("failed_plugins", [])
        if str(f.get("package_name", "")).lower().replace("_", "-") == norm
    ]
    if failed:
        first = failed[0]
        raise ProbeFailure(
            EXIT_PLUGIN,
            f"Scope failed to load plugin '{dist}': {first.get('error_type')}: "
            f"{first.get('error_message')}",
        )
    listed = [
        p
        for p in plugins.get("plugins", [])
        if str(p.get("name", "")).lower().replace("_", "-") == norm
    ]
    if not listed:
        raise ProbeFailure(EXIT_PLUGIN, f"plugin '{dist}' is not installed in Scope")
    return {
        "version": health.get("version"),
        "git_commit": health.get("git_commit"),
        "server_start_time": health.get("server_start_time"),
        "plugin_version": listed[0].get("version"),
        "pipelines": our_pipelines(url, dist, wanted),
    }


def gpu_processes() -> list[dict[str, Any]]:
    """Per-process GPU memory from nvidia-smi, or [] where there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    query = [
        "nvidia-smi",
        "--query-compute-apps=pid,process_name,used_memory",
        "--format=csv,noheader,nounits",
    ]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = []
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            rows.append({"pid": int(parts[0]), "name": parts[1], "used_mb": parts[2]})
    return rows


def wait_pipeline_loaded(url: str, deadline: float) -> dict[str, Any]:
    while True:
        status = http_json("GET", f"{url}/api/v1/pipeline/status")
        if status.get("status") == "loaded":
            return status
        if status.get("status") == "error":
            raise ProbeFailure(EXIT_SESSION, f"pipeline load failed: {status.get('error')}")
        if time.monotonic() > deadline:
            raise ProbeFailure(EXIT_SESSION, f"pipeline not loaded in time: {status}")
        time.sleep(1.0)


def wait_moving_frames(
    url: str, deadline: float, exit_code: int, sink: str | None = None
) -> tuple[bytes, bytes]:
    """The first output JPEG and a later one that differs from it, polled until `deadline`.

    A session that repeats one frame (a paused daemon, a stuck pipeline) fails with `exit_code`.
    """
    query = f"?sink_node_id={sink}" if sink else ""
    first: bytes | None = None
    while True:
        code, body = http_bytes(f"{url}/api/v1/session/frame{query}")
        if code == 200 and body[:2] == b"\xff\xd8":
            if first is None:
                first = body
            elif body != first:
                return first, body
        if time.monotonic() > deadline:
            if first is None:
                raise ProbeFailure(exit_code, f"no output frame in time (last HTTP {code})")
            raise ProbeFailure(
                exit_code,
                "output frames did not change: the session repeats one frame "
                "(daemon paused or stuck? see `ca-server ctl status` and scope.out.log)",
            )
        time.sleep(0.5)


def save_frames(frame_out: str | None, first: bytes, last: bytes, report: dict[str, Any]) -> None:
    """Write the last frame to `frame_out` and the first beside it as <stem>-first.jpg."""
    if not frame_out:
        return
    last_path = Path(frame_out)
    first_path = last_path.with_name(f"{last_path.stem}-first{last_path.suffix}")
    first_path.write_bytes(first)
    last_path.write_bytes(last)
    report["frame_files"] = [str(first_path), str(last_path)]


def session_metrics(url: str) -> dict[str, Any]:
    metrics = http_json("GET", f"{url}/api/v1/session/metrics")
    sessions = list((metrics.get("sessions") or {}).values())
    stats = sessions[0] if sessions else {}
    return {
        "frames_out": stats.get("frames_out"),
        "fps_out": stats.get("fps_out"),
        "pipeline_fps": stats.get("pipeline_fps"),
        "scope_vram": metrics.get("gpu"),
    }


def run_session(args: argparse.Namespace) -> dict[str, Any]:
    """Load our pipeline, start a headless session, fetch frames until they move, stop."""
    pipeline = our_pipelines(args.url, args.dist, args.pipeline)[0]
    deadline = time.monotonic() + args.timeout_s
    # A single-pipeline session looks its pipeline up by node id, and that node id is the
    # pipeline id (Scope builds the linear graph from pipeline ids): load it under that id.
    http_json(
        "POST",
        f"{args.url}/api/v1/pipeline/load",
        {"pipelines": [{"node_id": pipeline, "pipeline_id": pipeline, "load_params": {}}]},
        http_error_code=EXIT_SESSION,
    )
    wait_pipeline_loaded(args.url, deadline)
    http_json(
        "POST",
        f"{args.url}/api/v1/session/start",
        {"pipeline_id": pipeline},
        http_error_code=EXIT_SESSION,
    )
    try:
        first, last = wait_moving_frames(args.url, deadline, EXIT_SESSION)
        report = {"pipeline": pipeline, "frame_bytes": len(last), **session_metrics(args.url)}
    finally:
        http_json("POST", f"{args.url}/api/v1/session/stop", http_error_code=EXIT_SESSION)
    save_frames(args.frame_out, first, last, report)
    return report


def chain_graph(ca_pipeline: str, krea_pipeline: str) -> dict[str, Any]:
    """source (unconnected: keeps the session in video mode) + ca -> krea -> sink."""
    return {
        "nodes": [
            {"id": "input", "type": "source", "source_mode": "video"},
            {"id": "ca", "type": "pipeline", "pipeline_id": ca_pipeline},
            {"id": "krea", "type": "pipeline", "pipeline_id": krea_pipeline},
            {"id": "output", "type": "sink"},
        ],
        "edges": [
            {"from": "ca", "from_port": "video", "to_node": "krea", "to_port": "video"},
            {"from": "krea", "from_port": "video", "to_node": "output", "to_port": "video"},
        ],
    }


def run_chain(args: argparse.Namespace) -> dict[str, Any]:
    """Our pipeline into Krea Realtime; skipped (not failed) when Krea's weights are absent."""
    pipeline = our_pipelines(args.url, args.dist, args.pipeline)[0]
    models = http_json("GET", f"{args.url}/api/v1/models/status?pipeline_id={args.krea}")
    if not models.get("downloaded"):
        return {"skipped": f"weights for '{args.krea}' are not downloaded", "models": models}
    deadline = time.monotonic() + args.timeout_s
    body = {"graph": chain_graph(pipeline, args.krea), "input_mode": "video"}
    http_json(
        "POST",
        f"{args.url}/api/v1/session/start",
        body,
        timeout_s=args.timeout_s,
        http_error_code=EXIT_CHAIN,
    )
    try:
        first, last = wait_moving_frames(args.url, deadline, EXIT_CHAIN, sink="output")
        report = {
            "pipelines": [pipeline, args.krea],
            "frame_bytes": len(last),
            **session_metrics(args.url),
        }
        report["gpu_processes"] = gpu_processes()
        if args.ctl:
            daemon = daemon_status(args.ctl, args.ring, 2.0)
            report["daemon"] = {
                "measured_fps": daemon.get("measured_fps"),
                "vram_mb": round(int(daemon.get("vram_bytes") or 0) / 2**20, 1),
            }
    finally:
        http_json("POST", f"{args.url}/api/v1/session/stop", http_error_code=EXIT_CHAIN)
    save_frames(args.frame_out, first, last, report)
    return report


def run_health(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "daemon": check_daemon(args.ctl, args.ring, args.sample_s, args.timeout_s),
        "scope": check_scope(args.url, args.dist, args.pipeline),
        "gpu_processes": gpu_processes(),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probe.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("health", "session", "chain"):
        p = sub.add_parser(name)
        p.add_argument("--url", default="http://127.0.0.1:8000", help="Scope base URL")
        p.add_argument("--dist", default="ca-server", help="our plugin's distribution name")
        p.add_argument("--pipeline", default=None, help="require this pipeline id")
        p.add_argument("--ctl", default=None, help="path of the ca-server executable")
        p.add_argument("--ring", default="gpu0", help="ring name of the daemon")
        p.add_argument("--sample-s", type=float, default=1.0, help="seconds between samples")
        p.add_argument("--timeout-s", type=float, default=5.0, help="overall timeout")
        p.add_argument("--frame-out", default=None, help="save the output JPEG here")
        p.add_argument("--krea", default="krea-realtime-video", help="Krea pipeline id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "health" and not args.ctl:
        print("probe.py health: --ctl PATH-TO-ca-server is required", file=sys.stderr)
        return EXIT_USAGE
    runner = {"health": run_health, "session": run_session, "chain": run_chain}[args.command]
    try:
        report = {"ok": True, args.command: runner(args)}
        code = EXIT_OK
    except ProbeFailure as failure:
        report = {"ok": False, "exit_code": failure.exit_code, "error": str(failure)}
        code = failure.exit_code
    print(json.dumps(report, sort_keys=True))
    return code


if __name__ == "__main__":
    sys.exit(main())
