#!/usr/bin/env bash
# Port of the selftests' test-tcp.sh: the main scenario over TCP (the server
# accepts one connection per client, each client connects).
# Runs the main scenario (main.sh) with PROTO=tcp.
export SCENARIO=tcp PROTO=tcp
exec "$(dirname "$0")/main.sh"
