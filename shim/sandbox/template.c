/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-contract.h"
#include "base/cleanup.h"
#include "image.h"
#include "template.h"

enum vmm_accel sandbox_accel_of(const struct policy_sandbox_config *sb)
{
        if (sb->accel && strcmp(sb->accel, "kvm") == 0)
                return VMM_ACCEL_KVM;
        if (sb->accel && strcmp(sb->accel, "tcg") == 0)
                return VMM_ACCEL_TCG;
        return VMM_ACCEL_AUTO;
}

const char *sandbox_template_why_not(const struct policy_sandbox_config *sb, bool ninep,
                                     bool has_network)
{
        if (!sb->templates)
                return "sandbox.templates is off";
        /* vhost-user (virtiofsd) cannot map a clone's private RAM. */
        if (!ninep)
                return sb->shared_fs == POLICY_SHARED_FS_AUTO
                               ? "the guest kernel has no 9p (sandbox.shared_fs is not set: "
                                 "virtio-fs)"
                               : "sandbox.shared_fs is not 9p";
        /* The template's layout has a virtio-net device on a tap. */
        if (!has_network)
                return "the pod has no network";
        return NULL;
}

int sandbox_template_inputs(const struct policy_sandbox_config *sb,
                            const struct policy_vm_size *size, struct vmm_template_inputs *in,
                            struct us_error **err)
{
        _cleanup_free_ char *reason = NULL, *kernel = NULL, *initrd = NULL, *host = NULL;
        enum vmm_accel want = sandbox_accel_of(sb);
        int r;

        *in = (struct vmm_template_inputs){
                .serial_ports = {AGENT_PORT_CALLS, AGENT_PORT_EVENTS},
                .vcpus = size && size->vcpus ? size->vcpus : sb->vcpus,
                .memory_mib = size && size->memory_mib ? size->memory_mib : sb->memory_mib,
        };
        if ((r = vmm_accel_decide(want, NULL, NULL, &in->accel, &reason, err)) < 0)
                return us_error_wrap(err, r, "sandbox.accel %s", sb->accel ? sb->accel : "auto");
        if (in->accel == VMM_ACCEL_TCG)
                in->tsc_khz = vmm_host_tsc_khz_read();
        if ((r = sandbox_image_resolve(sb->kernel, sb->initrd, &kernel, &initrd, err)) < 0 ||
            (r = vmm_template_host_id_read(&host, err)) < 0)
                return r;
        in->kernel = TAKE_PTR(kernel);
        in->initrd = TAKE_PTR(initrd);
        in->host_id = TAKE_PTR(host);
        return 0;
}

void sandbox_template_inputs_free(struct vmm_template_inputs *in)
{
        free((char *)in->kernel);
        free((char *)in->initrd);
        free((char *)in->host_id);
        in->kernel = in->initrd = in->host_id = NULL;
}
