#!/bin/sh
# VM scenario for the parity suite: the loopback addresses the cases use,
# then nlprobe over the generated case script (one boot, all cases).
set -u
ip link set lo up
ip addr add 198.18.0.1/32 dev lo
ip -6 addr add 2001:db8::1/128 dev lo nodad
nlprobe --wait-ms 3000 /files/cases.nlp >"$OVPNVM_OUT/kernel.txt" 2>&1 </dev/null
status=$?
echo "nlprobe exit status $status"
exit "$status"
