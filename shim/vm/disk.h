/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A vm pod's disk: the image's disk file (KubeVirt's containerDisk layout:
 * the one *.qcow2, *.img or *.raw under /disk/, or the path the pod names),
 * never written, and the pod's copy-on-write overlay on top of it, which
 * goes with the pod.
 *
 * The image is the pod author's: its disk file is found inside the
 * container's rootfs by fd (openat2 RESOLVE_IN_ROOT: a symlink in the image
 * never leads out of it), bind-mounted read-only into the pod's dir, and
 * read by qemu-img and QEMU only as the pod's unprivileged QEMU uid. A disk
 * that names a backing file or an external data file (which would make
 * QEMU open host files of the author's choosing) is refused; the overlay's
 * backing chain is given to libvirt explicitly (vmm/domain.h), so no header
 * of the author's file chooses what is opened.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"
#include "base/loop.h"

#define VM_DISK_DIR      "disk"
#define VM_DISK_BASE     "base"       /* the image's disk, bound read-only */
#define VM_DISK_OVERLAY  "disk.qcow2" /* the pod's writes */
#define VM_DISK_QEMU_IMG "/usr/bin/qemu-img"

struct vm_disk {
        char format[8];        /* of the base: "qcow2" or "raw" */
        uint64_t virtual_size; /* bytes */
        char name[256];        /* the image's file, for messages */
};

struct vm_disk_prep;

/* The preparation's end, on the loop: r 0 with disk filled in, or the
 * error, which done frees. */
typedef void (*vm_disk_done_fn)(void *userdata, int r, struct us_error *err,
                                const struct vm_disk *disk);

/* Finds the disk in rootfs (path: the pod's unishim.io/disk-path, relative
 * to the image's root; NULL: the one under /disk/) and binds it read-only
 * at dir_fd/VM_DISK_BASE, now; then checks it with qemu-img as uid:gid and
 * makes the overlay dir_fd/VM_DISK_OVERLAY (owned by uid) on top of it,
 * from the loop: qemu-img runs as a child the caller reaps (it hands each
 * reaped child to vm_disk_prep_child_exited), so the loop never waits for
 * it, and done(userdata, ...) says how it ended. dir_path is dir_fd's path
 * (qemu-img takes paths). Errors say what is wrong with the image: no
 * disk, two, unreadable, a format QEMU cannot read, a backing file. On
 * failure (at once, or reported to done) nothing is left mounted. *ret
 * frees itself after done. */
int vm_disk_prepare(struct us_loop *loop, const char *rootfs, const char *path, int dir_fd,
                    const char *dir_path, uid_t uid, gid_t gid, vm_disk_done_fn done,
                    void *userdata, struct vm_disk_prep **ret, struct us_error **err);

/* The caller reaped pid (wait status): true when it was p's qemu-img. p
 * NULL is fine. */
bool vm_disk_prep_child_exited(struct vm_disk_prep *p, pid_t pid, int status);

/* Stops a preparation: its qemu-img killed (the caller reaps it, as any
 * child), done never called; the mount and files stay for
 * vm_disk_release and the caller. NULL is fine. Returns NULL. */
struct vm_disk_prep *vm_disk_prep_free(struct vm_disk_prep *p);

/* Unmounts dir_fd's VM_DISK_BASE (0 when it is not mounted). */
int vm_disk_release(int dir_fd, struct us_error **err);
