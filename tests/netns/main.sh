#!/usr/bin/env bash
# The main scenario, a port of the kernel selftests' test.sh
# (kernel-behaviour §9.5) to ovpnd and the ovpn CLI. The variants set, as the
# selftests do, one variable and run this script:
#   PROTO=udp|tcp   transport (tcp.sh)
#   ALG=aes-gcm|chacha20-poly1305   cipher (chachapoly.sh)
#   FLOAT=1         clients change address, the server follows (float.sh)
#   MTU=1500        MTU of every ovpn device (large-mtu.sh)
# README.md maps every stage to the selftest step it ports.

SCENARIO=${SCENARIO:-main}
# shellcheck source=tests/netns/common.sh
. "$(dirname "$0")/common.sh"

PROTO=${PROTO:-udp}
ALG=${ALG:-aes-gcm}
FLOAT=${FLOAT:-0}
if [ "$PROTO" = tcp ]; then N=5; else N=6; fi
CLIENTS=()
for ((p = 1; p <= N; p++)); do CLIENTS+=("$p"); done
# How many pings each ping stage sends per client.
PINGS=${OVPN_NETNS_PINGS:-100}

# The later kernels' PEER_FLOAT_NTF (kernel-behaviour §11), off by default
# in ovpnd as in 6.16.
[ "$FLOAT" = 1 ] && OVPND_ARGS+=(--float-notifications)

log "transport $PROTO, cipher $ALG, float $FLOAT, MTU ${MTU:-default}, $N clients"

setup() {
    ensure_binaries || return 1
    make_key_file || return 1
    topology "$N" || return 1
    local p
    for ((p = 0; p <= N; p++)); do
        start_monitor "$p"
    done
    # Let the monitors join the peers group before anything can be removed.
    sleep 1
    for ((p = 0; p <= N; p++)); do
        kill -0 "${MONITOR_PID[p]}" || fail "monitor $p is not running" || return 1
    done
}

add_peers() {
    if [ "$PROTO" = tcp ]; then add_tcp_peers "$N"; else add_udp_peers "$N"; fi || return 1
    ovpn_ns 0 peer get tun0
}

add_keys() {
    install_keys "$ALG" primary 0 "${CLIENTS[@]}"
}

# The links as created: kind ovpn, the mode asked for, the MTU (default
# 1500 - 84 = 1416, kernel-behaviour §1.2), up; the kernel's view agrees.
links() {
    local p mode j
    for ((p = 0; p <= N; p++)); do
        mode=p2p
        [ "$p" = 0 ] && mode=mp
        j=$(ovpn_ns "$p" --json link show "tun$p") || return 1
        echo "$j"
        [ "$(pyj "d.get('kind'), d.get('mode'), d.get('mtu'), d.get('up')" <<<"$j")" = \
            "('ovpn', '$mode', ${MTU:-1416}, True)" ] || fail "tun$p: not ovpn/$mode/MTU ${MTU:-1416}/up" || return 1
        ip -n "$(ns "$p")" link show "tun$p" | grep -q " mtu ${MTU:-1416} " ||
            fail "ip link does not show MTU ${MTU:-1416} on tun$p" || return 1
    done
}

keepalive_60_120() {
    set_keepalive_both 60:120 "${CLIENTS[@]}" || return 1
    local j
    j=$(peer_json 0 tun0 1) || return 1
    echo "$j"
    [ "$(pyj "d['peer']['keepalive-interval'], d['peer']['keepalive-timeout']" <<<"$j")" = "(60, 120)" ] ||
        fail "server peer 1 does not report keepalive 60/120"
}

# MTU 1500 on the tunnels: a full-size inner packet with DF set crosses a
# 1500-byte veth only because the outer packet may fragment (§3.3).
ping_df_1500() {
    local p pids=() rc=0
    for p in "${CLIENTS[@]}"; do
        ping_from 0 "$(vpn_addr "$p")" "$PINGS" -s 1472 -M "do" >"$WORK/ping-df-$p.out" 2>&1 &
        pids+=($!)
    done
    for p in "${!pids[@]}"; do
        wait "${pids[p]}" || rc=1
        tail -n 2 "$WORK/ping-df-$((p + 1)).out"
    done
    return "$rc"
}

