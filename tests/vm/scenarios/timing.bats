#!/usr/bin/env bats
# Timing in the guest (an emulator: only ratios count).
# The plugin's ADD and DEL of VF 0 (vlan, mac, spoofchk, trust; rebind to
# vfio-pci until /dev/vfio/<group> exists / back to igbvf until its netdev
# exists) against the same work done "raw" in bash: one
# `ip link set <pf> vf 0 ...` plus the sysfs writes (driver_override, unbind,
# drivers_probe) and the same waits.  TIMING_REPS (default 20) repetitions of
# each, interleaved (plugin first on even rounds, raw first on odd ones), in
# one boot; the plugin runs from tmpfs (stage_bin).  Prints the medians and
# the ratios ADD/raw and DEL/raw as TAP comments ("# timing: ..."), and fails
# if ADD/raw > TIMING_MAX_ADD_RATIO (default 1.2).
# Then ADDs in parallel: the plugin's ADD (vlan, spoofchk, rebind to
# vfio-pci) of all 7 VFs of the PF started at once against the same 7 one
# after another, TIMING_PAR_REPS (default 8) interleaved rounds, their DELs
# the same way as their ADDs, and every VF back as it was after each round's
# DELs (its driver, override and netdev name: DELs at once used to leave VFs
# with each other's names); fails if the ADD ratio of the medians is above
# TIMING_MAX_PAR_RATIO (default 0.75), and prints the DELs' ratio.
# Run:  tests/vm/run.sh tests/vm/scenarios/timing.bats

load helpers

setup_file() {
    untrace_helpers
    export MAC=02:00:00:00:00:10
    cni_reset_node 7
    PF=$(pf_ifname); VF0=$(vf_bdf 0); GROUP=$(iommu_group "$VF0")
    DEV=/sys/bus/pci/devices/$VF0
    INFO_BEFORE=$(vf_info 0)
    VFINFO_LIST_BEFORE=$(vfinfo_list)
    STATE_BEFORE=$(device_state "$VF0")
    ORIG_MAC=$(vf_field 0 .address)
    CONF=$(netconf "$VF0" --arg mac "$MAC" '. + {vlan: 100, mac: $mac, spoofchk: "off", trust: "on"}')
    export PF VF0 GROUP DEV INFO_BEFORE VFINFO_LIST_BEFORE STATE_BEFORE ORIG_MAC CONF
    pod_create pod-t
}

teardown_file() {
    pod_delete pod-t
}

setup() {
    scenario_setup chain
    [ -n "$CNI_BIN" ] || cni_stage
    # A sleep without a process: read with a timeout on a FIFO nobody writes.
    [ -p "$CNI_WORK/sleep.fifo" ] || mkfifo "$CNI_WORK/sleep.fifo"
    exec {SLEEP_FD}<> "$CNI_WORK/sleep.fifo"
}
teardown() { scenario_teardown; }

nap() { read -r -t 0.0005 -u "$SLEEP_FD" _ || true; }
now_us() { echo "${EPOCHREALTIME/./}"; }
# median_ms US...: the median of samples in microseconds, in ms.
median_ms() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f", m / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# at_most R MAX: the ratio R is not above MAX.
at_most() { awk -v r="$1" -v m="$2" 'BEGIN { exit !(r <= m) }'; }

# The same steps as the plugin, with the same short polls.
raw_add() {
    ip link set "$PF" vf 0 mac "$MAC" vlan 100 spoofchk off trust on
    echo vfio-pci > "$DEV/driver_override"
    echo "$VF0" > "$DEV/driver/unbind"
    echo "$VF0" > /sys/bus/pci/drivers_probe
    until [ "$DEV/driver" -ef /sys/bus/pci/drivers/vfio-pci ]; do nap; done
    until [ -c "/dev/vfio/$GROUP" ]; do nap; done
}
raw_del() {
    ip link set "$PF" vf 0 mac "$ORIG_MAC" vlan 0 spoofchk on trust off
    echo "$VF0" > "$DEV/driver/unbind"
    echo > "$DEV/driver_override"
    echo "$VF0" > /sys/bus/pci/drivers_probe
    until compgen -G "$DEV/net/*" > /dev/null; do nap; done
}
# The plugin exec'd the way a runtime does it: one fork + exec, the netconf on
# stdin, the result to a file (no env(1), pipeline or $(...) around it, so
# the harness costs the same as the raw `ip` call).
plugin() {
    CNI_COMMAND=$1 CNI_CONTAINERID=pod-t CNI_NETNS=/var/run/netns/pod-t CNI_IFNAME=net1 \
        CNI_PATH=/usr/lib/cni "$CNI_BIN" <<< "$CONF" > "$CNI_WORK/out" 2> "$CNI_WORK/stderr" ||
        fail "plugin $1 failed: $(cat "$CNI_WORK/out" "$CNI_WORK/stderr")"
}
plugin_add() { plugin ADD; }
plugin_del() { plugin DEL; }

