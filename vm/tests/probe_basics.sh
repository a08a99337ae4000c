#!/bin/sh
# VM scenario: run nlprobe over probe_basics.nlp against the real ovpn
# family and keep its output in /out for the host-side checks.
set -u
nlprobe --wait-ms 3000 /files/probe_basics.nlp >"$OVPNVM_OUT/probe_basics.txt" 2>&1
status=$?
cat "$OVPNVM_OUT/probe_basics.txt"
exit "$status"
