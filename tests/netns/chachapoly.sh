#!/usr/bin/env bash
# Port of the selftests' test-chachapoly.sh: the main scenario with
# ChaCha20-Poly1305 keys.
# Runs the main scenario (main.sh) with ALG=chacha20-poly1305.
export SCENARIO=chachapoly ALG=chacha20-poly1305
exec "$(dirname "$0")/main.sh"
