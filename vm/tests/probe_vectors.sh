#!/bin/sh
# VM scenario: run nlprobe over every /files/*.nlp script, in name order, in
# this one boot, against the real ovpn family; each transcript goes to
# /out/NAME.txt for the host-side checks.
set -u
status=0
for script in /files/*.nlp; do
    name=$(basename "$script" .nlp)
    nlprobe --wait-ms 3000 "$script" >"$OVPNVM_OUT/$name.txt" 2>&1 || status=1
    echo "=== $name"
    cat "$OVPNVM_OUT/$name.txt"
done
exit "$status"
