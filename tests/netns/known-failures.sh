# shellcheck shell=bash
# Stages known to fail because of a gap in ovpnd or the ovpn CLI, each with
# the reason; FINDINGS.md has the commands, output and the spec's expectation.
# Format: expect_failure SCENARIO STAGE "reason" (SCENARIO "*" for all).
# Remove a line once its stage passes (the suite reports it as XPASS).

# (none open)
