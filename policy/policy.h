/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * What the CRI layer means to unishim: the annotations, and the operator's
 * isolation policy that decides, per pod, which kind runs it.
 *
 * Annotations are untrusted input from whoever may create pods; the
 * operator's config (/etc/unishim/config.json, or the path in the runtime
 * handler's options, like Kata's ConfigPath) says which kinds and which
 * unishim.io/ annotations pods may use.
 *
 * Config file (every key optional; unknown keys are errors, they are
 * typos in an operator's file):
 *   {
 *     "isolation": {"default": "container", "allowed": ["container", "sandbox", "vm"]},
 *     "annotations": {"allowed": ["unishim.io/isolation", "unishim.io/vcpus",
 *                                 "unishim.io/memory-mib"]},
 *     "mesh_sidecars": ["istio-proxy", "istio-init", "istio-validation",
 *                       "linkerd-proxy", "linkerd-init"],
 *     "sandbox": {"kernel": "/path/vmlinux", "initrd": "/path/initramfs.cpio",
 *                 "accel": "auto", "vcpus": 1, "max_vcpus": 2,
 *                 "memory_mib": 256, "max_memory_mib": 16384,
 *                 "console_log_max_bytes": 1048576, "agent_timeout_ms": 30000,
 *                 "virtiofsd_unprivileged": true},
 *     "vm": {"libvirt_uri": "qemu:///system", "qemu_group": "libvirt-qemu",
 *            "accel": "auto", "memory_mib": 1024, "user_data_max_bytes": 65536}
 *   }
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "oci/oci-spec.h"

#define UNISHIM_ANNOTATION_PREFIX    "unishim.io/"
#define UNISHIM_ANNOTATION_ISOLATION "unishim.io/isolation"
/* A VM-kind pod's size (Kata's default_vcpus/default_memory, per pod):
 * decimal integers within the operator's sandbox.max_vcpus and
 * sandbox.max_memory_mib. They win over the size derived from the pod's
 * limits; container-kind pods have them checked and ignored. */
#define UNISHIM_ANNOTATION_VCPUS      "unishim.io/vcpus"
#define UNISHIM_ANNOTATION_MEMORY_MIB "unishim.io/memory-mib"
/* The vm kind's guest (docs/vm.md). disk-path: the disk image's path in
 * the container image when it is not the one file under /disk/ (KubeVirt's
 * containerDisk `path:`). cloud-init-user-data: the guest's cloud-init
 * user-data, as given; it configures the guest as root, so the built-in
 * policy does not allow it: an operator lists it in annotations.allowed,
 * and vm.user_data_max_bytes bounds it. */
#define UNISHIM_ANNOTATION_DISK_PATH            "unishim.io/disk-path"
#define UNISHIM_ANNOTATION_CLOUD_INIT_USER_DATA "unishim.io/cloud-init-user-data"
#define POLICY_VM_USER_DATA_DEFAULT_MAX         (64u << 10)
#define POLICY_VM_USER_DATA_LIMIT               (1u << 20)
/* The smallest guest a pod may ask for: the guest kernel and agent need it. */
#define POLICY_VM_MIN_MEMORY_MIB 128

/* sandbox.console_log_max_bytes: a VM's console.log + console.log.1 in the
 * pod's state dir (on the host's /run) hold at most this much, the newest
 * output. The default is the VMM's (VMM_CONSOLE_LOG_DEFAULT). Below 64 KiB
 * a debug boot no longer fits; above 1 GiB it is no longer a cap on tmpfs. */
#define POLICY_CONSOLE_LOG_DEFAULT_BYTES (1u << 20)
#define POLICY_CONSOLE_LOG_MIN_BYTES     (64u << 10)
#define POLICY_CONSOLE_LOG_MAX_BYTES     (1u << 30)

/* sandbox.agent_timeout_ms: how long the shim waits for its guest agent's
 * answer to a call. One that does not come in time marks the pod's agent
 * dead: the pod's tasks are reported exited and its VM is torn down. Calls
 * under TCG on a loaded host take up to seconds; below 1 s healthy pods
 * would die. */
#define POLICY_AGENT_TIMEOUT_DEFAULT_MS 30000u
#define POLICY_AGENT_TIMEOUT_MIN_MS     1000u
#define POLICY_AGENT_TIMEOUT_MAX_MS     600000u

/* Set by containerd's CRI plugin on every OCI spec it generates. */
#define CRI_CONTAINER_TYPE "io.kubernetes.cri.container-type"
#define CRI_SANDBOX_ID     "io.kubernetes.cri.sandbox-id"
#define CRI_CONTAINER_NAME "io.kubernetes.cri.container-name"
#define CRI_SANDBOX_NAME   "io.kubernetes.cri.sandbox-name"
#define CRI_SANDBOX_NS     "io.kubernetes.cri.sandbox-namespace"
#define CRI_SANDBOX_UID    "io.kubernetes.cri.sandbox-uid"
/* On the sandbox's spec (containerd 1.6+): the pod's limits, the sums of its
 * containers' that the kubelet (1.23+) passes in PodSandboxConfig; "0"
 * where a container has none. */
#define CRI_SANDBOX_CPU_QUOTA  "io.kubernetes.cri.sandbox-cpu-quota"
#define CRI_SANDBOX_CPU_PERIOD "io.kubernetes.cri.sandbox-cpu-period"
#define CRI_SANDBOX_MEMORY     "io.kubernetes.cri.sandbox-memory"

#define POLICY_DEFAULT_CONFIG_PATH "/etc/unishim/config.json"
#define POLICY_CONFIG_MAX_SIZE     (256u << 10)

enum policy_isolation {
        POLICY_ISOLATION_CONTAINER,
        POLICY_ISOLATION_SANDBOX,
        POLICY_ISOLATION_VM,
        POLICY_ISOLATION__COUNT,
};

/* sandbox.shared_fs. AUTO (absent from the config): 9p when the guest
 * image's kernel has it, so that pods can start from VM templates, else
 * virtio-fs (shim/sandbox/image.h, sandbox_image_shared_fs). */
enum policy_shared_fs {
        POLICY_SHARED_FS_AUTO,
        POLICY_SHARED_FS_VIRTIOFS,
        POLICY_SHARED_FS_9P,
};

#define POLICY_TEMPLATE_DIR_DEFAULT "/run/unishim/templates"
#define POLICY_TEMPLATE_MAX_DEFAULT 4
#define POLICY_TEMPLATE_MAX_LIMIT   64 /* sandbox.template_max: 1..this */

/* How sandbox-kind VMs are made. NULL/0: the built-in defaults. */
struct policy_sandbox_config {
        char *kernel;                   /* uncompressed vmlinux; NULL: next to the binary */
        char *initrd;                   /* NULL: next to the binary */
        char *accel;                    /* "auto" (default), "kvm" or "tcg" */
        unsigned vcpus;                 /* default vCPUs when the pod sets no CPU limit (1) */
        unsigned max_vcpus;             /* the most a pod's CPU limit may give it (host cpus) */
        unsigned memory_mib;            /* guest memory when the pod sets no limit (256) */
        unsigned max_memory_mib;        /* the most a pod's memory limit may give it (16384) */
        uint64_t console_log_max_bytes; /* cap of the VM's console log on the host
                                         * (POLICY_CONSOLE_LOG_DEFAULT_BYTES) */
        unsigned agent_timeout_ms;      /* a guest agent call's deadline (30000) */
        /* "virtiofsd_unprivileged": false in the config: virtiofsd runs as
         * root, as it did before it had a user namespace of its own. For
         * nodes whose volumes are on a filesystem that refuses idmapped
         * mounts (an overlay root: kind's nodes), or kernels before 6.13
         * (overlay layers by fd): docs/security.md. */
        bool virtiofsd_root;
        /* "shared_fs": how the pod's files reach the guest. virtio-fs
         * through a virtiofsd per pod; 9p through QEMU's own virtio-9p
         * device, which VM templates need (vhost-user cannot map a clone's
         * copy-on-write RAM: docs/vmm.md) and which needs a guest kernel
         * with 9p (not the cloud flavour: docs/guest.md). QEMU then serves
         * it as root of the pod's user namespace: 9p with
         * "virtiofsd_unprivileged": false is refused, and without
         * "shared_fs" that opt-out means virtio-fs. Absent: AUTO. */
        enum policy_shared_fs shared_fs;
        /* "templates": start pods by restoring a saved guest (docs/vmm.md,
         * "VM templates") where the pod's layout allows it (the default);
         * false: every pod boots cold. */
        bool templates;
        char *template_dir; /* the template cache; NULL: POLICY_TEMPLATE_DIR_DEFAULT */
        /* "template_max": how many templates (one per VM size, of any
         * config) the cache may hold before a pod's shim builds no more
         * (POLICY_TEMPLATE_MAX_DEFAULT); each holds up to its size in
         * memory once per node. A build by hand is not held back. */
        unsigned template_max;
};

/* How vm-kind pods are run. NULL/0: the built-in defaults. */
struct policy_vm_config {
        char *libvirt_uri;            /* NULL: qemu:///system, the node's libvirtd */
        char *qemu_group;             /* QEMU's group: libvirt's (NULL: libvirt-qemu) */
        char *accel;                  /* "auto" (default), "kvm" or "tcg" */
        unsigned memory_mib;          /* guest memory when the pod sets no limit (1024) */
        uint64_t user_data_max_bytes; /* cloud-init user-data's limit */
};

struct policy_config {
        char *path; /* where it came from, for messages; NULL = built-in defaults */
        enum policy_isolation default_isolation;
        bool allowed[POLICY_ISOLATION__COUNT];
        char **allowed_annotations; /* strv of full keys pods may set */
        char **mesh_sidecars;       /* strv of container names */
        struct policy_sandbox_config sandbox;
        struct policy_vm_config vm;
};

/* The kind's annotation value ("container", ...). */
const char *policy_isolation_name(enum policy_isolation kind);

/* The built-in defaults: container by default, every kind allowed, every
 * known unishim.io/ annotation allowed, the Istio and Linkerd sidecars. */
int policy_config_default(struct policy_config **ret, struct us_error **err);

/* Parses a config file's text; errors name the JSON path. */
int policy_config_parse(const char *json, size_t len, const char *path, struct policy_config **ret,
                        struct us_error **err);

/* Loads path, or POLICY_DEFAULT_CONFIG_PATH when path is NULL/empty. A missing
 * default file means the defaults; a missing explicit path is an error. */
int policy_config_load(const char *path, struct policy_config **ret, struct us_error **err);

struct policy_config *policy_config_free(struct policy_config *cfg);

/* The pod's isolation kind from its (untrusted) annotations: every
 * unishim.io/ annotation must be allowed, the kind must be known and
 * allowed. Errors name the annotation, the value and what is allowed:
 *   annotation unishim.io/isolation: unknown isolation kind "bogus"
 *   (known: container, sandbox, vm)
 * Availability in this build is the caller's check (it knows its backends). */
int policy_pod_isolation(const struct policy_config *cfg, const struct us_oci_kv *annotations,
                         size_t n_annotations, enum policy_isolation *ret, struct us_error **err);

/* A VM's size asked for by the pod's (untrusted) annotations; 0 = not
 * asked. */
struct policy_vm_size {
        unsigned vcpus;
        unsigned memory_mib;
};

/* Reads and checks unishim.io/vcpus and unishim.io/memory-mib against the
 * operator's bounds. Whether pods may set them at all is
 * policy_pod_isolation()'s check. Errors name the annotation, the value and
 * the allowed range:
 *   annotation unishim.io/vcpus: "9" is not within 1..2 (sandbox.max_vcpus
 *   in /etc/unishim/config.json) */
int policy_pod_vm_size(const struct policy_config *cfg, const struct us_oci_kv *annotations,
                       size_t n_annotations, struct policy_vm_size *ret, struct us_error **err);

/* A vm pod's guest as its (untrusted) annotations ask: the disk's path in
 * the image (NULL: the one under /disk/), relative to the image's root, no
 * "..", and cloud-init user-data (NULL: none) within vm.user_data_max_bytes.
 * Pointers into annotations. Errors name the annotation. */
int policy_pod_vm_guest(const struct policy_config *cfg, const struct us_oci_kv *annotations,
                        size_t n_annotations, const char **ret_disk_path,
                        const char **ret_user_data, struct us_error **err);

/* True when a CRI container of this name is a service mesh sidecar (runs on
 * the host next to a VM-kind pod). */
bool policy_is_mesh_sidecar(const struct policy_config *cfg, const char *container_name);