# Beyond the selftests (their tunnels carry IPv4 only): IPv6 inside the
# tunnel. The server gives every peer a VPN IPv6 address with PEER_SET (MP
# lookup by destination and RPF by source, §2.3–§2.5), the devices get
# 2001:db8:1::/64 addresses, and pings go both ways.
vpn6_addr() {
    echo "2001:db8:1::$(($1 + 1))"
}

vpn_ipv6() {
    local p rc=0
    ip -n "$(ns 0)" addr add "$(vpn6_addr 0)/64" dev tun0 nodad || return 1
    for p in "${CLIENTS[@]}"; do
        ovpn_ns 0 peer set tun0 --id "$p" --vpn-ipv6 "$(vpn6_addr "$p")" || return 1
        ip -n "$(ns "$p")" addr add "$(vpn6_addr "$p")/64" dev "tun$p" nodad || return 1
    done
    VPN6=1
    local -A pid=()
    for p in "${CLIENTS[@]}"; do
        { ping_from 0 "$(vpn6_addr "$p")" "$PINGS" -s 1400 && ping_from "$p" "$(vpn6_addr 0)" "$PINGS"; } \
            >"$WORK/ping6-$p.out" 2>&1 &
        pid[$p]=$!
    done
    for p in "${CLIENTS[@]}"; do
        wait "${pid[$p]}" || rc=1
        echo "client $p: $(grep -E 'packets transmitted' "$WORK/ping6-$p.out" | tr '\n' ' ')"
    done
    return "$rc"
}
VPN6=0

lan_ping() {
    ping_from 0 "$LAN_ADDR" "$PINGS"
}

# Selftests FLOAT=1: IPv4 clients move from .2 to .3 and ping; the server's
# peer follows them. IPv6 clients keep their address there.
float_move_ipv4() {
    local p
    for p in "${CLIENTS[@]}"; do
        is_ipv6_client "$p" && continue
        ip -n "$(ns "$p")" addr del "198.18.$p.2/24" dev "veth$p" || return 1
        ip -n "$(ns "$p")" addr add "198.18.$p.3/24" dev "veth$p" || return 1
    done
    FLOATED_IPV4=1
}

FLOATED_IPV4=0
FLOATED_IPV6=0

# Client P's transport address now (floats move it from host 2 to host 3).
current_client_addr() {
    local host=2
    if is_ipv6_client "$1"; then
        [ "$FLOATED_IPV6" = 1 ] && host=3
    else
        [ "$FLOATED_IPV4" = 1 ] && host=3
    fi
    client_addr "$1" "$host"
}

# The server's record of client P's transport address, "ADDR PORT".
server_remote_of() {
    peer_json 0 tun0 "$1" | pyj "d['peer'].get('remote-ipv4') or d['peer'].get('remote-ipv6'), d['peer'].get('remote-port')"
}

expect_remote() {
    local p=$1 addr=$2 got
    got=$(server_remote_of "$p") || return 1
    echo "peer $p: remote $got"
    [ "$got" = "('$addr', 1)" ] || fail "server peer $p remote is $got, expected $addr port 1"
}

float_remote_follows() {
    local p rc=0
    for p in "${CLIENTS[@]}"; do
        if is_ipv6_client "$p"; then
            expect_remote "$p" "2001:db8:0:$p::2" || rc=1
        else
            expect_remote "$p" "198.18.$p.3" || rc=1
        fi
    done
    return "$rc"
}