# vfinfo_list: the PF's vfinfo_list as `ip -j link show` prints it (its last
# member): every field of every VF, verbatim.  The rounds compare it without
# a jq per check (a jq start costs most of a second under TCG).
vfinfo_list() {
    local j
    j=$(ip -j link show "$PF")
    [[ "$j" == *'"vfinfo_list":['* ]] || fail "no vfinfo_list in ip -j link show $PF: $j"
    echo "${j#*\"vfinfo_list\":}"
}

# Both ways must leave the same node state.
check_added() {
    [ "$(pci_driver "$VF0")" = vfio-pci ] && [ -c "/dev/vfio/$GROUP" ] || fail "$1: $VF0 not on vfio-pci"
}
check_deleted() {
    [ "$(device_state "$VF0")" = "$STATE_BEFORE" ] || fail "$1: $(device_state "$VF0") instead of $STATE_BEFORE"
    [ "$(vfinfo_list)" = "$VFINFO_LIST_BEFORE" ] ||
        fail "$1: VF 0's vfinfo entry $(vf_info 0) (before: $INFO_BEFORE); vfinfo_list $(vfinfo_list) instead of $VFINFO_LIST_BEFORE"
}

@test "warm-up: one plugin ADD/DEL and one raw ADD/DEL each leave VF 0 as before" {
    log "plugin $CNI_BIN; VF $VF0 (group $GROUP) original MAC $ORIG_MAC"
    plugin_add; check_added "warm-up plugin ADD"
    plugin_del; check_deleted "warm-up plugin DEL"
    raw_add; check_added "warm-up raw ADD"
    raw_del; check_deleted "warm-up raw DEL"
}

@test "plugin ADD within TIMING_MAX_ADD_RATIO (1.2) of raw, median of 20 interleaved rounds" {
    REPS=${TIMING_REPS:-20}
    MAX_RATIO=${TIMING_MAX_ADD_RATIO:-1.2}
    # bats traces every command of a test with a DEBUG trap: off here, so the
    # raw steps in bash cost what they cost in a plain script.
    trap - DEBUG
    P_ADD=(); P_DEL=(); R_ADD=(); R_DEL=()
    for ((r = 0; r < REPS; r++)); do
        for way in $( ((r % 2 == 0)) && echo "plugin raw" || echo "raw plugin"); do
            if [ "$way" = plugin ]; then
                t0=$(now_us); plugin_add; t1=$(now_us); check_added "plugin ADD $r"
                t2=$(now_us); plugin_del; t3=$(now_us); check_deleted "plugin DEL $r"
                P_ADD+=($((t1 - t0))); P_DEL+=($((t3 - t2)))
            else
                t0=$(now_us); raw_add; t1=$(now_us); check_added "raw ADD $r"
                t2=$(now_us); raw_del; t3=$(now_us); check_deleted "raw DEL $r"
                R_ADD+=($((t1 - t0))); R_DEL+=($((t3 - t2)))
            fi
        done
    done
    assert_no_state

    MPA=$(median_ms "${P_ADD[@]}"); MRA=$(median_ms "${R_ADD[@]}")
    MPD=$(median_ms "${P_DEL[@]}"); MRD=$(median_ms "${R_DEL[@]}")
    RA=$(ratio "$MPA" "$MRA"); RD=$(ratio "$MPD" "$MRD")
    echo "samples (us) plugin ADD: ${P_ADD[*]}"
    echo "samples (us) raw    ADD: ${R_ADD[*]}"
    echo "samples (us) plugin DEL: ${P_DEL[*]}"
    echo "samples (us) raw    DEL: ${R_DEL[*]}"
    tap_note "timing: ADD median $MPA ms, raw $MRA ms, ratio $RA ($REPS runs each, interleaved)"
    tap_note "timing: DEL median $MPD ms, raw $MRD ms, ratio $RD ($REPS runs each, interleaved)"
    at_most "$RA" "$MAX_RATIO" || fail "ADD/raw ratio $RA is above the target $MAX_RATIO"
}

