# shellcheck shell=bash
# Helpers shared by the namespace scenarios (sourced, never run).
#
# What lives here: stage accounting (PASS / FAIL / XFAIL per stage and the
# final "N passed, N failed" line), the processes and namespaces a scenario
# owns and their cleanup, and the topology of the kernel selftests
# (kernel-behaviour §9.5) rebuilt on our address plan:
#
#   namespace <prefix>-peer0   server, MP device tun0, VPN 198.19.0.1/24
#   namespace <prefix>-peerP   client P, P2P device tunP, VPN 198.19.0.(P+1)/24
#   veth pair vethP            server end 198.18.P.1/24 + 2001:db8:0:P::1/64,
#                              client end 198.18.P.2/24 + 2001:db8:0:P::2/64
#   LAN behind client 1        198.19.1.1 on tun1, server route via 198.19.0.2
#
# Every namespace runs its own ovpnd with its own run directory; every ovpn
# command is pointed at that directory explicitly, so a kernel ovpn module on
# the host is never used by mistake.

set -u -o pipefail

NETNS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$NETNS_DIR/../.." && pwd)
SCENARIO=${SCENARIO:-$(basename "${0%.sh}")}

# Per-run names: namespaces, temporary directory.
PREFIX="ovpnt$$"
WORK=$(mktemp -d "/tmp/ovpnt.$$.XXXXXX")

# The Python interpreter itself, not a version manager's wrapper script
# (pyenv's shim costs half a second per call).
PYTHON=$(python3 -c 'import sys; print(sys.executable)') || PYTHON=python3

# How long any one ovpn command may take, in seconds.
CMD_TIMEOUT=20
# Upper bound of a scenario's monitors (they are killed at cleanup anyway).
MONITOR_SECONDS=600

STAGES_PASSED=0
STAGES_FAILED=0
STAGES_XFAILED=0
STAGES_XPASSED=0
STARTED_PIDS=()
# Extra arguments of every ovpnd.
OVPND_ARGS=()
# shellcheck disable=SC2034 # the monitors' pids by namespace, for scenarios
MONITOR_PID=()
NAMESPACES=()
declare -A EXPECTED_FAILURE=()
SCENARIO_START=$SECONDS

# ---- output and stages ----

log() {
    echo "[$SCENARIO] $*"
}

# Declares that stage NAME of this scenario is expected to fail, with the
# reason (which FINDINGS.md explains). Called from known-failures.sh.
expect_failure() {
    local scenario=$1 name=$2 reason=$3
    if [ "$scenario" = "$SCENARIO" ] || [ "$scenario" = "*" ]; then
        EXPECTED_FAILURE[$name]=$reason
    fi
}

# shellcheck source=tests/netns/known-failures.sh
. "$NETNS_DIR/known-failures.sh"

# stage NAME FUNCTION [ARGS...]: runs one step of the scenario with its output
# in a log file, and prints one result line. The function runs in this shell
# (not a subshell) so the state it sets is seen by later stages.
stage() {
    local name=$1
    shift
    local index=$((STAGES_PASSED + STAGES_FAILED + STAGES_XFAILED + STAGES_XPASSED))
    local logfile
    logfile=$WORK/stage-$(printf '%02d' "$index")-$name.log
    local start=$SECONDS status
    { "$@"; } >"$logfile" 2>&1
    status=$?
    local took=$((SECONDS - start))
    local why=${EXPECTED_FAILURE[$name]:-}
    if [ "$status" -eq 0 ] && [ -z "$why" ]; then
        STAGES_PASSED=$((STAGES_PASSED + 1))
        echo "PASS: $SCENARIO/$name (${took} s)"
    elif [ "$status" -eq 0 ]; then
        STAGES_XPASSED=$((STAGES_XPASSED + 1))
        echo "XPASS: $SCENARIO/$name (${took} s) passed, but is marked expected to fail: $why"
    elif [ -n "$why" ]; then
        STAGES_XFAILED=$((STAGES_XFAILED + 1))
        echo "XFAIL: $SCENARIO/$name (${took} s) expected to fail: $why"
        tail -n 8 "$logfile" | sed 's/^/    | /'
    else
        STAGES_FAILED=$((STAGES_FAILED + 1))
        echo "FAIL: $SCENARIO/$name (${took} s)"
        [ -s "$logfile" ] || echo "    | (the stage printed nothing; exit status $status)"
        tail -n 25 "$logfile" | sed 's/^/    | /'
    fi
    return "$status"
}

