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
#include <sys/types.h>

#include "base/error.h"
#include "qemu.h"

/* The device layout the template code builds (machine options, devices and
 * their order). Part of every key: changing the layout in the code must
 * retire all templates saved by an older one. 2: vmm_qemu_argv's
 * VMM_TEMPLATE_SOURCE/CLONE (RAM in a file, no balloon, virtio-rng). 3:
 * vmm_template_vm_config: QEMU in its private root, virtio-net on a tap,
 * one 9p device (VMM_TEMPLATE_SHARE_TAG at the jail's /share/0). 4: QEMU
 * as root of a user namespace (9p's security_model=passthrough and
 * multidevs=remap, as a sandbox pod's clone runs), the template's MAC
 * VMM_TEMPLATE_MAC. 5: a balloon with free page reporting (the clone's
 * QEMU under vmm_qemu_clone_filter), init_on_free=0 on the kernel's
 * command line. 6: the guest saved with a host on both agent ports since
 * its boot (unishimctl's builder; an older one could save an agent that
 * drops a clone's first call, docs/vmm.md). */
#define VMM_TEMPLATE_LAYOUT 6

/* The MAC a template's guest is saved with, and so every clone's guest has
 * until its agent gives the device the pod's (UpdateNetwork's device_mac
 * names it). Locally administered. */
#define VMM_TEMPLATE_MAC "02:75:6e:74:6d:70"

/* The mount tag of a templated VM's one 9p device. */
#define VMM_TEMPLATE_SHARE_TAG "pod"

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

/* The value of a manifest's `name` line (e.g. "kernel", "memory_mib"):
 * *ret (caller frees). Pure. Returns 0, -ENOENT (no such line), -EINVAL
 * (malformed), -ENOMEM. */
int vmm_template_manifest_field(const char *manifest, const char *name, char **ret);

/* Whether a template saved with `manifest` can still be hit on this host:
 * its layout is VMM_TEMPLATE_LAYOUT, its host is host_id
 * (vmm_template_host_id_read), and each file it names (QEMU, kernel,
 * initrd) is there and stat()s as it records. No input set could give its
 * key otherwise, so a template that is not current is stale for good.
 * Returns 1 (current), 0 and *ret_why (stale: why, in words; caller frees),
 * or a negative errno (a file could not be stat()ed for another reason than
 * being gone: undecided; -ENOMEM). */
int vmm_template_manifest_current(const char *manifest, const char *host_id, char **ret_why);

#define VMM_TEMPLATE_KEY_LEN 64

/* The key of a manifest: lowercase hex SHA-256, the name of the template's
 * directory in the cache. */
void vmm_template_key(const char *manifest, char out[VMM_TEMPLATE_KEY_LEN + 1]);

/* --- The QEMU config of a template and of its clones ---------------------- */

/* What differs between the VMs of one template: none of it is in the key,
 * none of it changes the device layout. */
struct vmm_template_instance {
        const char *id;           /* for messages and QEMU's -name */
        const char *state_dir;    /* vmm_vm_config.state_dir */
        struct us_loop *loop;     /* required, as for vmm_vm_start */
        struct us_cgroup *cgroup; /* may be NULL */
        size_t console_log_max;   /* 0: VMM_CONSOLE_LOG_DEFAULT */
        /* The template's RAM (> 2, memory_mib large): a memfd the template
         * writes (shared), a clone maps copy-on-write. */
        int memory_fd;
        /* Required (> 2): the VM's tap. A template's is a tap in a
         * throwaway network namespace (vmm_template_tap_open). */
        int tap_fd;
        const char *mac; /* NULL: VMM_TEMPLATE_MAC; a clone's guest keeps
                          * the template's MAC until its agent sets the pod's */
        /* Required (> 2): the user namespace QEMU runs in as its root, with
         * 9p's passthrough security model (vmm_vm_config.qemu_userns). A
         * clone's is its pod's (the share idmapped into it); a template's
         * one of its own (vmm_template_userns_open).
         * The 9p options follow this, so template and clones must agree. */
        int userns_fd;
        /* Required, absolute: the directory bound at the jail's /share/0
         * (VMM_JAIL_SHARE_FMT), the 9p device's path. An empty directory
         * for the template (its guest never mounts it), the pod's share
         * for a clone. */
        const char *share_dir;
};

/* A VM's config and what it points to: cfg.shares points at share, so the
 * struct is used where it was filled, never copied. */
struct vmm_template_vm {
        struct vmm_vm_config cfg;
        struct vmm_share share;
};

/* The one place the layout of a template and of its clones is decided, so
 * that the two can never differ: microvm in QEMU's private root, the
 * agent's two virtio-serial ports, virtio-net on inst->tap_fd, virtio-rng,
 * the balloon, the RAM on inst->memory_fd, and one 9p device (tag
 * VMM_TEMPLATE_SHARE_TAG, path /share/0 in the jail, inst->share_dir bound
 * there; QEMU as root of inst->userns_fd). role: VMM_TEMPLATE_SOURCE or VMM_TEMPLATE_CLONE. Pure:
 * fills *out (pointing into in's and inst's strings, which must outlive it). Returns 0, or -EINVAL
 * (a missing input, a bad role or fd). */
int vmm_template_vm_config(const struct vmm_template_inputs *in, enum vmm_template_role role,
                           const struct vmm_template_instance *inst, struct vmm_template_vm *out,
                           struct us_error **err);
