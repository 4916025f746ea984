"""ca-server: a live cellular-automaton video source for Daydream Scope.

The daemon (`ca-server serve`) runs the simulation on CuPy or numpy and publishes RGB frames into
a shared-memory ring; `ca_server.wire` is the wire format both the daemon and its clients import.
"""

__version__ = "0.1.0"
