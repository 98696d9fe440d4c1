#!/bin/sh
# The child's half of the rig's network checks (child-init.sh runs it in the background; busybox
# sh). Every step prints a "rig-child: net: ..." marker to the kernel log, which the outer init
# follows and run.sh checks: eth0 bound by hv_netvsc, its MAC, carrier after `ip link set up`,
# its offloads (ethtool -k), 20 pings to the host, 16 MiB over TCP each way (busybox nc), then a
# NIC the host hot-adds (eth1) and hot-removes.

HOST=10.99.0.1
net() { say "net: $*"; }
# wait_for SECONDS COMMAND...: polls COMMAND once a second until it succeeds; fails after SECONDS.
wait_for() {
    seconds=$1
    shift
    while ! "$@"; do
        seconds=$((seconds - 1))
        [ $seconds -gt 0 ] || return 1
        sleep 1
    done
}
md5() { md5sum <"$1" | cut -d' ' -f1; }

if ! wait_for 60 test -e /sys/class/net/eth0; then
    net "no eth0 60 s after boot"
    exit 0
fi
driver=$(basename "$(readlink /sys/class/net/eth0/device/driver)")
net "eth0 bound to $driver ($(basename "$(readlink /sys/class/net/eth0/device)"))"
net "eth0 address $(cat /sys/class/net/eth0/address)"
ip link set eth0 up
wait_for 20 grep -q 1 /sys/class/net/eth0/carrier 2>/dev/null
net "eth0 carrier $(cat /sys/class/net/eth0/carrier 2>/dev/null) operstate $(cat /sys/class/net/eth0/operstate)"
ip addr add 10.99.0.2/24 dev eth0
if [ -x /usr/sbin/ethtool ]; then
    net "offloads $(ethtool -k eth0 | grep -E '^(tx-checksumming|tcp-segmentation-offload):' | tr '\n' ' ')"
fi
# The upload's 16 MiB and their sum are made before the pings, which then have the processors
# to themselves but for the connection attempts below (one a second).
dd if=/dev/urandom of=/tmp/out bs=1048576 count=16 2>/dev/null
sum=$(md5 /tmp/out)
received=$(ping -c 20 -W 2 $HOST 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
net "ping host: ${received:-0}/20"

# TCP host -> child: listen on 5002 first. busybox nc exits as soon as its peer closes, so its
# stdin (a FIFO held open) must not reach EOF before the data has arrived.
mkfifo /tmp/net-hold
( nc -l -p 5002 >/tmp/in </tmp/net-hold
  net "received $(wc -c </tmp/in) bytes md5 $(md5 /tmp/in)" ) &
exec 3>/tmp/net-hold
sleep 1
net "listening on 5002"
# TCP child -> host: the host listens on 5001 once its own 20 pings to us are done, so connect
# until it does (a refused connection ends nc at once; 120 tries, a second apart).
net "sending $(wc -c </tmp/out) bytes md5 $sum"
tries=120
while :; do
    nc $HOST 5001 </tmp/out 2>/dev/null && status=0 && break
    status=$?
    tries=$((tries - 1))
    [ $tries -gt 0 ] || break
    sleep 1
done
net "sent (nc exit status $status)"

# A NIC the host hot-adds.
if wait_for 300 test -e /sys/class/net/eth1; then
    net "eth1 hot-added: $(basename "$(readlink /sys/class/net/eth1/device/driver)"), address $(cat /sys/class/net/eth1/address)"
    ip link set eth1 up
    wait_for 20 grep -q 1 /sys/class/net/eth1/carrier 2>/dev/null
    ip addr add 10.99.0.3/24 dev eth1
    received=$(ping -I eth1 -c 5 -W 2 $HOST 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    net "eth1 carrier $(cat /sys/class/net/eth1/carrier 2>/dev/null) ping host: ${received:-0}/5"
    if wait_for 120 sh -c '! test -e /sys/class/net/eth1'; then net "eth1 removed"; else net "eth1 still there"; fi
else
    net "no eth1 hot-added within 300 s"
fi
