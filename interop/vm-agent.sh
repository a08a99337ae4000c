#!/bin/sh
# VM scenario of interop/run: serves the host's driver a command channel on
# TCP port 7000 and waits until the driver says it is done
# (/tmp/interop-done) or the scenario limit ends the VM. The driver does all
# the work; this side only executes.
#
# Protocol, per connection: the host sends one line per command, a base64
# encoded shell script; the agent runs it in a subshell (stdin /dev/null,
# stderr with stdout) and answers with its output and a last line
# "@@rc STATUS". A connection serves commands until the host closes it.
set -u

cat >/tmp/agent-conn <<'CONN'
#!/bin/sh
exec 2>&1
f=$(mktemp /tmp/cmd.XXXXXX)
while read -r b64; do
    printf '%s\n' "$b64" | base64 -d >"$f"
    ( . "$f" ) </dev/null
    echo "@@rc $?"
done
rm -f "$f"
CONN
chmod +x /tmp/agent-conn

nc -ll -p 7000 -e /tmp/agent-conn </dev/null >/tmp/agent.log 2>&1 &
echo "agent listening on port 7000 (pid $!)"

limit=${OVPNVM_SCENARIO_TIMEOUT:-300}
i=0
while [ ! -e /tmp/interop-done ] && [ "$i" -lt "$((limit * 2))" ]; do
    sleep 0.5
    i=$((i + 1))
done
# What the driver left in /tmp/interop (monitor output, holder logs, key
# files of this throw-away VM) comes back with the run.
cp -r /tmp/interop "$OVPNVM_OUT/" 2>/dev/null
[ -e /tmp/interop-done ] && echo "driver finished" || echo "driver never finished"
exit 0