# A stage that later stages cannot do without: if it fails, the scenario
# stops (its summary counts the stages that could not run as failed).
required_stage() {
    if ! stage "$@"; then
        log "stopping: stage $1 is needed by the rest of the scenario"
        finish
    fi
}

# Prints the summary line and exits: 0 unless a stage failed unexpectedly.
finish() {
    local passed=$((STAGES_PASSED + STAGES_XPASSED))
    echo "$SCENARIO: $passed passed, $STAGES_FAILED failed" \
        "($STAGES_XFAILED expected failures, $STAGES_XPASSED unexpected passes," \
        "$((SECONDS - SCENARIO_START)) s)"
    [ "$STAGES_FAILED" -eq 0 ]
    exit
}

# fail MESSAGE: prints the reason a check failed (into the stage's log) and
# returns non-zero.
fail() {
    echo "check failed: $*" >&2
    return 1
}

# ---- binaries ----

# Builds ovpn and ovpnd unless OVPN_BIN_DIR names a directory holding them.
ensure_binaries() {
    if [ -z "${OVPN_BIN_DIR:-}" ]; then
        local target=${CARGO_TARGET_DIR:-$REPO_DIR/target}
        (cd "$REPO_DIR" && cargo build -q -p ovpn -p ovpnd) || return 1
        OVPN_BIN_DIR=$target/debug
    fi
    OVPN=$OVPN_BIN_DIR/ovpn
    OVPND=$OVPN_BIN_DIR/ovpnd
    if [ ! -x "$OVPN" ] || [ ! -x "$OVPND" ]; then
        echo "no ovpn/ovpnd in $OVPN_BIN_DIR" >&2
        return 1
    fi
    export OVPN_BIN_DIR
}

# ---- processes and cleanup ----

# Remembers a pid this scenario started, to stop it at cleanup.
own_pid() {
    STARTED_PIDS+=("$1")
}

# Stops the given pids (TERM, then KILL after a bounded wait).
stop_pids() {
    local pid alive i
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for i in $(seq 30); do
        alive=0
        for pid in "$@"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    for pid in "$@"; do
        kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Holders and helpers first, daemons last (they were started first).
    local i pids=()
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pids+=("${STARTED_PIDS[i]}")
    done
    [ "${#pids[@]}" -gt 0 ] && stop_pids "${pids[@]}"
    local ns
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$STAGES_FAILED" -gt 0 ] || [ "${OVPN_KEEP_LOGS:-0}" = 1 ]; then
        echo "[$SCENARIO] logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds
# or SECONDS pass (then runs it once more).
wait_until() {
    local deadline=$((${EPOCHREALTIME/./} + $1 * 1000000))
    shift
    while [ "${EPOCHREALTIME/./}" -lt "$deadline" ]; do
        "$@" && return 0
        sleep 0.1
    done
    "$@"
}

# ---- namespaces, daemons, ovpn commands ----

ns() {
    echo "$PREFIX-peer$1"
}

rundir() {
    echo "$WORK/run$1"
}

# in_ns P COMMAND...: runs COMMAND in namespace P.
in_ns() {
    local p=$1
    shift
    ip netns exec "$(ns "$p")" "$@"
}

# ovpn_ns P ARGS...: the ovpn CLI in namespace P, against that namespace's
# daemon, bounded in time.
ovpn_ns() {
    local p=$1
    shift
    timeout "$CMD_TIMEOUT" ip netns exec "$(ns "$p")" \
        "$OVPN" --backend daemon --daemon-dir "$(rundir "$p")" "$@"
}

# Creates namespace P and starts its ovpnd (daemon_ready waits for it).
add_namespace() {
    local p=$1 name
    name=$(ns "$p")
    ip netns add "$name" || return 1
    NAMESPACES+=("$name")
    ip -n "$name" link set lo up || return 1
    ip netns exec "$name" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
        net.ipv6.conf.default.accept_dad=0 || return 1
    ip netns exec "$name" "$OVPND" --run-dir "$(rundir "$p")" \
        --log-level "${OVPND_LOG_LEVEL:-info}" "${OVPND_ARGS[@]}" >"$WORK/ovpnd$p.log" 2>&1 &
    own_pid $!
}

# Waits (bounded) for the sockets of namespace P's ovpnd.
daemon_ready() {
    local dir
    dir=$(rundir "$1")
    wait_until 10 test -S "$dir/rtnl.sock" -a -S "$dir/genl.sock" ||
        fail "ovpnd in $(ns "$1") did not open its sockets: $(cat "$WORK/ovpnd$1.log")"
}

# Starts `ovpn --json monitor` in namespace P, writing to monitor-P.jsonl.
start_monitor() {
    local p=$1
    ip netns exec "$(ns "$p")" "$OVPN" --backend daemon --daemon-dir "$(rundir "$p")" \
        --json monitor --duration "$MONITOR_SECONDS" \
        >"$WORK/monitor-$p.jsonl" 2>"$WORK/monitor-$p.err" &
    # shellcheck disable=SC2034
    MONITOR_PID[p]=$!
    own_pid $!
}

# ---- addresses of the topology ----

# The transport address of client P's veth end (family by P: see IPV6_FROM).
client_addr() {
    local p=$1 host=${2:-2}
    if is_ipv6_client "$p"; then echo "2001:db8:0:$p::$host"; else echo "198.18.$p.$host"; fi
}

server_addr() {
    local p=$1
    if is_ipv6_client "$p"; then echo "2001:db8:0:$p::1"; else echo "198.18.$p.1"; fi
}

# ADDR:PORT with IPv6 in brackets.
sockaddr() {
    case $1 in
        *:*) echo "[$1]:$2" ;;
        *) echo "$1:$2" ;;
    esac
}

