"""`python -m ca_server.cli`: the same as the `ca-server` command."""

from ca_server.cli import main

main()
