"""A test stand-in for Daydream Scope (not on PyPI), written from its documented plugin
interface: the `scope` hook marker and spec, the pipeline/node base class, the config base
with `ui_field_config`, `ModeDefaults` and `UsageType`, and the input-source interface. It has
only what ca_scope_client touches; the call loop that drives pipelines is `scope_call_loop`.
"""