# Clients from IPV6_FROM on use an IPv6 transport (selftests: 4..6).
is_ipv6_client() {
    [ "$1" -ge "${IPV6_FROM:-4}" ]
}

vpn_addr() {
    echo "198.19.0.$(($1 + 1))"
}

SERVER_VPN=198.19.0.1
LAN_ADDR=198.19.1.1

# ---- topology ----

# topology CLIENTS: namespaces and daemons, veth pairs, ovpn links with their
# addresses, the LAN route behind client 1; MTU from $MTU if set.
topology() {
    local n=$1 p
    for ((p = 0; p <= n; p++)); do
        add_namespace "$p" || return 1
    done
    for ((p = 0; p <= n; p++)); do
        daemon_ready "$p" || return 1
    done
    for ((p = 1; p <= n; p++)); do
        local s c
        s=$(ns 0)
        c=$(ns "$p")
        ip link add "veth$p" netns "$s" type veth peer name "veth$p" netns "$c" || return 1
        ip -n "$s" addr add "198.18.$p.1/24" dev "veth$p" || return 1
        ip -n "$s" addr add "2001:db8:0:$p::1/64" dev "veth$p" nodad || return 1
        ip -n "$c" addr add "198.18.$p.2/24" dev "veth$p" || return 1
        ip -n "$c" addr add "2001:db8:0:$p::2/64" dev "veth$p" nodad || return 1
        ip -n "$s" link set "veth$p" up || return 1
        ip -n "$c" link set "veth$p" up || return 1
    done

    ovpn_ns 0 link add tun0 --mode mp || return 1
    ip -n "$(ns 0)" addr add "$SERVER_VPN/24" dev tun0 || return 1
    for ((p = 1; p <= n; p++)); do
        ovpn_ns "$p" link add "tun$p" --mode p2p || return 1
        ip -n "$(ns "$p")" addr add "$(vpn_addr "$p")/24" dev "tun$p" || return 1
    done
    ip -n "$(ns 1)" addr add "$LAN_ADDR/32" dev tun1 || return 1

    for ((p = 0; p <= n; p++)); do
        if [ -n "${MTU:-}" ]; then
            ip -n "$(ns "$p")" link set "tun$p" mtu "$MTU" || return 1
        fi
        ip -n "$(ns "$p")" link set "tun$p" up || return 1
    done
    ip -n "$(ns 0)" route add "$LAN_ADDR" via "$(vpn_addr 1)" dev tun0 || return 1
    ip -n "$(ns 0)" addr show
}

# The selftests' data64.key layout (kernel-behaviour §9.2): base64 over five
# lines; the first 72 decoded bytes are key A, key B and the nonce tail.
make_key_file() {
    head -c 240 /dev/urandom | base64 -w 64 >"$WORK/data64.key"
    [ "$(wc -l <"$WORK/data64.key")" -eq 5 ]
}

# The selftests' udp_peers.txt on our addresses:
# ID SERVER_ADDR SERVER_PORT CLIENT_ADDR CLIENT_PORT VPN_ADDR
make_udp_peers_file() {
    local n=$1 p
    for ((p = 1; p <= n; p++)); do
        echo "$p $(server_addr "$p") 1 $(client_addr "$p") 1 $(vpn_addr "$p")"
    done >"$WORK/udp_peers.txt"
    cat "$WORK/udp_peers.txt"
}

