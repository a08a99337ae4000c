#!/bin/sh
# PID 1 of the kernel VM (busybox sh). Mounts the pseudo file systems, loads
# the modules in the order `kernel-vm fetch` resolved, sets up the network
# when asked, runs /scenario under a time limit, and sends the results home
# on the second serial port (ttyS1) between begin/end markers, where no
# kernel message can interleave with them. Then powers off.

export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# Only emergencies on the console from here on.
dmesg -n 1

set -a
. /etc/ovpnvm.env
set +a
R=/run/ovpnvm
mkdir -p "$R"

say() { echo "ovpnvm: $*"; }

load_modules() {
    missing=""
    while read -r name file need; do
        if insmod "/usr/lib/modules/ovpnvm/$file" 2>>"$R/modules.log"; then
            echo "loaded $name" >>"$R/modules.log"
        else
            echo "FAILED $name ($need)" >>"$R/modules.log"
            [ "$need" = required ] && missing="$missing $name"
        fi
    done </usr/lib/modules/ovpnvm/load-order
    [ -z "$missing" ]
}

setup_net() {
    ip link set lo up
    [ "$OVPNVM_NET" = 1 ] || return 0
    ip link set eth0 up &&
        ip addr add "$OVPNVM_VM_IP4/$OVPNVM_IP4_PREFIX" dev eth0 &&
        ip -6 addr add "$OVPNVM_VM_IP6/$OVPNVM_IP6_PREFIX" dev eth0 nodad
}

send_results() {
    # Raw mode: no newline translation on the way out.
    stty -F /dev/ttyS1 raw -echo 2>/dev/null
    # busybox tar has no positional -C: gather everything under $R first.
    cp -a /out "$R/out"
    touch "$R/modules.log"
    (cd "$R" && tar -cf - stdout stderr status modules.log out) | gzip -1 | base64 >"$R/result.b64"
    {
        echo "@@OVPNVM-BEGIN $OVPNVM_TOKEN@@"
        cat "$R/result.b64"
        echo "@@OVPNVM-END $OVPNVM_TOKEN@@"
    } >/dev/ttyS1
}

: >"$R/stdout"
: >"$R/stderr"
if ! load_modules; then
    say "required modules failed to load"
    cat "$R/modules.log"
    echo "kernel-vm: required modules failed to load" >"$R/stderr"
    echo 125 >"$R/status"
elif ! setup_net; then
    say "network setup failed"
    echo "kernel-vm: network setup in the VM failed" >"$R/stderr"
    echo 125 >"$R/status"
else
    say "scenario start (limit ${OVPNVM_SCENARIO_TIMEOUT}s)"
    cd /tmp || exit 1
    timeout -s KILL "$OVPNVM_SCENARIO_TIMEOUT" sh /scenario >"$R/stdout" 2>"$R/stderr" </dev/null
    echo $? >"$R/status"
    say "scenario end, status $(cat "$R/status")"
fi

send_results
sync
poweroff -f
# Not reached unless power-off failed: a panic reboots, and QEMU runs with
# -no-reboot, so it exits either way.
echo o >/proc/sysrq-trigger
exit 1
