/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The cloud-init NoCloud seed a vm pod boots with: an ISO 9660 volume
 * labelled "cidata" holding
 *
 *   meta-data       instance-id (the pod's UID) and local-hostname
 *   network-config  version 2: the NIC with the VM's MAC gets the fixed
 *                   address, gateway, MTU and DNS of netplumb's wiring
 *                   (docs/network.md)
 *   user-data       what the pod gave (unishim.io/cloud-init-user-data,
 *                   checked by the operator's policy), else an empty
 *                   #cloud-config
 *
 * Every value that goes into the YAML is checked against a strict syntax
 * first (ids, host names, MACs and addresses cannot carry YAML), so the
 * documents are written, not escaped. user-data is the pod's own and is
 * copied as given. The volume is made with libisofs (Rock Ridge and Joliet:
 * cloud-init finds the files by their lower-case names), in memory, with
 * fixed timestamps: the same input gives the same bytes.
 */

#include <stddef.h>

#include "base/error.h"

/* Largest user-data accepted here; the operator's limit is lower. */
#define VMM_CLOUDINIT_USER_DATA_MAX (1u << 20)
#define VMM_CLOUDINIT_MAX_DNS       3 /* resolv.conf's MAXNS */
#define VMM_CLOUDINIT_MAX_SEARCH    6

struct vmm_cloudinit_net {
        const char *mac;          /* the NIC, "52:54:00:12:34:56" */
        unsigned mtu;             /* 0: the guest's default */
        const char *ipv4;         /* "169.254.75.2/30", or NULL */
        const char *ipv4_gateway; /* NULL: no default route of this family */
        const char *ipv6;         /* "fd75:6e69:7368::2/126", or NULL */
        const char *ipv6_gateway;
        const char *const *nameservers; /* IP addresses */
        size_t n_nameservers;
        const char *const *search; /* DNS search domains */
        size_t n_search;
};

struct vmm_cloudinit {
        const char *instance_id;             /* [A-Za-z0-9._-], 1..128: the pod's UID */
        const char *hostname;                /* an RFC 1123 host name, at most 63 bytes */
        const struct vmm_cloudinit_net *net; /* NULL: no network-config */
        const char *user_data;               /* NULL: an empty #cloud-config */
        size_t user_data_len;
};

/* The three documents, each malloc()ed and NUL-terminated; *ret_network is
 * NULL when ci->net is. -EINVAL naming the field for a bad value. */
int vmm_cloudinit_documents(const struct vmm_cloudinit *ci, char **ret_meta, char **ret_network,
                            char **ret_user, struct us_error **err);

/* Writes the seed volume to dir_fd/name (created 0600, not replaced: an
 * existing file is -EEXIST). */
int vmm_cloudinit_seed_write(const struct vmm_cloudinit *ci, int dir_fd, const char *name,
                             struct us_error **err);