# Reads the pid of a holder from its pid file and remembers it.
own_pidfile() {
    local file=$1 pid
    wait_until 5 test -s "$file" || return 1
    pid=$(cat "$file")
    own_pid "$pid"
    echo "$pid"
}

# UDP peers: one server socket with every peer (peers file), one socket per
# client; holders detached, their pids in holder-P.pid.
add_udp_peers() {
    local n=$1 p
    make_udp_peers_file "$n" || return 1
    ovpn_ns 0 peer new-multi tun0 --udp --bind 1 --peers-file "$WORK/udp_peers.txt" \
        --detach --pidfile "$WORK/holder-0.pid" || return 1
    own_pidfile "$WORK/holder-0.pid" >/dev/null || return 1
    for ((p = 1; p <= n; p++)); do
        ovpn_ns "$p" peer new "tun$p" --id "$p" --udp --bind 1 \
            --remote "$(sockaddr "$(server_addr "$p")" 1)" \
            --detach --pidfile "$WORK/holder-$p.pid" || return 1
        own_pidfile "$WORK/holder-$p.pid" >/dev/null || return 1
    done
}

# Whether namespace 0 listens on TCP ADDR:PORT.
tcp_listening() {
    in_ns 0 ss -Hltn "sport = :$2" | grep -qF "$1"
}

# TCP peers (selftests' listen/connect): the server accepts one connection
# per peer on SERVER_ADDR:1, each client connects to it.
add_tcp_peers() {
    local n=$1 p
    for ((p = 1; p <= n; p++)); do
        local listen
        listen=$(sockaddr "$(server_addr "$p")" 1)
        ovpn_ns 0 peer new tun0 --id "$p" --tcp-listen "$listen" --connect-timeout 15 \
            --vpn-ipv4 "$(vpn_addr "$p")" --detach --pidfile "$WORK/holder-0-$p.pid" &
        local parent=$!
        wait_until 10 tcp_listening "$(server_addr "$p")" 1 ||
            fail "server not listening on $listen" || return 1
        ovpn_ns "$p" peer new "tun$p" --id "$p" --tcp-connect "$listen" --connect-timeout 10 \
            --detach --pidfile "$WORK/holder-$p.pid" || return 1
        own_pidfile "$WORK/holder-$p.pid" >/dev/null || return 1
        wait "$parent" || fail "server side of peer $p not added" || return 1
        own_pidfile "$WORK/holder-0-$p.pid" >/dev/null || return 1
    done
}

# The holders' pids (server first), for the close-socket scenarios.
holder_pids() {
    cat "$WORK"/holder-*.pid
}

# keys ALG SLOT KEY_ID CLIENTS...: installs the key from data64.key in SLOT
# on both ends of each given client (server key dir 0, client key dir 1).
install_keys() {
    local alg=$1 slot=$2 key_id=$3 p
    shift 3
    for p in "$@"; do
        ovpn_ns 0 key new tun0 --peer "$p" --slot "$slot" --key-id "$key_id" \
            --cipher "$alg" --key-file "$WORK/data64.key" --key-dir 0 || return 1
        ovpn_ns "$p" key new "tun$p" --peer "$p" --slot "$slot" --key-id "$key_id" \
            --cipher "$alg" --key-file "$WORK/data64.key" --key-dir 1 || return 1
    done
}

# keepalive INTERVAL:TIMEOUT CLIENTS...: set on both ends.
set_keepalive_both() {
    local ka=$1 p
    shift
    for p in "$@"; do
        ovpn_ns 0 peer set tun0 --id "$p" --keepalive "$ka" || return 1
        ovpn_ns "$p" peer set "tun$p" --id "$p" --keepalive "$ka" || return 1
    done
}

# ---- traffic ----

# ping_from P DEST COUNT [PING ARGS...]: COUNT pings 10 ms apart from
# namespace P, all of which must be answered within a bounded time.
ping_from() {
    local p=$1 dest=$2 count=$3
    shift 3
    local deadline=$((count / 50 + 3))
    timeout $((deadline + 5)) ip netns exec "$(ns "$p")" \
        ping -q -n -c "$count" -i 0.01 -w "$deadline" "$@" "$dest"
}