# Beyond the 6.16 selftests: IPv6 clients move too.
float_ipv6() {
    local p v6=()
    for p in "${CLIENTS[@]}"; do
        is_ipv6_client "$p" || continue
        v6+=("$p")
        ip -n "$(ns "$p")" addr del "2001:db8:0:$p::2/64" dev "veth$p" || return 1
        ip -n "$(ns "$p")" addr add "2001:db8:0:$p::3/64" dev "veth$p" nodad || return 1
    done
    FLOATED_IPV6=1
    ping_parallel client "$PINGS" 56 "${v6[@]}" || return 1
    for p in "${v6[@]}"; do
        expect_remote "$p" "2001:db8:0:$p::3" || return 1
    done
}

# ovpnd --float-notifications: one PEER_FLOAT_NTF per floated peer, with its
# new remote (the later selftests' JSON check, §9.7).
float_notifications() {
    cat "$WORK/monitor-0.jsonl"
    local p expect=()
    for p in "${CLIENTS[@]}"; do
        expect+=("$p:$(current_client_addr "$p")")
    done
    float_ntf_check "${expect[@]}"
}

iperf3_bulk() {
    in_ns 0 timeout 30 iperf3 -1 -s -B "$SERVER_VPN" >"$WORK/iperf3-server.out" 2>&1 &
    local server=$!
    own_pid "$server"
    wait_until 5 tcp_listening "$SERVER_VPN" 5201 || fail "iperf3 server not listening" || return 1
    in_ns 1 timeout 20 iperf3 -Z -t 3 --connect-timeout 3000 -c "$SERVER_VPN" || return 1
    wait "$server" || fail "iperf3 server: $(cat "$WORK/iperf3-server.out")"
}

# Selftests step 6, under traffic: every client gets key id 1 in its
# secondary slot and swaps; the server installs key id 1 as secondary and
# keeps sending with key id 0. A ping running throughout loses nothing.
key_rotation() {
    local count=$((PINGS * 5 / 2))
    ping_parallel server "$count" 56 "${CLIENTS[@]}" >"$WORK/rotation-ping.out" 2>&1 &
    local pings=$!
    sleep 0.5
    install_keys "$ALG" secondary 1 "${CLIENTS[@]}" || return 1
    local p
    for p in "${CLIENTS[@]}"; do
        ovpn_ns "$p" key swap "tun$p" --peer "$p" || return 1
    done
    echo "keys rotated, waiting for the pings"
    wait "$pings"
    local rc=$?
    cat "$WORK/rotation-ping.out"
    [ "$rc" = 0 ] || fail "pings lost during the key rotation"
}

# key_is P IFACE PEER SLOT KEY_ID: KEY_GET reports that key id and our cipher.
key_is() {
    local j
    j=$(ovpn_ns "$1" --json key get "$2" --peer "$3" --slot "$4") || return 1
    echo "$j"
    [ "$(pyj "d['keyconf']['key-id'], d['keyconf']['cipher-alg']" <<<"$j")" = "($5, '$ALG')" ] ||
        fail "$2 peer $3 $4 slot: expected key id $5 with $ALG"
}

