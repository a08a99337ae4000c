#!/usr/bin/env bash
# Control packets (kernel-behaviour §3.3, §3.4; docs/control-transport.md,
# "Control packets"). In the kernel, a packet that is not DATA_V2 stays on the
# transport socket for the control plane; ovpnd reads the socket itself and
# must hand each such packet back exactly once, unchanged, with its source.
# The holders run in the foreground with --print-control --json and print
# every control packet they get; Python (stdlib only) sends packets from the
# other side's transport address. Packets the kernel drops (DATA_V2 for an
# unknown peer or failing authentication, DATA_V1, runts) must not show up.
# The selftests' counterpart is the 1002-byte control frame `connect` sends
# over TCP, which the server's `listen` must read (§9.4).

SCENARIO=${SCENARIO:-control}
# shellcheck source=tests/netns/common.sh
. "$(dirname "$0")/common.sh"

N=2
IPV6_FROM=2
CLIENTS=(1 2)
# Control packets each holder has been sent so far.
declare -A SENT=([0]=0 [1]=0 [2]=0 [tcp]=0)

log "UDP (IPv4 and IPv6 transport) and TCP, $N clients"

# hold P NAME ARGS...: an ovpn command that holds its socket in the
# foreground, printing control packets as JSON to control-NAME.out.
hold() {
    hold_start "$@" && hold_ready "$2"
}

hold_start() {
    local p=$1 name=$2
    shift 2
    timeout "$MONITOR_SECONDS" ip netns exec "$(ns "$p")" \
        "$OVPN" --backend daemon --daemon-dir "$(rundir "$p")" --json "$@" --print-control \
        >"$WORK/control-$name.out" 2>"$WORK/control-$name.err" &
    own_pid $!
}

# Waits (bounded) for holder NAME to announce that its peers are added.
hold_ready() {
    wait_until 15 grep -q '"pid"' "$WORK/control-$1.out" ||
        fail "holder $1 did not add its peers: $(cat "$WORK/control-$1.err")"
}

setup() {
    ensure_binaries && make_key_file && topology "$N" && make_udp_peers_file "$N" || return 1
    start_monitor 0
    start_monitor 1
    sleep 1
}

add_peers() {
    hold 0 0 peer new-multi tun0 --udp --bind 1 --peers-file "$WORK/udp_peers.txt" || return 1
    local p
    for p in "${CLIENTS[@]}"; do
        hold "$p" "$p" peer new "tun$p" --id "$p" --udp --bind 1 \
            --remote "$(sockaddr "$(server_addr "$p")" 1)" || return 1
    done
}

data_flows() {
    ping_parallel server 50 56 "${CLIENTS[@]}" && ping_parallel client 50 1400 "${CLIENTS[@]}"
}

# send_udp P SRC_ADDR SRC_PORT DST_ADDR DST_PORT HEX: one datagram from
# namespace P, from SRC_ADDR:SRC_PORT (bound with SO_REUSEADDR and
# SO_REUSEPORT next to the holder's socket).
send_udp() {
    in_ns "$1" timeout 5 "$PYTHON" - "${@:2}" <<'EOF'
import socket, sys
src, sport, dst, dport, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), bytes.fromhex(sys.argv[5])
family = socket.AF_INET6 if ":" in src else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((src, sport))
s.sendto(payload, (dst, dport))
s.close()
EOF
}

