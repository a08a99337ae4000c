#!/usr/bin/env bash
# Port of the selftests' test-close-socket-tcp.sh: close-socket.sh over TCP.
export SCENARIO=close-socket-tcp PROTO=tcp
exec "$(dirname "$0")/close-socket.sh"
