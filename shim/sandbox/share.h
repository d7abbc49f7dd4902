/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The host side of a VM pod's virtio-fs share: how each container's rootfs
 * and bind-mount sources reach the guest without the guest ever writing the
 * share's structure.
 *
 *   <state_dir>/mounts/   the staging tree, private to the host. The shim
 *                         creates <cid>/rootfs and <cid>/mounts/<i> here
 *                         and binds onto them. A bind mount of itself with
 *                         shared propagation.
 *   <state_dir>/shared/   what virtiofsd serves: a bind of mounts/ that is
 *                         read-only and a slave of it. Every bind made in
 *                         mounts/ propagates here (and into virtiofsd's own
 *                         mount namespace) with its own flags: a container's
 *                         rootfs stays writable, a read-only volume stays
 *                         read-only, and the directories between them are on
 *                         a read-only mount, so the guest cannot rename,
 *                         replace, create or fill anything in the structure
 *                         that the host later walks or mounts onto.
 *
 * This is the layout Kata moved to after CVE-2020-28914. The host still goes
 * by file descriptor below mounts/ (mkdirat, O_EXCL, move_mount onto a dir
 * fd, fs-util's removal) so a mistake elsewhere cannot turn into a path the
 * guest chose.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "containerd/types.pb-c.h"
#include "base/error.h"

struct sandbox_share;

/* Creates mounts/ and shared/ under state_dir (which must exist and be
 * private to the host) with the propagation above. */
int sandbox_share_new(const char *state_dir, struct sandbox_share **ret, struct us_error **err);

/* From now on, what the share is given is idmapped into the user namespace
 * userns_fd (dup'ed), whose ns 0 is host (uid, gid): the namespace its
 * virtiofsd runs in (idmap.h), so that files keep their owners. The
 * share's own directories stay the host's root's, unmapped there (the
 * guest sees them owned by the overflow uid and can change none of them),
 * and open to all (0755) for virtiofsd to traverse them. */
int sandbox_share_set_idmap(struct sandbox_share *s, int userns_fd, uid_t uid, gid_t gid,
                            struct us_error **err);

/* The directory to export to the guest (state_dir/shared). */
const char *sandbox_share_guest_dir(const struct sandbox_share *s);

/* Creates <cid>/ (which must not exist yet: -EEXIST) with <cid>/rootfs, a
 * writable recursive bind of rootfs, and an empty <cid>/mounts/. With an
 * idmap, <cid>/rootfs is made from what rootfs was mounted from, mounts
 * (containerd's, n of them; none: rootfs is a plain directory) instead:
 * shim_rootfs_idmapped. */
int sandbox_share_add_container(struct sandbox_share *s, const char *cid, const char *rootfs,
                                Containerd__Types__Mount *const *mounts, size_t n,
                                struct us_error **err);

/* Binds src (a host path from the container's spec) at <cid>/mounts/<index>,
 * a directory or a file like src; readonly binds are read-only before they
 * are attached, so no copy of them is ever writable. With from_host the
 * bind is a slave of src: a mount made below src on the host later shows
 * in the guest (HostToContainer); else it is private to the share (None).
 * Nothing made in the share reaches src. With an idmap, a
 * source whose filesystem refuses idmapped mounts is an error naming it. */
int sandbox_share_add_bind(struct sandbox_share *s, const char *cid, size_t index, const char *src,
                           bool readonly, bool from_host, struct us_error **err);

/* Unmounts <cid>/rootfs and every <cid>/mounts/<i> and removes <cid>/.
 * Idempotent. */
int sandbox_share_remove_container(struct sandbox_share *s, const char *cid, struct us_error **err);

/* The share a shim made in state_dir before it died (shim delete): for
 * sandbox_share_remove_container, and sandbox_share_free detaches it. */
int sandbox_share_open(const char *state_dir, struct sandbox_share **ret, struct us_error **err);

/* Detaches shared/ and mounts/ (with every bind still below them) and frees
 * s; mounts/ and shared/ are left as empty directories for the caller's
 * removal of state_dir. Accepts NULL; returns NULL. */
struct sandbox_share *sandbox_share_free(struct sandbox_share *s);

/* Frees s and leaves its mounts in place (a share opened by
 * sandbox_share_open that others may still use). Accepts NULL. */
void sandbox_share_forget(struct sandbox_share *s);
