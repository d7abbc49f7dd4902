/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Sandbox VM templates (docs/vmm.md, "VM templates"): a guest booted once to
 * the point where its agent is ready, saved by QEMU migration, and restored
 * for each new pod with its RAM mapped copy-on-write from the template.
 *
 * This part names a template: its key is the SHA-256 of a manifest that
 * lists every input the saved state depends on. A restore is only correct
 * into a QEMU with the same binary, the same machine and device layout, the
 * same kernel and initramfs (the guest's memory holds them), the same CPU
 * model and the same RAM size; any difference must give another key, so a
 * changed input makes a new template instead of restoring a stale one.
 */

#include <stddef.h>

#include "base/error.h"
#include "qemu.h"

/* The device layout the template code builds (machine options, devices and
 * their order). Part of every key: changing the layout in the code must
 * retire all templates saved by an older one. 2: vmm_qemu_argv's
 * VMM_TEMPLATE_SOURCE/CLONE (RAM in a file, no balloon, virtio-rng). */
#define VMM_TEMPLATE_LAYOUT 2

/* Everything a template's saved state depends on. Files are named by path
 * and identified by what stat() says of them (see vmm_template_manifest). */
struct vmm_template_inputs {
        const char *qemu_binary;   /* NULL: VMM_DEFAULT_QEMU */
        const char *kernel;        /* required, absolute */
        const char *initrd;        /* may be NULL, else absolute */
        const char *cmdline_extra; /* may be NULL */
        const char *serial_ports[2];
        unsigned vcpus;           /* 0: 1 (as vmm_qemu_argv) */
        unsigned memory_mib;      /* 0: 256 */
        enum vmm_accel accel;     /* decided: KVM or TCG */
        unsigned tcg_tb_size_mib; /* 0: 32; TCG only */
        unsigned tsc_khz;         /* TCG: the tsc_early_khz= the guest booted with */
        /* The host's side of a restore: its kernel and CPU (see
         * vmm_template_host_id). Required. */
        const char *host_id;
};

/* The host's identity for template keys, from a /proc/cpuinfo text and the
 * kernel release: the first CPU's model name and flags (under KVM the guest
 * has the host's CPU model, and a restore onto other flags fails or
 * misbehaves) and the release (KVM's behaviour). Pure. Returns 0 and *ret
 * (caller frees), -ENOMEM. */
int vmm_template_host_id(const char *cpuinfo, size_t len, const char *release, char **ret,
                         struct us_error **err);

/* The same for this host (/proc/cpuinfo, uname). */
int vmm_template_host_id_read(char **ret, struct us_error **err);

/* The canonical manifest of `in`: one "name=<length>:<value>" line per
 * input in a fixed order (length-prefixed, so no two input sets give the same
 * text), with defaults applied as vmm_qemu_argv applies them. Each file
 * (QEMU, kernel, initrd) is listed with its path and the device, inode,
 * size, mtime and ctime stat() reports, so replacing or rewriting one
 * changes the manifest without hashing its content. Returns 0 and *ret
 * (caller frees); -EINVAL for a missing or malformed input (relative path,
 * control character, undecided accelerator), or stat()'s error. */
int vmm_template_manifest(const struct vmm_template_inputs *in, char **ret, struct us_error **err);

#define VMM_TEMPLATE_KEY_LEN 64

/* The key of a manifest: lowercase hex SHA-256, the name of the template's
 * directory in the cache. */
void vmm_template_key(const char *manifest, char out[VMM_TEMPLATE_KEY_LEN + 1]);
