#!/bin/sh
# VM scenario: ovpn devices made with iproute2 in P2P, MP and default mode
# have the static properties of spec/kernel-behaviour.md §1.2 (mtu 1416,
# minmtu 68, maxmtu 65451, POINTOPOINT and NOARP) and report their mode.
set -u
fail=0

check() { # check DEV PATTERN: the `ip -d link` line(s) of DEV must match
    if ! grep -q -- "$2" "$OVPNVM_OUT/$1.txt"; then
        echo "FAIL $1: no '$2' in: $(cat "$OVPNVM_OUT/$1.txt")"
        fail=1
    fi
}

ip link add ovpn-p2p type ovpn mode p2p || fail=1
ip link add ovpn-mp type ovpn mode mp || fail=1
ip link add ovpn-def type ovpn || fail=1

for dev in ovpn-p2p ovpn-mp ovpn-def; do
    ip -d link show dev "$dev" >"$OVPNVM_OUT/$dev.txt" 2>&1
    cat "$OVPNVM_OUT/$dev.txt"
    check "$dev" "<POINTOPOINT,NOARP>"
    check "$dev" " mtu 1416 "
    check "$dev" "minmtu 68 maxmtu 65451"
    check "$dev" "link/none"
done
check ovpn-p2p "ovpn mode p2p "
check ovpn-mp "ovpn mode mp "
check ovpn-def "ovpn mode p2p "

# The mode is fixed at creation: there is no changelink.
if ip link set ovpn-mp type ovpn mode p2p 2>"$OVPNVM_OUT/changelink.txt"; then
    echo "FAIL: changing the mode of ovpn-mp was accepted"
    fail=1
fi
cat "$OVPNVM_OUT/changelink.txt"

# MTU range (§1.2): 68 and 65451 accepted, 67 and 65452 refused.
for mtu in 68 65451; do
    ip link set ovpn-p2p mtu "$mtu" || { echo "FAIL: mtu $mtu refused"; fail=1; }
done
for mtu in 67 65452; do
    if ip link set ovpn-p2p mtu "$mtu" 2>/dev/null; then
        echo "FAIL: mtu $mtu accepted"
        fail=1
    fi
done

[ "$fail" = 0 ] && echo "link modes: ok"
exit "$fail"