peer_get() {
    local dump p2p expect=() p
    dump=$(ovpn_ns 0 --json peer get tun0) || return 1
    p2p=$(ovpn_ns 1 --json peer get tun1) || return 1
    echo "MP: $dump"
    echo "P2P: $p2p"
    for p in "${CLIENTS[@]}"; do
        local own6=-
        [ "$VPN6" = 1 ] && own6=$(vpn6_addr "$p")
        expect+=("$p,$(vpn_addr "$p"),$own6,$(server_addr "$p"),$(current_client_addr "$p")")
    done
    "$PYTHON" - "$PROTO" "$dump" "$p2p" "${expect[@]}" <<'EOF' || return 1
import json, sys
proto, dump, p2p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ok = True

def check(cond, what):
    global ok
    if not cond:
        ok = False
        print("check failed:", what)

peers = {e["peer"]["id"]: e["peer"] for e in dump}
want = [a.split(",") for a in sys.argv[4:]]
check(sorted(peers) == [int(w[0]) for w in want], f"MP dump lists peers {sorted(peers)}")
for pid, vpn, vpn6, local, remote in want:
    p = peers.get(int(pid), {})
    check(p.get("vpn-ipv4") == vpn, f"peer {pid}: vpn-ipv4 {p.get('vpn-ipv4')}, expected {vpn}")
    if vpn6 != "-":
        check(p.get("vpn-ipv6") == vpn6, f"peer {pid}: vpn-ipv6 {p.get('vpn-ipv6')}, expected {vpn6}")
    check(p.get("local-port") == 1, f"peer {pid}: local-port {p.get('local-port')}")
    fam = "ipv6" if ":" in remote else "ipv4"
    if proto == "udp":
        got = p.get("local-" + fam)
        check(got == local, f"peer {pid}: local-{fam} {got}, expected {local}")
        got = (p.get("remote-" + fam), p.get("remote-port"))
        check(got == (remote, 1), f"peer {pid}: remote {got}, expected {remote} port 1")
    else:
        check(not any(k.startswith("remote") for k in p), f"TCP peer {pid} reports a remote")
    for c in ("vpn-rx-packets", "vpn-tx-packets", "link-rx-packets", "link-tx-packets"):
        check(p.get(c, 0) > 0, f"peer {pid}: {c} is {p.get(c)} after traffic")
check([e["peer"]["id"] for e in p2p] == [1], "P2P dump of tun1 is not exactly peer 1")
sys.exit(0 if ok else 1)
EOF
    peer_json 0 tun0 1 | pyj "d['peer']['id']" | grep -qx 1 || fail "PEER_GET of peer 1" || return 1
    local err
    if err=$(ovpn_ns 0 peer get tun0 --id 10 2>&1); then
        fail "PEER_GET of the missing peer 10 succeeded: $err"
        return 1
    fi
    echo "peer 10: $err"
}

COUNTERS="vpn-rx-packets vpn-tx-packets link-rx-packets link-tx-packets vpn-rx-bytes"

counters_of() {
    peer_json "$1" "$2" "$3" | pyj "' '.join(str(d['peer'].get(c, -1)) for c in '$COUNTERS'.split())"
}

# Counters move by what the traffic explains: 50 pings from the server to
# client 1 are 50 packets each way on both ends (a few more tolerated for
# stray traffic such as keepalives or IPv6 housekeeping), and at least 84
# bytes of IP packet per ping.
counters() {
    local before_s before_c after_s after_c
    before_s=$(counters_of 0 tun0 1) && before_c=$(counters_of 1 tun1 1) || return 1
    ping_from 0 "$(vpn_addr 1)" 50 || return 1
    after_s=$(counters_of 0 tun0 1) && after_c=$(counters_of 1 tun1 1) || return 1
    echo "counters ($COUNTERS)"
    echo "server before $before_s / after $after_s"
    echo "client before $before_c / after $after_c"
    "$PYTHON" - "$before_s" "$after_s" "$before_c" "$after_c" <<'EOF'
import sys
names = ["vpn-rx-packets", "vpn-tx-packets", "link-rx-packets", "link-tx-packets", "vpn-rx-bytes"]
bs, as_, bc, ac = (list(map(int, a.split())) for a in sys.argv[1:5])
ok = True
for side, b, a in (("server", bs, as_), ("client", bc, ac)):
    for name, x, y in zip(names, b, a):
        delta = y - x
        lo, hi = (50 * 84, 60 * 1500) if name.endswith("bytes") else (50, 60)
        good = lo <= delta <= hi
        ok &= good
        print(f"{side} {name}: +{delta} ({'ok' if good else f'expected {lo}..{hi}'})")
sys.exit(0 if ok else 1)
EOF
}

