/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The sandbox guest image: the kernel and initramfs a pod's VM boots, and
 * what its kernel can do, as the image's kernel-config says (the kernel's
 * .config, which vmm/guest-image/build-image.sh puts beside vmlinux).
 */

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "policy/policy.h"

/* The file beside the image's vmlinux that holds its kernel's config. */
#define SANDBOX_IMAGE_KERNEL_CONFIG "kernel-config"

/* The kernel and initramfs: UNISHIM_GUEST_DIR, else next to the binary as
 * installed (<prefix>/bin -> <prefix>/share/unishim), else the build tree
 * (<build>/shim -> <build>/vmm/guest-image). *ret_kernel and *ret_initrd
 * are absolute, resolved paths the caller frees. */
int sandbox_image_find(char **ret_kernel, char **ret_initrd, struct us_error **err);

/* The operator's kernel and initrd (sandbox.kernel, sandbox.initrd) when
 * both are set, copied as given, else sandbox_image_find's. The one
 * lookup of the guest image, for the shim and unishimctl alike. */
int sandbox_image_resolve(const char *kernel, const char *initrd, char **ret_kernel,
                          char **ret_initrd, struct us_error **err);

/* Whether a kernel .config text (len bytes, not NUL-terminated) has what a
 * 9p share needs in the guest: the 9p filesystem and its virtio transport,
 * built in or as modules (CONFIG_9P_FS, CONFIG_NET_9P_VIRTIO; the image
 * build puts the modules of a kernel that has them in the initramfs).
 * Pure. */
bool sandbox_image_config_has_9p(const char *config, size_t len);

/* Whether a pod gets its files over 9p (*ret_9p true) or virtio-fs with
 * the guest kernel `kernel` (a vmlinux path) and the operator's
 * sandbox.shared_fs `want`, as the kernel-config beside the kernel says:
 * AUTO is 9p when that file says the kernel has it, else virtio-fs (a
 * kernel without the file, an operator's own, included); "9p" on a kernel
 * whose file says it has none is refused: -ENOTSUP with a message naming
 * sandbox.shared_fs and the image's directory (a kernel without the file
 * is not judged). A file that cannot be read is an error for "9p", and
 * virtio-fs with a warning for AUTO. Returns 0, or a negative errno with
 * err. */
int sandbox_image_shared_fs(enum policy_shared_fs want, const char *kernel, bool *ret_9p,
                            struct us_error **err);
