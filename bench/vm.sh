# shellcheck shell=bash
# vm-pod rows of bench/run.sh (sourced after the sandbox rows; uses its
# $work, ectl, env_pod_json, now_us, percentile, sb_row, sb_pss, sb_shim_pids,
# sb_median). BENCH_VM_N (default 2) of each, alternating:
#
#   unishim   a vm pod of the Debian test image ($CRI_VM_IMAGE): from
#             `unishimctl run` (RunPodSandbox + CreateContainer +
#             StartContainer) to the guest's qemu-guest-agent answering an
#             exec (guest-exec of `true`: one round trip more than a ping)
#   baseline  `virsh create` of the same guest's domain (the same disk as a
#             qcow2 overlay, a cloud-init seed, machine, vCPUs, memory,
#             serial console, agent channel; a NIC on QEMU's user-mode
#             network, configured by DHCP, since a guest without one waits
#             for it at boot) to libvirt's `guest-ping` answered
#
# and the host memory a vm pod costs beyond its QEMU (the pod's shim: there
# is no per-pod helper), with the node's libvirtd reported on its own. A
# full distribution boot under TCG takes one to several minutes: this part
# takes about 4 × that.

VM_N=${BENCH_VM_N:-2}
VM_BOOT_S=${BENCH_VM_BOOT_S:-900}

vm_pod_json() {
        env_pod_json "$work/$1.json" --arg n "$1" --arg i "$CRI_VM_IMAGE" '{name: $n,
                runtime_handler: "unishim", annotations: {"unishim.io/isolation": "vm"},
                containers: [{name: "vm", image: $i, command: ["vm"]}]}'
        echo "$work/$1.json"
}

# vm_unishim NAME: one vm pod to its agent; appends µs to the phase files.
# Leaves the pod running (the caller measures, then removes it).
vm_unishim() {
        local f t0 t1 timing deadline
        f=$(vm_pod_json "$1")
        t0=$(now_us)
        if ! ectl run --timing "$f" >"$work/vm.id" 2>"$work/vm.timing"; then
                VM_ERR=$(tr -d '\0' <"$work/vm.timing" | head -c 300 | tr '\n' ' ')
                return 1
        fi
        deadline=$((SECONDS + VM_BOOT_S))
        until ectl exec "$1" -- true </dev/null >/dev/null 2>&1; do
                if [ "$SECONDS" -ge "$deadline" ]; then
                        VM_ERR="no answer from the guest agent within ${VM_BOOT_S}s"
                        return 1
                fi
        done
        t1=$(now_us)
        timing=$(grep '^{' "$work/vm.timing" | tail -n1)
        echo $((t1 - t0)) >>"$work/vm.total" # µs, as percentile takes them
        jq -r '(.RunPodSandbox * 1000 | round)' <<<"$timing" >>"$work/vm.rps"
        jq -r '(.CreateContainer * 1000 | round)' <<<"$timing" >>"$work/vm.cc"
        jq -r '(.StartContainer * 1000 | round)' <<<"$timing" >>"$work/vm.sc"
}

# The baseline's domain: what vmm/domain.c gives a vm pod, with libvirt's
# own agent channel (virsh talks to it), console (a pty) and NIC (user-mode:
# no tap, no pod).
vm_baseline_xml() { # DIR NAME
        cat >"$1/domain.xml" <<EOF
<domain type='qemu'>
  <name>$2</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='$1/disk.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='$1/base.qcow2'/><backingStore/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$1/seed.iso'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <interface type='user'><model type='virtio'/></interface>
    <serial type='pty'><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <panic model='isa'/>
  </devices>
</domain>
EOF
}

