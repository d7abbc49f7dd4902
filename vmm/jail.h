/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * QEMU's private root: the only files a VM's QEMU can name.
 *
 * QEMU runs as an unprivileged uid of its own with no capability
 * (vmm/qemu.h), and everything it serves the guest is handed to it as an fd.
 * What is left for a QEMU the guest took over is the host's filesystem as
 * any uid sees it: world-readable files, other pods' world-readable state,
 * /proc of every process, abstract unix sockets. The jail takes those away:
 *
 *   /usr                 the host's, read-only, nosuid, nodev (QEMU, its
 *                        libraries, modules and firmware)
 *   /bin /lib /lib64 ... as on the host: the same symlinks into /usr, or
 *                        read-only binds where they are directories
 *   /dev/null zero urandom random, and kvm under KVM: binds of the nodes
 *   /boot/kernel, /boot/initrd: binds of the guest image, read-only
 *
 * on a tmpfs that is read-only once built; no /proc, /sys, /etc, /run, /tmp.
 * QEMU also gets its own network namespace (its only network is the tap fd
 * it is given) and IPC namespace.
 *
 * The tree is built in the caller as a detached mount (no path of the host
 * changes, and every error has its message); the child QEMU becomes only
 * attaches and enters it, with async-signal-safe calls between fork and exec.
 */

#include <stdbool.h>

#include "base/error.h"

#define VMM_JAIL_KERNEL "/boot/kernel"
#define VMM_JAIL_INITRD "/boot/initrd"

/* Builds the tree. initrd may be NULL. kvm: bind /dev/kvm. *ret_fd is the
 * detached tree (close it to drop it). */
int vmm_jail_build(const char *kernel, const char *initrd, bool kvm, int *ret_fd,
                   struct us_error **err);

/* In the child, as root, before dropping privileges: new mount, network and
 * IPC namespaces, the tree attached over mountpoint (any directory: the
 * namespace is private, the host does not see it) and made the root.
 * Async-signal-safe. Returns 0 or -errno. */
int vmm_jail_enter(int tree_fd, const char *mountpoint);