random_hex() {
    head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# control_count NAME FROM HEX: how many control packets holder NAME printed
# from the address FROM ("ADDR:PORT", or "ADDR:*" for any port) with exactly
# these bytes (an IPv4-mapped IPv6 source counts as the IPv4 address).
control_count() {
    "$PYTHON" - "$WORK/control-$1.out" "$2" "$3" <<'EOF'
import ipaddress, json, sys
path, want_from, want_hex = sys.argv[1:4]

def split(addr):
    host, _, port = addr.rpartition(":")
    ip = ipaddress.ip_address(host.strip("[]"))
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip, port

want_ip, want_port = split(want_from)
n = 0
for line in open(path):
    m = json.loads(line)
    if "payload" not in m:
        continue
    ip, port = split(m["from"])
    if ip == want_ip and want_port in ("*", port) and m["payload"] == want_hex:
        n += 1
print(n)
EOF
}

# Lines that are control packets in holder NAME's output (the datagram
# sent after the detach aside: udp-detached-holder-prints counts that one).
control_lines() {
    grep '"payload"' "$WORK/control-$1.out" | grep -c -v -F "\"${DETACHED_DATA:-none}\""
}

control_arrived() {
    [ "$(control_count "$@")" -ge 1 ]
}

# expect_control NAME FROM HEX: the packet arrives once (within 5 s).
expect_control() {
    wait_until 5 control_arrived "$@"
    local n
    n=$(control_count "$@")
    echo "holder $1: $n x from $2: $3"
    [ "$n" = 1 ] || fail "holder $1 printed the packet from $2 $n times; output: $(cat "$WORK/control-$1.out")"
}

# udp_control HOLDER P SRC SPORT DST: a control packet (opcode 7,
# P_CONTROL_HARD_RESET_CLIENT_V2, key id 0 → first byte 0x38) from
# SRC:SPORT in namespace P to DST:1; HOLDER must print it.
udp_control() {
    local holder=$1 p=$2 src=$3 sport=$4 dst=$5 hex
    hex=38$(random_hex 25)
    send_udp "$p" "$src" "$sport" "$dst" 1 "$hex" || return 1
    SENT[$holder]=$((SENT[$holder] + 1))
    expect_control "$holder" "$(sockaddr "$src" "$sport")" "$hex"
}

# Packets the kernel drops must not reach the control plane; a control
# packet sent after them marks the point where they would have arrived.
udp_dropped_not_handed_up() {
    local a=198.18.1.2 dst=198.18.1.1
    send_udp 1 "$a" 1 "$dst" 1 "48000063$(random_hex 40)" || return 1 # DATA_V2, unknown peer 99
    send_udp 1 "$a" 1 "$dst" 1 "48000001$(random_hex 40)" || return 1 # DATA_V2, peer 1, bad tag
    send_udp 1 "$a" 1 "$dst" 1 "30$(random_hex 40)" || return 1       # DATA_V1
    send_udp 1 "$a" 1 "$dst" 1 "4800" || return 1                     # shorter than 4 bytes
    udp_control 0 1 "$a" 1 "$dst" || return 1
    local lines
    lines=$(control_lines 0)
    [ "$lines" = "${SENT[0]}" ] ||
        fail "server printed $lines control packets, ${SENT[0]} were sent: $(cat "$WORK/control-0.out")"
}

# Exactly once, nothing else: each holder printed as many packets as it was
# sent, after the data traffic of the other stages.
exactly_once() {
    local name rc=0
    for name in 0 1 2 tcp; do
        [ -e "$WORK/control-$name.out" ] || continue
        echo "holder $name: $(control_lines "$name") printed, ${SENT[$name]} sent"
        [ "$(control_lines "$name")" = "${SENT[$name]}" ] || rc=1
    done
    return "$rc"
}

# TCP: the server accepts one connection for peer 3 with --print-control; a
# plain TCP client (Python) sends a control frame, a 2-byte length and the
# packet, then a second one split over two writes. Both must arrive whole.
tcp_control() {
    hold_start 0 tcp peer new tun0 --id 3 --tcp-listen 198.18.1.1:2 --vpn-ipv4 198.19.0.9 \
        --connect-timeout 15
    wait_until 10 tcp_listening 198.18.1.1 2 || fail "server not listening on 198.18.1.1:2" || return 1
    local one two
    one=38$(random_hex 30)
    two=20$(random_hex 997)
    in_ns 1 timeout 15 "$PYTHON" - "$one" "$two" >"$WORK/tcp-client.out" 2>&1 <<'EOF' &
import socket, sys, time
frames = [bytes.fromhex(h) for h in sys.argv[1:]]
s = socket.create_connection(("198.18.1.1", 2), timeout=5)
print(s.getsockname()[1], flush=True)
s.sendall(len(frames[0]).to_bytes(2, "big") + frames[0])
time.sleep(0.3)
wire = len(frames[1]).to_bytes(2, "big") + frames[1]
s.sendall(wire[:500])
time.sleep(0.3)
s.sendall(wire[500:])
time.sleep(5)
s.close()
EOF
    local client=$!
    own_pid "$client"
    hold_ready tcp || return 1
    SENT[tcp]=2
    expect_control tcp "198.18.1.2:*" "$one" && expect_control tcp "198.18.1.2:*" "$two"
    local rc=$?
    wait "$client"
    return "$rc"
}

# §2.8 / §3.5: once the last peer of a UDP socket is gone the socket is
# detached and works as a plain UDP socket again: everything that arrives,
# DATA_V2 included, reaches its owner. Client 2 deletes its only peer and
# the server sends a DATA_V2-looking datagram to client 2's socket.
DETACHED_DATA=

# The daemon lets go: the datagram is left to the socket's owner (it sits in
# the socket's receive queue, or the holder already printed it).
udp_detached_daemon_lets_go() {
    ovpn_ns 2 peer del tun2 --id 2 || return 1
    DETACHED_DATA=48000002$(random_hex 40)
    send_udp 0 2001:db8:0:2::1 1 2001:db8:0:2::2 1 "$DETACHED_DATA" || return 1
    detached_datagram_left
}

detached_datagram_left() {
    local queued
    queued=$(in_ns 2 ss -Hnu state all "( sport = :1 )" | awk '{ s += $2 } END { print s + 0 }')
    echo "client 2: $queued bytes queued on port 1; printed $(control_count 2 "[2001:db8:0:2::1]:1" "$DETACHED_DATA") times"
    [ "$queued" -gt 0 ] || control_arrived 2 "[2001:db8:0:2::1]:1" "$DETACHED_DATA"
}

# The holder (the control plane) gets it, as it would from the kernel.
udp_detached_holder_prints() {
    [ -n "$DETACHED_DATA" ] || fail "no datagram was sent" || return 1
    expect_control 2 "[2001:db8:0:2::1]:1" "$DETACHED_DATA"
}

# Selftests step 14 (teardown), observed: deleting a device removes its
# peers with reason teardown, one PEER_DEL_NTF each (§1.4, §2.8), and the
# device is gone for both the CLI and the kernel.
link_del_teardown() {
    ovpn_ns 0 link del tun0 || return 1
    ovpn_ns 1 link del tun1 || return 1
    ntf_wait 5 --only 0:1:teardown 0:2:teardown 0:3:teardown 1:1:teardown || return 1
    local p
    for p in 0 1; do
        if ovpn_ns "$p" link show "tun$p" 2>&1; then
            fail "ovpn link show still finds tun$p"
            return 1
        fi
        if ip -n "$(ns "$p")" link show "tun$p" 2>/dev/null; then
            fail "tun$p still exists"
            return 1
        fi
    done
}

required_stage topology setup
required_stage peers add_peers
required_stage keys install_keys aes-gcm primary 0 "${CLIENTS[@]}"
stage data-flows data_flows
stage udp-ipv4-client-to-server udp_control 0 1 198.18.1.2 1 198.18.1.1
stage udp-ipv4-unknown-source udp_control 0 1 198.18.1.2 4000 198.18.1.1
stage udp-ipv6-client-to-server udp_control 0 2 2001:db8:0:2::2 1 2001:db8:0:2::1
stage udp-ipv4-server-to-client udp_control 1 0 198.18.1.1 1 198.18.1.2
stage udp-ipv6-server-to-client udp_control 2 0 2001:db8:0:2::1 1 2001:db8:0:2::2
stage udp-dropped-not-handed-up udp_dropped_not_handed_up
stage tcp-control-frames tcp_control
stage data-flows-after data_flows
stage udp-detached-daemon-lets-go udp_detached_daemon_lets_go
stage udp-detached-holder-prints udp_detached_holder_prints
stage exactly-once exactly_once
stage link-del-teardown link_del_teardown
finish
