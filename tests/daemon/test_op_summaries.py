"""Each op's one-line summary in `protocol.OPS` (shown by `--help` and in the docs) says what the
daemon's handler does: a real `CAServer` (numpy, 64 px, real ring and control socket) answers
each op through its handler table, and a real `RingReader` watches the ring."""

from __future__ import annotations

import re
import time

from ca_server.config import ServerConfig
from ca_server.server import CAServer
from ca_server.wire.protocol import OPS, validate_args
from ca_server.wire.ring import RingReader, RingStatus

SIZE = 64


def named_keys(summary: str) -> set[str] | None:
    """The reply keys a summary promises with "answers {a, b}", or None when it names none."""
    found = re.search(r"answers \{([^}]*)\}", summary)
    return {key.strip() for key in found.group(1).split(",")} if found else None


def test_summaries_name_what_the_handlers_reply_and_do(runtime_dir) -> None:
    config = ServerConfig(backend="numpy", width=SIZE, height=SIZE, name="summaries")
    server = CAServer(config.resolved("numpy"), _backend())
    reader = RingReader("summaries")
    try:
        handlers = server._handlers()
        assert set(handlers) == set(OPS)
        replies = {}
        for op in ("hello", "ping", "status", "presets"):
            replies[op] = handlers[op](validate_args(op, {}))
        for op, reply in replies.items():
            promised = named_keys(OPS[op].summary)
            if promised is not None:
                assert promised == set(reply), (op, OPS[op].summary, sorted(reply))
        assert named_keys(OPS["ping"].summary) is not None, "ping's summary names its reply"
        for row_key in replies["presets"][0]:
            assert row_key in OPS["presets"].summary, ("presets", row_key)
        for word in ("version", "protocol", "ring"):
            assert word in OPS["hello"].summary and any(word in key for key in replies["hello"])

        reader.attach()
        server._produce_frame()
        assert len(reader.read_new(1).pixels) == 1
        handlers["pause"](validate_args("pause", {}))
        step = server.simulation.sim_step
        deadline = time.monotonic() + 10  # the reader looks at the state word a few times a second
        paused = reader.read_new(1)
        while paused.status != RingStatus.PAUSED and time.monotonic() < deadline:
            time.sleep(0.02)
            paused = reader.read_new(1)
        # The loop neither steps nor publishes while paused (run() calls heartbeat instead).
        assert server.paused and paused.status == RingStatus.PAUSED and len(paused.pixels) == 0
        assert "PAUSED" in OPS["pause"].summary and "no new frames" in OPS["pause"].summary
        assert server.simulation.sim_step == step
        handlers["resume"](validate_args("resume", {}))
        server._produce_frame()
        assert len(reader.read_new(1).pixels) == 1
        assert "publish" in OPS["resume"].summary
    finally:
        reader.close()
        server.close()


def _backend():
    from ca_server.xp import numpy_backend

    return numpy_backend(fft_workers=1)
