#!/usr/bin/env bash
# Port of the selftests' test-float.sh: clients change their transport address
# and the server's peers follow them.
# Runs the main scenario (main.sh) with FLOAT=1.
export SCENARIO=float FLOAT=1
exec "$(dirname "$0")/main.sh"
