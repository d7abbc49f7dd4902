/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * What of the VM's container spec a vm pod's guest gets (docs/vm.md, "What
 * the container's spec becomes"). The guest boots its own disk: no
 * container mount reaches it, and its command, args and env are not run.
 *
 * - Mounts: those the kubelet and containerd give every container pass
 *   (the guest has its own kernel file systems, its hostname and DNS come
 *   through cloud-init, the rest is documented as ignored); any other
 *   mount (a pod's volume) is refused, naming its destination, so that a
 *   pod never runs without what its author asked for.
 * - Command, args and env: the CRI requires a command and the kubelet
 *   always sets env (the service variables), so refusing them would refuse
 *   every pod: the container's log says, first, that they are not run.
 */

#include <stddef.h>

#include "base/error.h"
#include "oci/oci-spec.h"

/* The annotation the kubelet puts on a container's CRI config with its
 * terminationMessagePath; it reaches config.json where containerd's
 * runtime handler passes it (container_annotations). */
#define VM_SPEC_TERMINATION_MESSAGE_PATH "io.kubernetes.container.terminationMessagePath"
#define VM_SPEC_SERVICE_ACCOUNT_DIR      "/var/run/secrets/kubernetes.io/serviceaccount"

/* 0 when every mount of spec is one the kubelet or containerd gives every
 * container; else -ENOTSUP with *err naming the first other mount's
 * destination, where it comes from, and why it cannot be. */
int vm_spec_check_mounts(const struct us_oci_spec *spec, struct us_error **err);

/* The line (NUL-terminated, ending in '\n', cut to fit size, size >= 2)
 * that heads the VM's container log: that the container's command, args
 * and env are not run in the guest, and which of its mounts the guest does
 * not see. Returns its length. */
size_t vm_spec_note(const struct us_oci_spec *spec, char *buf, size_t size);
