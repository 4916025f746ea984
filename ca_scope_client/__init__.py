"""The Daydream Scope plugin for ca-server: shows a daemon's frames as the "Cellular Automata"
pipeline and as an input source, and forwards preset, speed, hue, brightness and reseed.

Only `plugin.py`, `schema.py`, `pipeline.py` and `input_source.py` import Scope; the core
(`frame_source`, `control_forwarder`, `placeholder`) needs only numpy and `ca_server.wire`, and
nothing here imports cupy, scipy or the simulation engines. This package itself imports nothing.
"""