# Keepalives keep an idle peer alive (§2.7): interval 1, timeout 3 on both
# ends of the last client, no traffic for 4.5 s. Both ends still have the
# peer, and each sent and received at least 3 keepalives, which count in
# the link counters only.
keepalive_keeps_alive() {
    local p=$N
    set_keepalive_both 1:3 "$p" || return 1
    local before_s before_c after_s after_c
    before_s=$(counters_of 0 tun0 "$p") && before_c=$(counters_of "$p" "tun$p" "$p") || return 1
    sleep 4.5
    after_s=$(counters_of 0 tun0 "$p") && after_c=$(counters_of "$p" "tun$p" "$p") || return 1
    set_keepalive_both 60:120 "$p" || return 1
    echo "counters ($COUNTERS)"
    echo "server before $before_s / after $after_s"
    echo "client before $before_c / after $after_c"
    if ! "$PYTHON" - "$before_s" "$after_s" "$before_c" "$after_c" <<'EOF'; then
import sys
bs, as_, bc, ac = (list(map(int, a.split())) for a in sys.argv[1:5])
ok = True
for side, b, a in (("server", bs, as_), ("client", bc, ac)):
    d = [y - x for x, y in zip(b, a)]
    sent, received = d[3] - d[1], d[2] - d[0]
    print(f"{side}: keepalives sent {sent}, received {received}")
    ok &= sent >= 3 and received >= 3
sys.exit(0 if ok else 1)
EOF
        fail "fewer than 3 keepalives each way"
        return 1
    fi
    if peer_absent 0 tun0 "$p" || peer_absent "$p" "tun$p" "$p"; then
        fail "peer $p expired although keepalives flowed"
    fi
}

# Selftests step 8 with the notification the later selftests check.
peer_del() {
    ovpn_ns 0 peer del tun0 --id 1 || return 1
    ntf_wait 3 0:1:userspace || return 1
    peer_absent 0 tun0 1 || fail "peer 1 still on the server" || return 1
    ovpn_ns 1 peer del tun1 --id 1 || return 1
    ntf_wait 3 1:1:userspace || return 1
    peer_absent 1 tun1 1 || fail "peer 1 still on client 1" || return 1
    if in_ns 0 ping -q -n -c 1 -w 1 "$(vpn_addr 1)"; then
        fail "client 1 still answers through the server"
    fi
}

# Selftests step 9.
key_get_both_slots() {
    local p
    for p in "${CLIENTS[@]:1}"; do
        key_is "$p" "tun$p" "$p" primary 1 || return 1
        key_is "$p" "tun$p" "$p" secondary 0 || return 1
    done
    # The server did not swap.
    key_is 0 tun0 2 primary 0 && key_is 0 tun0 2 secondary 1
}

# Selftests step 10: the server deletes peer 2 while client 2 sends to it.
peer_del_under_traffic() {
    in_ns 2 timeout 10 ping -q -n -i 0.01 -w 4 "$SERVER_VPN" >"$WORK/ping-del.out" 2>&1 &
    local pings=$!
    sleep 2
    ovpn_ns 0 peer del tun0 --id 2 || return 1
    ntf_wait 3 0:2:userspace || return 1
    peer_absent 0 tun0 2 || fail "peer 2 still on the server" || return 1
    if ! ovpn_ns 2 peer del tun2 --id 2; then
        # The selftest tolerates this failure over TCP.
        [ "$PROTO" = tcp ] || return 1
        echo "client 2 had already lost its peer (tolerated over TCP)"
    fi
    peer_absent 2 tun2 2 || fail "peer 2 still on client 2" || return 1
    wait "$pings"
    cat "$WORK/ping-del.out"
}

# Selftests step 11, and the slots are really empty afterwards.
key_del() {
    local p slot
    for p in "${CLIENTS[@]:2}"; do
        for slot in primary secondary; do
            ovpn_ns "$p" key del "tun$p" --peer "$p" --slot "$slot" || return 1
            if ovpn_ns "$p" key get "tun$p" --peer "$p" --slot "$slot" 2>&1; then
                fail "client $p: $slot slot still has a key"
                return 1
            fi
        done
    done
}

# expired_on server|clients: what the monitors must show once peers 3…N
# expired on that side.
expired_on() {
    local p
    for p in "${CLIENTS[@]:2}"; do
        if [ "$1" = server ]; then echo "0:$p:expired"; else echo "$p:$p:expired"; fi
    done
}

