#!/bin/sh
# PID 1 of the rig's outer QEMU VM (busybox sh). run.sh puts it in the outer initramfs as /init.
#
# Loads Debian's kvm modules, starts `hv root` and `hv parent`, runs the embedded probe guest as a
# smoke test, then the stock Debian kernel as the child partition "linux", and powers the VM off.
#
# Everything it prints goes to the serial console, which run.sh records. Line prefixes:
#   RIG [uptime] text          progress
#   RIG-RESULT key PASS|FAIL detail   one per check, parsed by run.sh
#   PROBE| line / CHILD| line  console lines of the probe guest / the Linux child
#   ROOT-LOG| / PARENT-LOG|    the root's and the parent's logs, dumped at the end
# Options come from the kernel command line: rig.quick=1 (stop after VMBus negotiation),
# rig.smoke=0 (skip the probe guest), rig.smoke_timeout=S, rig.linux_timeout=S.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
HV=/rig/hv
RT=/run/hv
. /rig/storage-host.sh

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "RIG [$(uptime_s)] $*"; }
result() { key=$1 status=$2; shift 2; echo "RIG-RESULT $key $status $*"; }
# alive PID: the process exists and is not a zombie.
alive() { [ -r /proc/$1/status ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status; }
# Seconds elapsed since $1 (an uptime), one decimal.
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }
# child_crash NAME: prints how the partition's kernel died, from its console log (/tmp/NAME.log):
# the first oops line and the panic line, or nothing if it shows neither. A child that panics
# without panic= hangs in its panic loop with its partition still "running", so a step that
# waits for it must look here to say why it waited in vain.
child_crash() {
    [ -f /tmp/$1.log ] || return 0
    oops=$(grep -m1 -E '\] (BUG:|Oops:|general protection fault|double fault|stack guard page)' /tmp/$1.log | sed 's/^.*\] //')
    panic=$(grep -m1 'Kernel panic' /tmp/$1.log | sed 's/^.*\] //')
    [ -n "$oops$panic" ] && echo "the child kernel died: ${oops:+$oops; }$panic"
    return 0
}
# Where the root's threads wait (name, state, kernel wait channel): printed when a step fails,
# to tell a wedged root from a wedged outer VM.
root_threads() {
    alive "${root_pid:-0}" || return 0
    for task in /proc/$root_pid/task/*; do
        echo "RIG root thread| $(cat $task/comm) $(cut -d' ' -f3 $task/stat) $(cat $task/wchan 2>/dev/null)"
    done
}
finish() {
    say "root log and parent log follow"
    [ -f $RT/root.log ] && sed 's/^/ROOT-LOG| /' $RT/root.log
    [ -f $RT/parent.log ] && sed 's/^/PARENT-LOG| /' $RT/parent.log
    say "powering off"
    sync
    poweroff -f
    sleep 10
}

QUICK=0 SMOKE=1 SMOKE_TIMEOUT=600 LINUX_TIMEOUT=1500
for word in $(cat /proc/cmdline); do
    case $word in
        rig.quick=*) QUICK=${word#*=} ;;
        rig.smoke=*) SMOKE=${word#*=} ;;
        rig.smoke_timeout=*) SMOKE_TIMEOUT=${word#*=} ;;
        rig.linux_timeout=*) LINUX_TIMEOUT=${word#*=} ;;
    esac
done
# The heartbeat run.sh watches (watch_heartbeat): a line every 10 s on the second serial port,
# from userspace, so it stops only when the outer VM itself stops running.
[ -c /dev/ttyS1 ] && (while :; do echo "alive $(uptime_s)"; sleep 10; done >/dev/ttyS1 2>/dev/null) &
echo    # the firmware and the kernel leave the cursor mid-line
say "outer VM init: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs," \
    "$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB; quick=$QUICK smoke=$SMOKE"

# --- KVM -------------------------------------------------------------------------------------
for module in $(cat /rig/modules/order); do
    if insmod /rig/modules/$module.ko; then say "insmod $module"; else say "insmod $module FAILED"; fi
done
dmesg | grep -iE 'kvm|svm' | sed 's/^/RIG dmesg| /'
if [ -c /dev/kvm ]; then
    result kvm PASS "/dev/kvm present at outer uptime $(uptime_s) s"
else
    result kvm FAIL "no /dev/kvm after loading $(cat /rig/modules/order | tr '\n' ' ')"
    finish
fi

# --- Root scheduler and parent partition -----------------------------------------------------
# await_ready KEY PID LOG FAILURE COMMAND...: polls COMMAND once a second until it succeeds; if
# it has not after 120 s, or process PID died, records KEY as FAIL with LOG and powers off.
await_ready() {
    key=$1 pid=$2 log=$3 failure=$4
    shift 4
    tries=0
    until "$@"; do
        tries=$((tries + 1))
        if [ $tries -ge 120 ] || ! alive $pid; then
            result $key FAIL "$failure"
            sed "s/^/RIG $key.log| /" $log
            finish
        fi
        sleep 1
    done
}
root_answers() { $HV partition list --runtime-dir $RT >/tmp/list 2>&1; }
parent_connected() { grep -q 'connected to the root' $RT/parent.log 2>/dev/null || grep -q 'parent partition connected' $RT/root.log; }

mkdir -p $RT
started=$(uptime_s)
$HV root --runtime-dir $RT >$RT/root.log 2>&1 &
root_pid=$!
await_ready root $root_pid $RT/root.log "hv root did not answer on $RT/root.sock" root_answers
result root PASS "hv root answers (hv partition list works) after $(since $started) s"
started=$(uptime_s)
$HV parent --runtime-dir $RT >$RT/parent.log 2>&1 &
parent_pid=$!
await_ready parent $parent_pid $RT/parent.log "hv parent did not connect to the root" parent_connected
result parent PASS "hv parent connected to the root after $(since $started) s"
$HV partition list --runtime-dir $RT | sed 's/^/RIG list| /'

# follow NAME PREFIX: prints the partition's console lines not printed yet, with PREFIX, and
# appends them to /tmp/NAME.log. (The root keeps the last 2,000 lines; a boot prints far fewer.)
follow() {
    $HV partition console "$1" --lines 100000 --runtime-dir $RT >/tmp/$1.snapshot 2>/dev/null || return 0
    count=$(wc -l </tmp/$1.snapshot)
    shown=$(cat /tmp/$1.shown 2>/dev/null || echo 0)
    if [ "$count" -gt "$shown" ]; then
        tail -n +$((shown + 1)) /tmp/$1.snapshot | tee -a /tmp/$1.log | sed "s/^/$2| /"
        echo "$count" >/tmp/$1.shown
    fi
}
# state NAME: the partition's state and reason, e.g. "stopped (guest powered off)".
state() { $HV partition show "$1" --runtime-dir $RT 2>&1 | sed -n 's/^state: *//p'; }

# --- Smoke test: the embedded probe guest ----------------------------------------------------
if [ "$SMOKE" = 1 ]; then
    started=$(uptime_s)
    if out=$($HV partition create /rig/probe.json --start --runtime-dir $RT 2>&1); then
        say "probe guest: $out"
        deadline=$(( ${started%.*} + SMOKE_TIMEOUT ))
        verdict=""
        while [ -z "$verdict" ]; do
            sleep 2
            follow probe PROBE
            current=$(state probe)
            if grep -q 'probe: done' /tmp/probe.log 2>/dev/null; then
                verdict=PASS
            elif ! alive $root_pid; then
                verdict="FAIL hv root exited"
            elif [ "${current%% *}" = stopped ] || [ "${current%% *}" = crashed ]; then
                verdict="FAIL partition $current before 'probe: done'"
            elif [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ]; then
                verdict="FAIL no 'probe: done' within $SMOKE_TIMEOUT s"
            fi
        done
        follow probe PROBE
        if [ "$verdict" = PASS ]; then
            result smoke PASS "probe: done after $(since $started) s"
        else
            root_threads
            result smoke $verdict
        fi
        $HV partition stop probe --runtime-dir $RT | sed 's/^/RIG /'
        $HV partition delete probe --runtime-dir $RT >/dev/null 2>&1
    else
        echo "$out" | sed 's/^/RIG probe create| /'
        root_threads
        result smoke FAIL "hv partition create probe failed: $(echo "$out" | head -n 1)"
    fi
fi

# --- The Linux child partition ---------------------------------------------------------------
# The network checks (network-host.sh): the switch before the child, the checks once it is up.
[ -f /rig/network-host.sh ] && . /rig/network-host.sh
command -v network_host_setup >/dev/null && network_host_setup
sed 's/^/RIG linux.json| /' /rig/linux.json
storage_prepare
started=$(uptime_s)
if ! out=$($HV partition create /rig/linux.json --start --runtime-dir $RT 2>&1); then
    echo "$out" | sed 's/^/RIG linux create| /'
    root_threads
    result linux-create FAIL "hv partition create linux failed: $(echo "$out" | tr '\n' ' ' | cut -c1-300)"
    finish
fi
result linux-create PASS "$out"

# Wait for the checkpoints: with rig.quick=1 the VMBus version, else the three IC versions.
# Every 60 s without a new console line, say so, with where the root's threads wait.
deadline=$(( ${started%.*} + LINUX_TIMEOUT ))
verdict=""
quiet_since=$(cut -d. -f1 /proc/uptime)
lines_seen=0
while [ -z "$verdict" ]; do
    sleep 3
    follow linux CHILD
    now=$(cut -d. -f1 /proc/uptime)
    if [ "$(cat /tmp/linux.shown 2>/dev/null || echo 0)" != "$lines_seen" ]; then
        lines_seen=$(cat /tmp/linux.shown)
        quiet_since=$now
    elif [ $((now - quiet_since)) -ge 60 ]; then
        say "linux: no console output for 60 s (state $(state linux))"
        root_threads
        tail -n 5 $RT/root.log | sed 's/^/RIG root.log| /'
        quiet_since=$now
    fi
    current=$(state linux)
    touch /tmp/linux.log
    if [ "$QUICK" = 1 ] && grep -q 'Vmbus version:' /tmp/linux.log; then
        verdict=reached
    elif grep -q 'Heartbeat IC version' /tmp/linux.log && grep -q 'Shutdown IC version' /tmp/linux.log &&
         grep -q 'TimeSync IC version' /tmp/linux.log; then
        verdict=reached
    elif ! alive $root_pid; then
        verdict="hv root exited"
    elif grep -q 'Kernel panic' /tmp/linux.log; then
        sleep 3
        follow linux CHILD
        verdict="the child kernel panicked"
    elif [ "${current%% *}" = stopped ] || [ "${current%% *}" = crashed ]; then
        verdict="the partition is $current"
    elif [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ]; then
        verdict="timed out after $LINUX_TIMEOUT s"
    fi
done
say "linux: checkpoints: $verdict after $(since $started) s (state $current)"
if [ "$verdict" != reached ]; then
    root_threads
    result linux-boot FAIL "$verdict"
    $HV partition stop linux --runtime-dir $RT | sed 's/^/RIG /'
    finish
fi
result linux-boot PASS "checkpoints reached after $(since $started) s"

if [ "$QUICK" = 1 ]; then
    $HV partition stop linux --runtime-dir $RT | sed 's/^/RIG /'
    finish
fi

# The storage steps (storage-child.sh) run after the IC checkpoints: wait for them, answering the
# child's hot-add request on the way.
deadline=$(( $(cut -d. -f1 /proc/uptime) + LINUX_TIMEOUT / 2 ))
until storage_done || [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ] || ! alive $root_pid ||
      [ -n "$(child_crash linux)" ]; do
    sleep 3
    follow linux CHILD
    storage_follow
done
storage_done || say "linux: the storage steps did not finish $(child_crash linux)"
storage_check_protocol
command -v network_host_checks >/dev/null && network_host_checks
# Steps added in Tests/LinuxRig/steps (each a file sourced in name order) run here, with the Linux
# child up and its IC checkpoints reached, before the shutdown below.
for step in /rig/steps/*.sh; do
    [ -f "$step" ] && . "$step"
done

# Shut the child down through the shutdown integration service and wait until it is stopped.
sleep 5
follow linux CHILD
started=$(uptime_s)
say "linux: hv partition shutdown linux"
$HV partition shutdown linux --runtime-dir $RT 2>&1 | sed 's/^/RIG shutdown| /'
deadline=$(( ${started%.*} + 300 ))
current=$(state linux)
while [ "${current%% *}" != stopped ] && [ "${current%% *}" != crashed ] && [ -z "$(child_crash linux)" ] &&
      [ "$(cut -d. -f1 /proc/uptime)" -lt "$deadline" ]; do
    sleep 2
    follow linux CHILD
    current=$(state linux)
done
follow linux CHILD
if [ "${current%% *}" = stopped ]; then
    result linux-shutdown PASS "$current after $(since $started) s"
else
    result linux-shutdown FAIL "state $current $(since $started) s after the shutdown request$(child_crash linux | sed 's/^/; /')"
    $HV partition stop linux --runtime-dir $RT | sed 's/^/RIG /'
fi
storage_check_file
storage_ide_child
finish