# vm_baseline I: virsh create to guest-ping; appends µs to vm.base.
vm_baseline() {
        local d=$work/vm-base-$1 name=unishim-bench-bare-$1 t0 t1 deadline
        mkdir -p "$d"
        chmod 0711 "$work" # libvirt's QEMU (libvirt-qemu) opens the files by path
        cp "$ENV_VM_IMAGE_DIR/disk.qcow2" "$d/base.qcow2"
        qemu-img create -q -f qcow2 -F qcow2 -b "$d/base.qcow2" "$d/disk.qcow2"
        printf 'instance-id: bench-%s\nlocal-hostname: bench\n' "$1" >"$d/meta-data"
        printf '#cloud-config\n' >"$d/user-data"
        genisoimage -quiet -output "$d/seed.iso" -volid cidata -joliet -rock "$d/meta-data" "$d/user-data"
        chmod 0755 "$d"
        chmod 0644 "$d"/*
        vm_baseline_xml "$d" "$name"
        t0=$(now_us)
        if ! virsh -c "$ENV_LIBVIRT_URI" create "$d/domain.xml" >"$d/create.log" 2>&1; then
                VM_ERR="virsh create: $(head -c 300 "$d/create.log" | tr '\n' ' ')"
                return 1
        fi
        deadline=$((SECONDS + VM_BOOT_S))
        until virsh -c "$ENV_LIBVIRT_URI" qemu-agent-command --timeout 5 "$name" \
                '{"execute":"guest-ping"}' >/dev/null 2>&1; do
                if [ "$SECONDS" -ge "$deadline" ]; then
                        VM_ERR="bare domain: no guest-ping answer within ${VM_BOOT_S}s"
                        virsh -c "$ENV_LIBVIRT_URI" destroy "$name" >/dev/null 2>&1 || true
                        return 1
                fi
                sleep 0.5
        done
        t1=$(now_us)
        echo $((t1 - t0)) >>"$work/vm.base"
        virsh -c "$ENV_LIBVIRT_URI" destroy "$name" >/dev/null 2>&1 || true
        rm -f "/var/log/libvirt/qemu/$name.log"
}

vm_bench() {
        local i shim qemu pss_shim=null pss_qemu=null pss_lv=null lvpid
        if [ -z "${CRI_VM_IMAGE:-}" ] || [ "${ENV_LIBVIRT:-0}" != 1 ]; then
                SB_NOTES+="vm rows skipped: no vm image or libvirtd in this environment."$'\n'
                return 0
        fi
        echo "bench: vm pods ($VM_N starts to the guest agent, alternating with $VM_N bare virsh create)"
        for t in total rps cc sc base; do : >"$work/vm.$t"; done
        for ((i = 0; i < VM_N; i++)); do
                if ! vm_unishim "bench-vm-$i"; then
                        SB_NOTES+="**vm pod start failed**: $VM_ERR"$'\n'
                        echo "bench: vm pod FAILED: $VM_ERR" >&2
                        SB_FAILED=1
                        CTR_TIMEOUT=60 ectl rm --timeout 0 "bench-vm-$i" >/dev/null 2>&1 || true
                        break
                fi
                if [ "$i" = 0 ]; then
                        # Idle memory, the guest booted and settled.
                        shim=$(sb_shim_pids "$(head -n1 "$work/vm.id")")
                        qemu=$(pgrep -f "guest=unishim-bench-vm-$i-" | head -n1 || true)
                        pss_shim=$(sb_pss $shim)
                        pss_qemu=$(sb_pss $qemu)
                        lvpid=$(env_libvirt_pid 2>/dev/null || true)
                        [ -n "$lvpid" ] && pss_lv=$(sb_pss "$lvpid")
                fi
                CTR_TIMEOUT=60 ectl rm --timeout 0 "bench-vm-$i" >/dev/null 2>&1 || true
                if ! vm_baseline "$i"; then
                        SB_NOTES+="**bare virsh create failed**: $VM_ERR"$'\n'
                        echo "bench: bare virsh create FAILED: $VM_ERR" >&2
                        SB_FAILED=1
                        break
                fi
        done
        sb_row "vm pod start to its guest agent (run + agent answers), median; baseline: bare virsh create to guest-ping" \
                ms "$(sb_median "$work/vm.total")" "$(sb_median "$work/vm.base")"
        sb_row "vm RunPodSandbox, median" ms "$(sb_median "$work/vm.rps")"
        sb_row "vm CreateContainer (containerd's container record only), median" ms "$(sb_median "$work/vm.cc")"
        sb_row "vm StartContainer (the task: disk checks, overlay, seed, domain created paused, resumed), median" ms "$(sb_median "$work/vm.sc")"
        sb_row "vm pod fixed host memory beyond QEMU (the pod's shim, PSS); goal 16 MiB" KiB "$pss_shim"
        sb_row "vm pod's QEMU PSS (1024 MiB guest, booted)" KiB "$pss_qemu"
        sb_row "the node's libvirtd PSS (shared by every vm pod)" KiB "$pss_lv"
}
