/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Sandbox pods started from a VM template (docs/vmm.md "VM templates"):
 * when a pod may use one, and the inputs (the cache key's) of the node's
 * template. `unishimctl template build` computes its inputs with the same
 * function, so the shim's key and the CLI's can never differ.
 */

#include <stdbool.h>

#include "base/error.h"
#include "policy/policy.h"
#include "vmm/template.h"

/* The operator's sandbox.accel as the VM code takes it. */
enum vmm_accel sandbox_accel_of(const struct policy_sandbox_config *sb);

/* The node's cgroup of template builds: their QEMU and the holders they
 * leave are the node's, never charged to a pod (shim/sandbox/backend.c's
 * background build, unishimctl template build). */
#define SANDBOX_TEMPLATE_CGROUP "/unishim/templates"

/* `unishimctl template build`'s exit statuses the shim's background build
 * tells apart (any other non-zero one is a failed build): another builder
 * holds the key; with --max, the cache is full (nothing built or
 * recorded). */
#define SANDBOX_TEMPLATE_BUILD_BUSY 3
#define SANDBOX_TEMPLATE_BUILD_FULL 4

/* A full cache (sandbox.template_max) makes room for a new size's
 * template by evicting the one used least recently, if it was unused this
 * long: a template used within this time is never evicted, so a node
 * whose pods use more sizes than the cap keeps the ones in use instead of
 * rebuilding them in turn. */
#define SANDBOX_TEMPLATE_EVICT_IDLE_S 600

/* Why a pod, with or without a network, its files on 9p (ninep:
 * sandbox_image_shared_fs) or not, boots cold although the config may
 * allow templates: NULL when it starts from a template of its size
 * (sandbox.templates on, 9p, a network), else the reason, for the log.
 * Pure. */
const char *sandbox_template_why_not(const struct policy_sandbox_config *sb, bool ninep,
                                     bool has_network);

/* The inputs of the node's template for this config and a VM of size (its
 * vCPUs and memory; NULL or 0: the config's sandbox.vcpus and
 * sandbox.memory_mib): the accelerator as decided for this host, the guest
 * image (sandbox.kernel/initrd, else sandbox_image_find), the agent's
 * ports, the host's TSC under TCG and its identity. Each size has its own
 * key. No cmdline_extra: the shim's debug flag must not split the key.
 * The strings are the inputs' own: sandbox_template_inputs_free. Returns
 * 0, or a negative errno with err. */
int sandbox_template_inputs(const struct policy_sandbox_config *sb,
                            const struct policy_vm_size *size, struct vmm_template_inputs *in,
                            struct us_error **err);
void sandbox_template_inputs_free(struct vmm_template_inputs *in);
