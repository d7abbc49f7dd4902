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
 *   /share/<i>           9p shares: the i-th share's host directory with the
 *                        mounts under it, nosuid, nodev, noexec (read-only
 *                        for a read-only share). A fixed name, not the host
 *                        path: QEMU's argv is then the same for every pod,
 *                        which a VM template and its clones need (the
 *                        template's export path is restored into each clone).
 *                        The bind is a slave of the host directory: a mount
 *                        made under it after the build shows when the host
 *                        directory is a shared mount, and nothing made here
 *                        goes back. Every other bind is private.
 *   /proc                with 9p shares only (QEMU's 9p server sets modes
 *                        through /proc/self/fd): a procfs of its own with the
 *                        per-process part only (subset=pid) and only the
 *                        processes QEMU's uid may ptrace (hidepid=invisible)
 *
 * on a tmpfs that is read-only once built; no /sys, /etc, /run, /tmp, and
 * no /proc but the one above.
 * QEMU also gets its own network namespace (its only network is the tap fd
 * it is given) and IPC namespace.
 *
 * The tree is built in the caller as a detached mount (no path of the host
 * changes, and every error has its message); the child QEMU becomes only
 * attaches and enters it, with async-signal-safe calls between fork and exec.
 */

#include <stdbool.h>

#include "base/error.h"
#include "qemu.h"

#define VMM_JAIL_KERNEL "/boot/kernel"
#define VMM_JAIL_INITRD "/boot/initrd"
/* The i-th 9p share, as a printf format of i (size_t). */
#define VMM_JAIL_SHARE_FMT "/share/%zu"

/* Builds the tree. initrd may be NULL. kvm: bind /dev/kvm. shares: bound at
 * VMM_JAIL_SHARE_FMT by their index (9p shares; NULL when n_shares is 0).
 * *ret_fd is the detached tree (close it to drop it). */
int vmm_jail_build(const char *kernel, const char *initrd, bool kvm, const struct vmm_share *shares,
                   size_t n_shares, int *ret_fd, struct us_error **err);

/* In the child, as root, before dropping privileges: new mount, network and
 * IPC namespaces, the tree attached over mountpoint (any directory: the
 * namespace is private, the host does not see it) and made the root.
 * Async-signal-safe. Returns 0 or -errno. */
int vmm_jail_enter(int tree_fd, const char *mountpoint);
