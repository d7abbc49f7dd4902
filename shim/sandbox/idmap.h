/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A sandbox pod's user namespace: the host uid range its virtiofsd runs as
 * (or its QEMU, when QEMU serves the share over 9p: sandbox.shared_fs).
 *
 * virtiofsd serves files of every owner and creates, chowns and setuids
 * them as the guest asks. It runs as root of a user namespace of the pod's
 * own that maps ns 0..SANDBOX_IDMAP_SIZE-1 onto host base..base+SIZE-1: on
 * the host it is uid `base`, with no capability outside that namespace.
 * Everything it serves reaches it through mounts idmapped into the same
 * namespace (share.h, rootfs.h), so a file owned by host uid 0 is ns uid 0
 * to it, and one it creates as ns uid u is stored as host uid u.
 *
 * Ranges: slot s of SANDBOX_IDMAP_SLOTS is base SANDBOX_IDMAP_BASE + s *
 * SANDBOX_IDMAP_SIZE, all within [0x70000000, 0x80000000), above QEMU's
 * uids (0x60000000 + pid, pids < 2^22) and below 2^31. A pod holds its slot
 * by an flock on SANDBOX_IDMAP_DIR/<s>, which the kernel drops when the
 * shim dies, so no two live pods ever share a range; the slot's number is
 * written to the pod's state dir for `shim delete` to remove the file.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "base/error.h"

#define SANDBOX_IDMAP_BASE  0x70000000u
#define SANDBOX_IDMAP_SIZE  65536u
#define SANDBOX_IDMAP_SLOTS 4096u
/* A name no containerd namespace can have (they start with a letter or a
 * digit), under the VM pods' state root. */
#define SANDBOX_IDMAP_DIR "/run/unishim/.uid-slots"
/* In the pod's state dir: the slot's number, for `shim delete`. */
#define SANDBOX_IDMAP_SLOT_FILE "uid-slot"

struct sandbox_idmap {
        unsigned slot;
        uid_t base;    /* host uid (and gid) of ns 0 */
        int lock_fd;   /* the slot file, flock'ed; -1: none held */
        int userns_fd; /* the user namespace; -1: none */
};

/* An idmap holding nothing (fds -1). */
void sandbox_idmap_init(struct sandbox_idmap *m);

/* Host uid of ns 0 for slot (< SANDBOX_IDMAP_SLOTS). Pure. */
uid_t sandbox_idmap_slot_base(unsigned slot);

/* Parses a slot number as written in SANDBOX_IDMAP_SLOT_FILE ("17\n"):
 * decimal, below SANDBOX_IDMAP_SLOTS. Pure; -EINVAL with *err otherwise. */
int sandbox_idmap_slot_parse(const char *text, size_t len, unsigned *ret, struct us_error **err);

/* Takes the first free slot in dir (NULL: SANDBOX_IDMAP_DIR, created if
 * missing), creates its user namespace, and records the slot in
 * state_dir/SANDBOX_IDMAP_SLOT_FILE (state_dir NULL: not recorded). On
 * failure m holds nothing. */
int sandbox_idmap_acquire(struct sandbox_idmap *m, const char *dir, const char *state_dir,
                          struct us_error **err);

/* Closes the namespace and gives the slot back (its file removed while it
 * is still locked). Idempotent. */
void sandbox_idmap_release(struct sandbox_idmap *m, const char *dir);

/* `shim delete` after the pod's shim died: removes the slot file that
 * state_dir records, unless another pod holds it by now. Missing is fine. */
int sandbox_idmap_cleanup_dead(const char *dir, const char *state_dir, struct us_error **err);

/* Creates a user namespace mapping ns 0..count-1 onto host base.. (uids and
 * gids alike); *ret_fd is an O_CLOEXEC fd of it. Needs root. */
int sandbox_idmap_userns(uid_t base, unsigned count, int *ret_fd, struct us_error **err);
