/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The libvirt domain of a vm pod, as XML (docs/design-decisions.md, "The vm
 * kind: where libvirt runs"). A pure function of its config, like QEMU's
 * argv for sandbox pods (vmm/qemu.h), so that a reader sees every element
 * the pod's VM gets in one place and tests can check it without libvirt:
 *
 *   type='qemu' or 'kvm', machine 'pc' (libvirt has no microvm), ACPI (a
 *     SIGTERM is an ACPI power button), poweroff, reboot and crash all end
 *     the domain (the task's exit); under TCG a bounded translation cache;
 *   the static DAC label: QEMU runs as the pod's own uid and gid, never
 *     root, and libvirt chowns nothing;
 *   disk: the pod's copy-on-write overlay (virtio); the cloud-init seed as
 *     a read-only virtio disk;
 *   NIC: the pod's tap, opened by name (managed='no'), virtio, the MAC
 *     netplumb chose;
 *   serial console: connects to a socket the shim listens on;
 *   the qemu-guest-agent channel, connected to a socket of the shim's
 *     (exec goes through it, vmm/qga.h);
 *   pvpanic: a guest kernel panic ends the domain as crashed;
 *   no USB, no balloon, no graphics.
 *
 * Every string is checked (names, paths, MAC, uuid) and escaped for XML.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "base/error.h"

#define VMM_DOMAIN_NAME_MAX 100 /* libvirt's pid file path breaks near 254 */
/* Under TCG, QEMU's translation cache (<features><tcg><tb-cache>, libvirt
 * 8.0+): QEMU's own default is 1 GiB, filled as the guest runs code, in the
 * pod's cgroup, beyond what a RuntimeClass's overhead covers
 * (docs/kubernetes.md, "Overhead"; docs/performance.md has the measured
 * boot time and memory). */
#define VMM_DOMAIN_TB_CACHE_MIB     64u
#define VMM_DOMAIN_TB_CACHE_MAX_MIB 2048u

struct vmm_domain_config {
        const char *name; /* [A-Za-z0-9._-], 1..VMM_DOMAIN_NAME_MAX, not all digits */
        const char *uuid; /* the pod's UID, 8-4-4-4-12 hex; NULL: libvirt's choice */
        bool kvm;         /* false: TCG */
        /* TCG's translation cache, 1..VMM_DOMAIN_TB_CACHE_MAX_MIB; 0:
         * VMM_DOMAIN_TB_CACHE_MIB. Not used with kvm (no such cache). */
        unsigned tcg_tb_cache_mib;
        unsigned vcpus;
        unsigned memory_mib;
        const char *emulator; /* NULL: VMM_DEFAULT_QEMU */
        const char *disk;     /* qcow2 overlay, absolute */
        /* The overlay's backing file, given to libvirt rather than found
         * in the overlay's header: libvirt neither probes its format nor
         * labels it, and QEMU opens exactly this file read-only. NULL: the
         * disk has no backing file. */
        const char *backing;
        const char *backing_format; /* "qcow2" or "raw", with backing */
        const char *seed;           /* cloud-init seed ISO, absolute; NULL: none */
        const char *tap;            /* an existing tap's name; NULL: no NIC */
        const char *mac;            /* "52:54:00:..."; with tap */
        const char *console_socket; /* absolute; the shim listens on it */
        /* The qemu-guest-agent port (org.qemu.guest_agent.0): QEMU
         * connects to this socket the shim listens on, as for the console.
         * NULL: the port exists, unconnected on the host. */
        const char *agent_socket;
        const char *partition; /* <resource><partition>; NULL: libvirt's default */
        /* Who QEMU runs as: never root (-EINVAL for 0). The caller gives
         * this uid what QEMU opens by path (disk, seed, the console
         * socket); libvirt changes none of their owners. gid: libvirt's
         * QEMU group (libvirt-qemu on Debian), which libvirt's own state
         * dir /var/lib/libvirt/qemu (0750) admits; libvirt makes the
         * domain's private files there the uid's. */
        uid_t uid;
        gid_t gid;
};

/* The domain XML (malloc()ed) or -EINVAL naming the bad field. */
int vmm_domain_xml(const struct vmm_domain_config *cfg, char **ret, struct us_error **err);

/* A domain name for a pod: "unishim-<name, cut>-<first 12 of id>", the pod
 * name reduced to [A-Za-z0-9.-] (others become '-'). buf holds
 * VMM_DOMAIN_NAME_MAX + 1 bytes. */
void vmm_domain_name(const char *pod_name, const char *pod_id, char *buf);