# Selftests step 12: keepalive 3/3 on the server, off on the clients (which
# have no keys left): the server's peers expire.
expiry_server() {
    local p
    for p in "${CLIENTS[@]:2}"; do
        ovpn_ns 0 peer set tun0 --id "$p" --keepalive 3:3 || return 1
        ovpn_ns "$p" peer set "tun$p" --id "$p" --keepalive 0:0 || return 1
    done
    # shellcheck disable=SC2046 # one expectation per word
    ntf_wait 10 $(expired_on server) || return 1
    for p in "${CLIENTS[@]:2}"; do
        peer_absent 0 tun0 "$p" || fail "server peer $p still present" || return 1
        ! peer_absent "$p" "tun$p" "$p" || fail "client $p lost its peer (keepalive was off)" || return 1
    done
}

# Selftests step 13: now the clients' peers expire.
expiry_clients() {
    local p
    for p in "${CLIENTS[@]:2}"; do
        ovpn_ns "$p" peer set "tun$p" --id "$p" --keepalive 3:3 || return 1
    done
    # shellcheck disable=SC2046
    ntf_wait 10 $(expired_on clients) || return 1
    for p in "${CLIENTS[@]:2}"; do
        peer_absent "$p" "tun$p" "$p" || fail "client $p still has its peer" || return 1
    done
}

# The later selftests' notification check: every namespace saw exactly one
# peer-del-ntf per peer it had, with the expected reason, and nothing else.
notifications() {
    local p want expect=()
    for ((p = 0; p <= N; p++)); do
        echo "namespace $p:"
        cat "$WORK/monitor-$p.jsonl"
    done
    for p in "${CLIENTS[@]}"; do
        case $p in
            1 | 2) want=userspace ;;
            *) want=expired ;;
        esac
        expect+=("0:$p:$want")
        # The selftest tolerates client 2 losing its peer first over TCP.
        [ "$PROTO" = tcp ] && [ "$p" = 2 ] && want="*"
        expect+=("$p:$p:$want")
    done
    ntf_check --only "${expect[@]}"
}

required_stage topology setup
required_stage peers add_peers
required_stage keys add_keys
stage links links
stage keepalive-60-120 keepalive_60_120
required_stage ping-server-to-clients ping_parallel server "$PINGS" 56 "${CLIENTS[@]}"
stage ping-large-server-to-clients ping_parallel server "$PINGS" 3000 "${CLIENTS[@]}"
stage ping-clients-to-server ping_parallel client "$PINGS" 56 "${CLIENTS[@]}"
stage ping-large-clients-to-server ping_parallel client "$PINGS" 3000 "${CLIENTS[@]}"
[ -n "${MTU:-}" ] && stage ping-df-1500-server-to-clients ping_df_1500
stage ping-lan-behind-client1 lan_ping
stage vpn-ipv6-ping-both-ways vpn_ipv6
if [ "$FLOAT" = 1 ]; then
    required_stage float-move-ipv4 float_move_ipv4
    stage float-ping-clients-to-server ping_parallel client "$PINGS" 56 "${CLIENTS[@]}"
    stage float-server-follows float_remote_follows
    stage float-ping-server-to-clients ping_parallel server "$PINGS" 56 "${CLIENTS[@]}"
    stage float-ipv6 float_ipv6
    stage float-notifications float_notifications
fi
stage iperf3-tcp-3s iperf3_bulk
stage key-rotation-under-traffic key_rotation
stage peer-get peer_get
stage counters counters
case $SCENARIO in
    main | tcp) stage keepalive-keeps-idle-peer keepalive_keeps_alive ;;
esac
stage peer-del peer_del
stage key-get-both-slots key_get_both_slots
stage peer-del-under-traffic peer_del_under_traffic
stage key-del key_del
stage keepalive-expiry-server expiry_server
stage keepalive-expiry-clients expiry_clients
stage notifications notifications
finish
