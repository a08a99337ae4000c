#!/usr/bin/env bash
# Port of the selftests' test-close-socket.sh (kernel-behaviour §9.6), UDP by
# default, TCP with PROTO=tcp (close-socket-tcp.sh): the same topology,
# peers, keys and traffic as the main scenario, then the processes holding
# the transport sockets are killed while pings run. Every peer must go with
# reason transport-disconnect (§2.8, §3.3, §3.4), seen on each side's
# monitor, and the daemons must let go of the sockets.

SCENARIO=${SCENARIO:-close-socket}
# shellcheck source=tests/netns/common.sh
. "$(dirname "$0")/common.sh"

PROTO=${PROTO:-udp}
ALG=aes-gcm
if [ "$PROTO" = tcp ]; then N=5; else N=6; fi
CLIENTS=()
for ((p = 1; p <= N; p++)); do CLIENTS+=("$p"); done

log "transport $PROTO, $N clients"

setup() {
    ensure_binaries && make_key_file && topology "$N" || return 1
    local p
    for ((p = 0; p <= N; p++)); do
        start_monitor "$p"
    done
    sleep 1
}

add_peers() {
    if [ "$PROTO" = tcp ]; then add_tcp_peers "$N"; else add_udp_peers "$N"; fi
}

iperf3_bulk() {
    in_ns 0 timeout 30 iperf3 -1 -s -B "$SERVER_VPN" >"$WORK/iperf3-server.out" 2>&1 &
    local server=$!
    own_pid "$server"
    wait_until 5 tcp_listening "$SERVER_VPN" 5201 || fail "iperf3 server not listening" || return 1
    in_ns 1 timeout 20 iperf3 -Z -t 3 --connect-timeout 3000 -c "$SERVER_VPN" || return 1
    wait "$server"
}

# Kills every holder at once while the server pings every client.
close_under_traffic() {
    local p pings=()
    for p in "${CLIENTS[@]}"; do
        in_ns 0 timeout 10 ping -q -n -i 0.01 -w 5 "$(vpn_addr "$p")" >"$WORK/ping-close-$p.out" 2>&1 &
        pings+=($!)
    done
    sleep 1
    local holders
    holders=$(holder_pids) || return 1
    echo "killing the socket holders: ${holders//$'\n'/ }"
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $holders || return 1
    local rc=0 expect=()
    for p in "${CLIENTS[@]}"; do
        expect+=("0:$p:transport-disconnect" "$p:$p:transport-disconnect")
    done
    ntf_wait 5 "${expect[@]}" || rc=1
    for ((p = 0; p <= N; p++)); do
        echo "namespace $p:"
        cat "$WORK/monitor-$p.jsonl"
    done
    wait "${pings[@]}"
    for p in "${CLIENTS[@]}"; do
        grep -E 'packets transmitted' "$WORK/ping-close-$p.out"
    done
    [ "$rc" = 0 ] || fail "not every peer removed with reason transport-disconnect within 5 s"
}

# Nothing else was removed, and on every side no peer is left.
peers_gone() {
    local p dump
    for ((p = 0; p <= N; p++)); do
        dump=$(ovpn_ns "$p" --json peer get "tun$p") || return 1
        [ "$dump" = "[]" ] || fail "namespace $p still has peers: $dump" || return 1
    done
    local expect=()
    for p in "${CLIENTS[@]}"; do
        expect+=("0:$p:*" "$p:$p:*")
    done
    ntf_check --only "${expect[@]}"
}

# The daemons dropped their copies of the sockets: nothing is bound to or
# connected on port 1 any more, in any namespace.
sockets_released() {
    local p left
    for ((p = 0; p <= N; p++)); do
        left=$(in_ns "$p" ss -Hanu "( sport = :1 )"; in_ns "$p" ss -Hant "( sport = :1 or dport = :1 )" |
            grep -v -E '^(TIME-WAIT|FIN-WAIT|CLOSE-WAIT|LAST-ACK|CLOSING)')
        [ -z "$left" ] || {
            echo "namespace $p: $left"
            return 1
        }
    done
}

required_stage topology setup
required_stage peers add_peers
required_stage keys install_keys "$ALG" primary 0 "${CLIENTS[@]}"
stage keepalive-60-120 set_keepalive_both 60:120 "${CLIENTS[@]}"
stage ping-server-to-clients ping_parallel server 100 56 "${CLIENTS[@]}"
stage iperf3-tcp-3s iperf3_bulk
stage close-sockets-under-traffic close_under_traffic
stage peers-gone peers_gone
stage sockets-released wait_until 5 sockets_released
finish
