/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The container's root filesystem as containerd describes it in
 * CreateTaskRequest.rootfs (usually one overlay mount from the snapshotter),
 * mounted at <bundle>/rootfs -- the same place containerd's runc shim uses,
 * so `delete` after a dead shim knows where to look.
 */

#include <stddef.h>

#include "containerd/types.pb-c.h"
#include "error.h"

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
