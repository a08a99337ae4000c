#!/bin/sh
# VM scenario for --net: ping the host end of the tap (IPv4 and IPv6), then
# wait until the host has pinged us (the kernel's ICMP counters say so).
set -u
fail=0

ok=0
for _ in $(seq 1 30); do
    if ping -c 1 -W 1 "$OVPNVM_HOST_IP4" >/dev/null 2>&1; then ok=1; break; fi
done
[ "$ok" = 1 ] && echo "vm -> host $OVPNVM_HOST_IP4: ok" || { echo "FAIL vm -> host ipv4"; fail=1; }

ok=0
for _ in $(seq 1 30); do
    if ping -6 -c 1 -W 1 "$OVPNVM_HOST_IP6" >/dev/null 2>&1; then ok=1; break; fi
done
[ "$ok" = 1 ] && echo "vm -> host $OVPNVM_HOST_IP6: ok" || { echo "FAIL vm -> host ipv6"; fail=1; }

# InEchos is the 9th counter of the Icmp line in /proc/net/snmp.
in_echos() { awk '/^Icmp: [0-9]/ { print $10 }' /proc/net/snmp; }
seen=0
for _ in $(seq 1 60); do
    if [ "$(in_echos)" -gt 0 ]; then seen=1; break; fi
    sleep 0.5
done
[ "$seen" = 1 ] && echo "host -> vm echo requests seen: $(in_echos)" \
    || { echo "FAIL: no echo request from the host"; fail=1; }
ip -s link show dev eth0 >"$OVPNVM_OUT/eth0.txt"
exit "$fail"
