/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The container's root filesystem as containerd describes it in
 * CreateTaskRequest.rootfs (usually one overlay mount from the snapshotter),
 * mounted at <bundle>/rootfs -- the same place containerd's runc shim uses,
 * so `delete` after a dead shim knows where to look.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "containerd/types.pb-c.h"
#include "base/error.h"

/* Mounts each entry in order at <bundle>/rootfs. On failure, whatever was
 * mounted is unmounted again. */
int shim_rootfs_mount(const char *bundle, Containerd__Types__Mount *const *mounts, size_t n,
                      struct us_error **err);

/* Unmounts everything at <bundle>/rootfs (repeatedly, lazily). Missing is fine. */
int shim_rootfs_unmount(const char *bundle, struct us_error **err);

/* Translates fstab-style options into mount(2) flags and a data string
 * (malloc'ed into *ret_data, may be NULL). Exposed for tests. */
int shim_mount_options(char *const *options, size_t n, unsigned long *ret_flags,
                       unsigned long *ret_propagation, char **ret_data, struct us_error **err);

/* containerd's overlay mount taken apart (mount(8)-style options). */
struct shim_overlay {
        char **lower; /* lowerdir, the top layer first */
        size_t n_lower;
        char *upper, *work; /* both, or neither: a read-only overlay */
        char **options;     /* the others, "key" or "key=value", in order */
        size_t n_options;
        unsigned long flags; /* MS_RDONLY, MS_NOSUID, ... */
};

/* At most this many lower layers (overlayfs' own limit). */
#define SHIM_OVERLAY_MAX_LOWER 500

/* Parses an overlay mount's options. Layer paths must be absolute, without
 * an escape ('\\') or an empty entry. Pure. *ret: shim_overlay_free. */
int shim_overlay_parse(char *const *options, size_t n, struct shim_overlay **ret,
                       struct us_error **err);
struct shim_overlay *shim_overlay_free(struct shim_overlay *o);

/* A detached recursive (or not) clone of src, idmapped into userns_fd and
 * read-only when asked, in *ret_tree. A filesystem that refuses idmapped
 * mounts is an error naming it (-EINVAL or -EPERM). */
int shim_idmapped_clone(const char *src, bool recursive, int userns_fd, bool readonly,
                        int *ret_tree, struct us_error **err);

/* The container's root filesystem as a detached mount tree (*ret_tree, for
 * move_mount) whose files keep their owners for a process of the user
 * namespace userns_fd, whose ns 0 is host uid/gid (uid, gid): an overlay
 * (one mount of type overlay) is mounted anew from idmapped clones of its
 * layers, handed to overlayfs by fd, and created with (uid, gid) as its
 * mounter's fs ids, so that its own work (copy-up, whiteouts) goes through
 * the layers' idmapping as ns 0; a bind (one bind mount) or a rootfs
 * without mounts (rootfs_dir itself) is an idmapped clone. Nothing is
 * attached anywhere and nothing is left on failure. Needs root and a
 * kernel whose overlayfs takes layers by fd (6.13). */
int shim_rootfs_idmapped(Containerd__Types__Mount *const *mounts, size_t n, const char *rootfs_dir,
                         int userns_fd, uid_t uid, gid_t gid, int *ret_tree, struct us_error **err);