# par_conf I: the netconf of VF I for the parallel rounds.
par_conf() { netconf "$(vf_bdf "$1")" '. + {vlan: 100, spoofchk: "off"}'; }
# par_plugin CMD I: the plugin on VF I as container pod-p<I> (no pipeline
# around it), its output to a file of its own.
par_plugin() {
    CNI_COMMAND=$1 CNI_CONTAINERID=pod-p$2 CNI_NETNS=/var/run/netns/pod-t CNI_IFNAME=net1 \
        CNI_PATH=/usr/lib/cni "$CNI_BIN" <<< "${PAR_CONF[$2]}" > "$CNI_WORK/out.$2" 2>&1
}
# par_run CMD parallel|serial: CMD on the 7 VFs; fails naming the VFs whose
# command failed.
par_run() {
    local i pids=() bad=""
    for ((i = 0; i < 7; i++)); do
        if [ "$2" = parallel ]; then
            par_plugin "$1" "$i" &
            pids+=($!)
        else
            par_plugin "$1" "$i" || bad+=" VF $i: $(cat "$CNI_WORK/out.$i")"
        fi
    done
    for ((i = 0; i < ${#pids[@]}; i++)); do
        wait "${pids[$i]}" || bad+=" VF $i: $(cat "$CNI_WORK/out.$i")"
    done
    [ -z "$bad" ] || fail "$1 ($2) failed:$bad"
}

@test "ADD and DEL of 7 VFs at once against one after another: every VF back under its own name, ADD ratio within TIMING_MAX_PAR_RATIO (0.75), medians of 8 interleaved rounds" {
    REPS=${TIMING_PAR_REPS:-8}
    MAX_RATIO=${TIMING_MAX_PAR_RATIO:-0.75}
    PAR_CONF=(); STATES=()
    for ((i = 0; i < 7; i++)); do
        PAR_CONF+=("$(par_conf "$i")")
        STATES+=("$(device_state "$(vf_bdf "$i")")")
    done
    trap - DEBUG
    PAR=(); SER=(); PAR_DEL=(); SER_DEL=()
    for ((r = 0; r < REPS; r++)); do
        for way in $( ((r % 2 == 0)) && echo "parallel serial" || echo "serial parallel"); do
            t0=$(now_us); par_run ADD "$way"; t1=$(now_us)
            for ((i = 0; i < 7; i++)); do
                [ "$(pci_driver "$(vf_bdf "$i")")" = vfio-pci ] || fail "round $r ($way): VF $i not on vfio-pci after ADD"
            done
            t2=$(now_us); par_run DEL "$way"; t3=$(now_us)
            for ((i = 0; i < 7; i++)); do
                [ "$(device_state "$(vf_bdf "$i")")" = "${STATES[$i]}" ] ||
                    fail "round $r ($way): $(device_state "$(vf_bdf "$i")") after DEL, was ${STATES[$i]}; all VFs were: ${STATES[*]}; are: $(for ((j = 0; j < 7; j++)); do device_state "$(vf_bdf "$j")"; done); the DELs said: $(cat "$CNI_WORK"/out.*)"
            done
            [ "$(vfinfo_list)" = "$VFINFO_LIST_BEFORE" ] || fail "round $r ($way): vfinfo_list $(vfinfo_list), was $VFINFO_LIST_BEFORE"
            if [ "$way" = parallel ]; then
                PAR+=($((t1 - t0))); PAR_DEL+=($((t3 - t2)))
            else
                SER+=($((t1 - t0))); SER_DEL+=($((t3 - t2)))
            fi
        done
    done
    assert_no_state
    MP=$(median_ms "${PAR[@]}"); MS=$(median_ms "${SER[@]}")
    MPD=$(median_ms "${PAR_DEL[@]}"); MSD=$(median_ms "${SER_DEL[@]}")
    R=$(ratio "$MP" "$MS"); RD=$(ratio "$MPD" "$MSD")
    echo "samples (us) parallel ADD: ${PAR[*]}"
    echo "samples (us) serial ADD:   ${SER[*]}"
    echo "samples (us) parallel DEL: ${PAR_DEL[*]}"
    echo "samples (us) serial DEL:   ${SER_DEL[*]}"
    tap_note "timing: 7 ADDs at once $MP ms, one after another $MS ms, ratio $R ($REPS rounds each, interleaved, $(nproc) vCPUs)"
    tap_note "timing: 7 DELs at once $MPD ms, one after another $MSD ms, ratio $RD"
    at_most "$R" "$MAX_RATIO" || fail "parallel/serial ratio $R is above the target $MAX_RATIO"
}
