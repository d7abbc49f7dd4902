/* SPDX-License-Identifier: Apache-2.0 */
#include "backend.h"

static const struct shim_backend *const backends[POLICY_ISOLATION__COUNT] = {
        [POLICY_ISOLATION_CONTAINER] = &shim_backend_container,
        [POLICY_ISOLATION_SANDBOX] = &shim_backend_sandbox,
        [POLICY_ISOLATION_VM] = &shim_backend_vm,
};

const struct shim_backend *shim_backend_for(enum policy_isolation kind)
{
        return (unsigned)kind < POLICY_ISOLATION__COUNT ? backends[kind] : NULL;
}

int shim_backends_cleanup_dead(const char *namespace, const char *id,
                               const struct us_oci_spec *spec, struct us_error **err)
{
        int ret = 0;
        for (size_t i = 0; i < POLICY_ISOLATION__COUNT; i++) {
                if (!backends[i] || !backends[i]->cleanup_dead)
                        continue;
                int r = backends[i]->cleanup_dead(namespace, id, spec, err);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}
