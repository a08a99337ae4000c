#!/usr/bin/env bash
# Port of the selftests' test-large-mtu.sh: every ovpn device has MTU 1500, so
# large pings fragment the outer packets.
# Runs the main scenario (main.sh) with MTU=1500.
export SCENARIO=large-mtu MTU=1500
exec "$(dirname "$0")/main.sh"
