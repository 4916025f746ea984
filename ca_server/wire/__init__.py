"""The wire format, imported by both sides: the shared-memory frame ring and the control protocol.

Imports only the standard library, numpy, msgpack and pyzmq (a subprocess test proves it), so the
Scope plugin can use it inside Scope's process without pulling in the simulation.
"""
