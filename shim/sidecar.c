/* SPDX-License-Identifier: Apache-2.0 */
#include "sidecar.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

enum shim_sidecar_place shim_sidecar_place(const struct policy_config *cfg,
                                           const struct us_oci_spec *spec)
{
        const char *type = us_oci_spec_annotation(spec, CRI_CONTAINER_TYPE);
        if (!type || strcmp(type, "container") != 0 ||
            !policy_is_mesh_sidecar(cfg, us_oci_spec_annotation(spec, CRI_CONTAINER_NAME)))
                return SHIM_SIDECAR_NONE;
        return cfg->allowed[POLICY_ISOLATION_CONTAINER] ? SHIM_SIDECAR_HOST : SHIM_SIDECAR_IN_GUEST;
}

int shim_sidecar_spec(struct us_oci_spec *spec, const char *netns, const char *hostname,
                      struct us_error **err)
{
        char *host = hostname ? strdup(hostname) : NULL;
        char *net = strdup(netns);
        if (!net || (hostname && !host)) {
                free(host);
                free(net);
                return us_errorf(err, ENOMEM, "mesh sidecar spec");
        }
        bool has_net = false;
        for (size_t i = 0; i < spec->linux_.n_namespaces; i++) {
                struct us_oci_namespace *ns = &spec->linux_.namespaces[i];
                switch (ns->type) {
                case CLONE_NEWNET:
                        free(ns->path);
                        ns->path = net;
                        net = NULL;
                        has_net = true;
                        break;
                case CLONE_NEWIPC:
                case CLONE_NEWUTS:
                case CLONE_NEWPID:
                        /* The sandbox task's (QEMU's) are the host's. */
                        free(ns->path);
                        ns->path = NULL;
                        break;
                default:
                        break;
                }
        }
        free(net);
        if (!has_net) {
                free(host);
                return us_error_msg(err, EINVAL,
                                    "mesh sidecar: its spec has no network namespace to put it "
                                    "in the pod's");
        }
        if (host) {
                free(spec->hostname);
                spec->hostname = host;
        }
        return 0;
}
