"""The control channel's sockets: the daemon's ROUTER endpoint and the clients' DEALER.

`ControlEndpoint` binds where the bind policy allows (ipc:// or loopback TCP), answers every
request through a table of handlers and never raises on bad input: a malformed request gets an
error reply or is dropped, a failing handler gets an INTERNAL reply. Replies are cached by
`(client, id)` so a retried request is applied once. `ControlClient` never hangs: every wait
has a deadline, sockets linger 0 and queue nothing towards an absent daemon (IMMEDIATE), and a
timed-out socket is closed and reopened before the retry (the zguide's Lazy Pirate). Both
classes belong to the thread that uses them; ZeroMQ sockets are not thread-safe. The encoding
lives in `protocol`; these sockets only move its bytes. This module is the public surface:
`ControlEndpoint` lives in `control_endpoint`, `ControlClient` in `control_client`, and the bind
policy with address parsing in `endpoint_addresses`.
"""

from __future__ import annotations

from ca_server.wire.control_client import ControlClient
from ca_server.wire.control_endpoint import ControlEndpoint
from ca_server.wire.endpoint_addresses import check_bind_endpoint, remove_stale_ipc_socket

__all__ = ["ControlClient", "ControlEndpoint", "check_bind_endpoint", "remove_stale_ipc_socket"]
