/* SPDX-License-Identifier: Apache-2.0 */
#include "backend.h"

static const struct shim_backend *const backends[CRI_ISOLATION__COUNT] = {
        [CRI_ISOLATION_CONTAINER] = &shim_backend_container,
        [CRI_ISOLATION_SANDBOX] = &shim_backend_sandbox,
        [CRI_ISOLATION_VM] = NULL, /* libvirt */
};

const struct shim_backend *shim_backend_for(enum cri_isolation kind)
{
        return (unsigned)kind < CRI_ISOLATION__COUNT ? backends[kind] : NULL;
}