# ping_parallel FROM_EXPR COUNT SIZE CLIENTS...: pings between the server and
# every given client at once; FROM_EXPR is "server" (server pings clients)
# or "client" (clients ping the server). Fails if any ping lost a packet.
ping_parallel() {
    local dir=$1 count=$2 size=$3 p rc=0
    shift 3
    local -A ping_pid=()
    for p in "$@"; do
        if [ "$dir" = server ]; then
            ping_from 0 "$(vpn_addr "$p")" "$count" -s "$size" >"$WORK/ping-$dir-$p.out" 2>&1 &
        else
            ping_from "$p" "$SERVER_VPN" "$count" -s "$size" >"$WORK/ping-$dir-$p.out" 2>&1 &
        fi
        ping_pid[$p]=$!
    done
    for p in "$@"; do
        if wait "${ping_pid[$p]}"; then
            echo "client $p: $(grep -E 'packets transmitted' "$WORK/ping-$dir-$p.out")"
        else
            echo "client $p: FAILED: $(cat "$WORK/ping-$dir-$p.out")"
            rc=1
        fi
    done
    return "$rc"
}

# ---- JSON ----

# pyj EXPR: evaluates the Python expression EXPR with `d` = the JSON document
# read from standard input, and prints the result.
pyj() {
    "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list)) else v)
' "$1"
}

# peer_json P IFACE ID: one peer as `{"ifindex": N, "peer": {...}}`.
peer_json() {
    ovpn_ns "$1" --json peer get "$2" --id "$3"
}

# ntf_check [--only] P:ID:REASON...: every namespace P's monitor printed
# exactly one peer-del-ntf for peer ID with REASON ("*" for any reason).
# With --only, those namespaces printed no other notification either
# (peer-float-ntf aside: float_ntf_check counts those). Prints what is
# missing.
ntf_check() {
    "$PYTHON" - "$WORK" "$@" <<'EOF'
import json, sys
work, args = sys.argv[1], sys.argv[2:]
only = args[:1] == ["--only"]
wanted = [a.split(":") for a in args[only:]]

def seen(ns):
    out = []
    try:
        with open(f"{work}/monitor-{ns}.jsonl") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out

ok = True
by_ns = {}
for ns, peer_id, reason in wanted:
    by_ns.setdefault(ns, []).append((int(peer_id), reason))
for ns, wants in by_ns.items():
    ntfs = [m for m in seen(ns) if m.get("name") != "peer-float-ntf"]
    dels = [m["msg"]["peer"] for m in ntfs if m.get("name") == "peer-del-ntf"]
    for peer_id, reason in wants:
        n = sum(1 for p in dels if p.get("id") == peer_id and reason in ("*", p.get("del-reason")))
        if n != 1:
            ok = False
            print(f"namespace {ns}: {n} peer-del-ntf for peer {peer_id} with reason {reason}, expected 1")
    if only and len(ntfs) != len(wants):
        ok = False
        print(f"namespace {ns}: {len(ntfs)} notifications, expected {len(wants)}: {ntfs}")
sys.exit(0 if ok else 1)
EOF
}

# float_ntf_check ID:ADDR...: the server's monitor printed exactly one
# peer-float-ntf for each peer ID, with remote ADDR port 1, and no other.
float_ntf_check() {
    "$PYTHON" - "$WORK/monitor-0.jsonl" "$@" <<'EOF'
import json, sys
ntfs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
floats = [m["msg"]["peer"] for m in ntfs if m.get("name") == "peer-float-ntf"]
want = dict(a.split(":", 1) for a in sys.argv[2:])
ok = True
for pid, addr in want.items():
    got = [(p.get("remote-ipv4") or p.get("remote-ipv6"), p.get("remote-port"))
           for p in floats if p.get("id") == int(pid)]
    if got != [(addr, 1)]:
        ok = False
        print(f"peer {pid}: float notifications {got}, expected one for {addr} port 1")
extra = [p for p in floats if str(p.get("id")) not in want]
if extra:
    ok = False
    print(f"unexpected float notifications: {extra}")
sys.exit(0 if ok else 1)
EOF
}

# ntf_wait SECONDS P:ID:REASON...: waits (bounded) until ntf_check passes.
ntf_wait() {
    local seconds=$1
    shift
    wait_until "$seconds" ntf_check "$@" >/dev/null || ntf_check "$@"
}

# peer_absent P IFACE ID: PEER_GET for the peer fails.
peer_absent() {
    ! ovpn_ns "$1" peer get "$2" --id "$3" >/dev/null 2>&1
}
