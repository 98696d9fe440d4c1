# The outer init's half of the rig's network checks (sourced by outer-init.sh; busybox sh).
# network_host_setup runs before the Linux child is created: the internal switch "rig" (the root
# creates its TAP, hv-rig) and the host's address on it. network_host_checks runs once the child is
# up: each step prints RIG-RESULT net-* for run.sh.

NET_SWITCH=rig
NET_TAP=hv-rig
NET_HOST=10.99.0.1
NET_CHILD=10.99.0.2
NET_HOTPLUG_MAC=00:15:5d:99:00:03

network_host_setup() {
    if out=$($HV switch create $NET_SWITCH --kind internal --host-interface $NET_TAP --runtime-dir $RT 2>&1) &&
       ip addr add $NET_HOST/24 dev $NET_TAP; then
        result net-switch PASS "$out; $NET_TAP has $NET_HOST/24"
    else
        result net-switch FAIL "$out"
    fi
    $HV switch list --runtime-dir $RT 2>&1 | sed 's/^/RIG switch| /'
}

# net_wait REGEX SECONDS: follows the child's console until a line matches, and prints that line
# on stdout (callers capture it); the console lines themselves go to stderr, the serial console,
# so the transcript keeps them.
net_wait() {
    regex=$1 seconds=$2
    while [ "$seconds" -gt 0 ]; do
        follow linux CHILD >&2
        line=$(grep -E "$regex" /tmp/linux.log 2>/dev/null | tail -n 1)
        if [ -n "$line" ]; then echo "$line"; return 0; fi
        [ -z "$(child_crash linux)" ] || return 1
        sleep 2
        seconds=$((seconds - 2))
    done
    return 1
}
# fact KEY: a fact the parent reported about the child's first NIC (hv partition show).
net_fact() { $HV partition show linux --runtime-dir $RT 2>/dev/null | sed -n "s/^nic\.[0-9a-f:]*\.$1: *//p" | head -n 1; }
net_md5() { md5sum <"$1" | cut -d' ' -f1; }

network_host_checks() {
    started=$(uptime_s)
    if ! net_wait 'rig-child: net: eth0 bound' 120 >/dev/null; then
        result net-nvsp FAIL "the child's eth0 never appeared"
        $HV partition show linux --runtime-dir $RT | sed 's/^/RIG show| /'
        return
    fi
    version=$(net_fact nvsp_version)
    if [ "$version" = 6.1 ]; then
        result net-nvsp PASS "the parent negotiated NVSP $version (0x60001, the newest Linux 6.1 offers)"
    else
        result net-nvsp FAIL "NVSP version ${version:-none}, 6.1 expected"
    fi

    net_wait 'rig-child: net: ping host' 120 >/dev/null
    received=$(ping -c 20 -W 2 $NET_CHILD 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    if [ "$received" = 20 ]; then result net-ping-child PASS "20/20 replies from $NET_CHILD"
    else result net-ping-child FAIL "${received:-0}/20 replies from $NET_CHILD"; fi

    # Only now the listener for the child's upload, which the child retries until it connects:
    # pings that share the link and the child's processors with a 16 MiB stream measure the
    # stream under TCG (one of 20 replies went missing once), not the NIC. busybox nc exits as
    # soon as its peer closes, so its stdin (a FIFO held open on fd 7) must not reach EOF first.
    mkfifo /tmp/net-hold
    nc -l -p 5001 >/tmp/from-child </tmp/net-hold &
    NET_LISTENER=$!
    exec 7>/tmp/net-hold

    # Child -> host: the child sends 16 MiB to our listener.
    sending=$(net_wait 'rig-child: net: sending' 300 | sed -n 's/.*md5 \([0-9a-f]*\).*/\1/p')
    tries=300
    while kill -0 $NET_LISTENER 2>/dev/null && [ $tries -gt 0 ]; do sleep 1; tries=$((tries - 1)); follow linux CHILD >&2; done
    exec 7>&-
    got=$(net_md5 /tmp/from-child)
    size=$(wc -c </tmp/from-child)
    if [ -n "$sending" ] && [ "$got" = "$sending" ] && [ "$size" = 16777216 ]; then
        result net-tcp-c2h PASS "$size bytes, md5 $got on both sides"
    else
        result net-tcp-c2h FAIL "$size bytes, md5 $got here, ${sending:-nothing} sent"
    fi

    # Host -> child: 16 MiB to the child's listener.
    net_wait 'rig-child: net: listening on 5002' 60 >/dev/null
    dd if=/dev/urandom of=/tmp/to-child bs=1048576 count=16 2>/dev/null
    expected=$(net_md5 /tmp/to-child)
    for attempt in 1 2 3 4 5; do
        nc $NET_CHILD 5002 </tmp/to-child && break
        sleep 2
    done
    got=$(net_wait 'rig-child: net: received' 300 | sed -n 's/.*received \([0-9]*\) bytes md5 \([0-9a-f]*\).*/\1 \2/p')
    if [ "$got" = "16777216 $expected" ]; then
        result net-tcp-h2c PASS "16777216 bytes, md5 $expected on both sides"
    else
        result net-tcp-h2c FAIL "the child got ${got:-nothing}; sent 16777216 bytes md5 $expected"
    fi

    # The child's transmits: segmentation (LSO) and checksum requests the parent honoured.
    lso=$(net_fact tx_lso_frames)
    checksums=$(net_fact tx_checksum_frames)
    offload=$(net_fact offload)
    if [ "${lso:-0}" -gt 0 ] && [ "${checksums:-0}" -gt 0 ]; then
        result net-offload-used PASS "$lso LSO frames, $checksums checksum-offloaded frames from the child; offload parameters: $offload"
    else
        result net-offload-used FAIL "LSO frames ${lso:-0}, checksum-offloaded frames ${checksums:-0}; offload parameters: $offload"
    fi

    # Hot-add a second NIC on the same switch, then remove it.
    out=$($HV partition device add linux "{\"kind\": \"nic\", \"switch\": \"$NET_SWITCH\", \"mac\": \"$NET_HOTPLUG_MAC\"}" \
          --runtime-dir $RT 2>&1)
    say "net: hot-add: $out"
    line=$(net_wait 'rig-child: net: (eth1 carrier|no eth1)' 300)
    case $line in
        *"ping host: 5/5"*) result net-hotplug PASS "${line#*net: }" ;;
        *) result net-hotplug FAIL "${line:-no eth1 marker}" ;;
    esac
    instance=$($HV partition show linux --runtime-dir $RT | sed -n 's/^  nic: //p' | tail -n 1)
    out=$($HV partition device remove linux "$instance" --runtime-dir $RT 2>&1)
    say "net: hot-remove $instance: $out"
    line=$(net_wait 'rig-child: net: eth1 (removed|still there)' 180)
    case $line in
        *"eth1 removed"*) result net-hotremove PASS "removed $instance; the child's eth1 went away" ;;
        *) result net-hotremove FAIL "${line:-no marker}" ;;
    esac
    $HV partition show linux --runtime-dir $RT | grep -E '^nic\.' | sed 's/^/RIG nic| /'
    say "net: checks took $(since $started) s"
}
