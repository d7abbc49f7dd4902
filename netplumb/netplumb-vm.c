/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wiring of a VM into the pod netns (docs/network.md): tap + link
 * addresses + sysctls + nat rules, and its exact removal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netlink/socket.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if.h>
#include <stdio.h>
#include <sys/socket.h>

#include "base/cleanup.h"
#include "netplumb-libnl.h"
#include "netplumb.h"

static void set_addr(struct netplumb_addr *a, int family, const char *text, unsigned prefix)
{
        a->family = family;
        memset(a->addr, 0, sizeof(a->addr));
        /* Compile-time constants: inet_pton cannot fail on them. */
        (void)inet_pton(family, text, a->addr);
        a->prefix = prefix;
}

static const struct netplumb_addr *first_addr(const struct netplumb_pod_net *pod, int family)
{
        for (size_t i = 0; i < pod->n_addrs && i < NETPLUMB_MAX_ADDRS; i++)
                if (pod->addrs[i].family == family)
                        return &pod->addrs[i];
        return NULL;
}

int netplumb_vm_plan(const struct netplumb_pod_net *pod, struct netplumb_vm_net *ret,
                     struct us_error **err)
{
        const struct netplumb_addr *pod4 = first_addr(pod, AF_INET);
        const struct netplumb_addr *pod6 = first_addr(pod, AF_INET6);
        if (!pod4 && !pod6)
                return us_error_msg(err, EADDRNOTAVAIL, "pod interface %s has no global address",
                                    pod->ifname);
        struct netplumb_vm_net *vm = ret;
        memset(vm, 0, sizeof(*vm));
        snprintf(vm->tap_name, sizeof(vm->tap_name), "%s", NETPLUMB_TAP_NAME);
        memcpy(vm->mac, pod->mac, sizeof(vm->mac));
        vm->mtu = pod->mtu;
        /* IPv4 always (the tap has its IPv4 link address whatever the pod
         * has, wire_fd); the guest uses it only if the pod has v4, but a
         * configured link address costs nothing. */
        set_addr(&vm->addrs[vm->n_addrs++], AF_INET, NETPLUMB_GUEST_IPV4, NETPLUMB_LINK_PREFIX4);
        struct netplumb_route *rt = &vm->routes[vm->n_routes++];
        *rt = (struct netplumb_route){.family = AF_INET, .has_gateway = true};
        (void)inet_pton(AF_INET, NETPLUMB_TAP_IPV4, rt->gateway);
        if (pod6) {
                set_addr(&vm->addrs[vm->n_addrs++], AF_INET6, NETPLUMB_GUEST_IPV6,
                         NETPLUMB_LINK_PREFIX6);
                rt = &vm->routes[vm->n_routes++];
                *rt = (struct netplumb_route){.family = AF_INET6, .has_gateway = true};
                (void)inet_pton(AF_INET6, NETPLUMB_TAP_IPV6, rt->gateway);
        }
        if (pod4)
                vm->pod_addrs[vm->n_pod_addrs++] = *pod4;
        if (pod6)
                vm->pod_addrs[vm->n_pod_addrs++] = *pod6;
        return 0;
}

static int unwire_fd(int ns, struct us_error **err)
{
        _cleanup_close_ int nl_fd = -1;
        int r = netplumb_netns_fds(ns, NULL, &nl_fd, NULL, err);
        if (r < 0)
                return r;
        _cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk = NULL;
        r = netplumb_link_socket(nl_fd, &sk, err);
        if (r < 0)
                return r;
        nl_fd = -1; /* owned by sk */
        r = netplumb_link_delete(sk, NETPLUMB_TAP_NAME, err);
        if (r < 0)
                return r;
        r = netplumb_nat_remove(ns, AF_INET, err);
        if (r < 0)
                return r;
        return netplumb_nat_remove(ns, AF_INET6, err);
}

int netplumb_vm_unwire(const char *netns_path, struct us_error **err)
{
        _cleanup_close_ int ns = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0) {
                if (errno == ENOENT)
                        return 0; /* the netns is gone, and all of ours with it */
                return us_errorf(err, errno, "unwire vm: open netns %s", netns_path);
        }
        int r = unwire_fd(ns, err);
        if (r < 0)
                return us_error_wrap(err, r, "unwire vm from %s", netns_path);
        return 0;
}

/* A NETLINK_ROUTE socket in the namespace at netns (and, with req, what
 * the helper makes there). */
static int host_link_socket(const char *netns, const struct netplumb_netns_req *req,
                            struct nl_sock **ret, struct us_error **err)
{
        _cleanup_close_ int ns = open(netns, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
                return us_errorf(err, errno, "open %s", netns);
        _cleanup_close_ int fd = -1;
        int r = netplumb_netns_fds(ns, req, &fd, NULL, err);
        if (r < 0)
                return r;
        r = netplumb_link_socket(fd, ret, err);
        if (r == 0)
                fd = -1; /* owned by *ret */
        return r;
}

static int host_link_move(const char *netns, const char *name, int ns, struct us_error **err)
{
        _cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk = NULL;
        int r = host_link_socket(netns, NULL, &sk, err);
        return r < 0 ? r : netplumb_link_move(sk, name, ns, err);
}

static int tap_name_check(const char *name, struct us_error **err)
{
        size_t len = name ? strlen(name) : 0;
        if (len == 0 || len >= IFNAMSIZ || strcmp(name, NETPLUMB_TAP_NAME) == 0 ||
            strchr(name, '/') || strchr(name, ':'))
                return us_error_msg(err, EINVAL, "bad tap name '%s'", name ? name : "");
        return 0;
}

int netplumb_host_tap_create(const char *vmm_netns, const char *name, struct us_error **err)
{
        int r = tap_name_check(name, err);
        if (r < 0)
                return r;
        const struct netplumb_netns_req req = {.persistent_tap = name};
        _cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk = NULL;
        return host_link_socket(vmm_netns, &req, &sk, err);
}

int netplumb_host_tap_delete(const char *vmm_netns, const char *name, struct us_error **err)
{
        int r = tap_name_check(name, err);
        if (r < 0)
                return r;
        _cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk = NULL;
        r = host_link_socket(vmm_netns, NULL, &sk, err);
        return r < 0 ? r : netplumb_link_delete(sk, name, err);
}

static int wire_fd(int ns, const struct netplumb_pod_net *pod, const struct netplumb_vm_opts *opts,
                   struct netplumb_vm_net *vm, int *ret_tap_fd, struct us_error **err)
{
        const struct netplumb_addr *pod4 = first_addr(pod, AF_INET);
        const struct netplumb_addr *pod6 = first_addr(pod, AF_INET6);
        if (!pod4 && !pod6)
                return us_error_msg(err, EADDRNOTAVAIL, "pod interface %s has no global address",
                                    pod->ifname);

        /* Leftovers of an earlier run (a crashed shim) would make the tap
         * creation fail or duplicate the rules. */
        int r = unwire_fd(ns, err);
        if (r < 0)
                return us_error_wrap(err, r, "remove earlier wiring");

        const char *host_tap = opts ? opts->host_tap : NULL;
        if (host_tap) {
                if (!opts->host_tap_netns)
                        return us_error_msg(err, EINVAL, "tap %s: no namespace", host_tap);
                r = host_link_move(opts->host_tap_netns, host_tap, ns, err);
                if (r < 0)
                        return r;
        }
        struct netplumb_netns_req req = {
                .want_tap = !host_tap, .adopt_tap = host_tap, .ipv6_forwarding = pod6 != NULL};
        _cleanup_close_ int nl_fd = -1;
        _cleanup_close_ int tap_fd = -1;
        r = netplumb_netns_fds(ns, &req, &nl_fd, &tap_fd, err);
        if (r < 0)
                return r;
        _cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk = NULL;
        r = netplumb_link_socket(nl_fd, &sk, err);
        if (r < 0)
                return r;
        nl_fd = -1; /* owned by sk */

        /* The tap always gets the IPv4 link address: REDIRECT of IPv4 needs an
         * address on the incoming interface, even for an IPv6-only pod's
         * guest (harmless otherwise). */
        struct netplumb_addr tap_addrs[2];
        size_t n_tap = 0;
        set_addr(&tap_addrs[n_tap++], AF_INET, NETPLUMB_TAP_IPV4, NETPLUMB_LINK_PREFIX4);
        if (pod6)
                set_addr(&tap_addrs[n_tap++], AF_INET6, NETPLUMB_TAP_IPV6, NETPLUMB_LINK_PREFIX6);
        r = netplumb_link_setup(sk, NETPLUMB_TAP_NAME, pod->mtu, tap_addrs, n_tap, err);
        if (r < 0)
                return r;

        if (pod4) {
                r = netplumb_nat_install(ns, AF_INET, pod4->addr, opts, err);
                if (r < 0)
                        return r;
        }
        if (pod6) {
                r = netplumb_nat_install(ns, AF_INET6, pod6->addr, opts, err);
                if (r < 0)
                        return r;
        }

        r = netplumb_vm_plan(pod, vm, err);
        if (r < 0)
                return r;
        *ret_tap_fd = TAKE_FD(tap_fd);
        return 0;
}

int netplumb_vm_wire(const char *netns_path, const struct netplumb_pod_net *pod,
                     const struct netplumb_vm_opts *opts, struct netplumb_vm_net **ret_vm,
                     int *ret_tap_fd, struct us_error **err)
{
        if (!netns_path || !pod || !ret_vm || !ret_tap_fd)
                return us_error_msg(err, EINVAL, "wire vm: missing argument");
        if (pod->n_addrs > NETPLUMB_MAX_ADDRS)
                return us_error_msg(err, EINVAL, "wire vm: bad pod description");
        _cleanup_close_ int ns = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
                return us_errorf(err, errno, "wire vm: open netns %s", netns_path);
        _cleanup_free_ struct netplumb_vm_net *vm = calloc(1, sizeof(*vm));
        if (!vm)
                return us_errorf(err, ENOMEM, "wire vm");
        int tap_fd = -1;
        int r = wire_fd(ns, pod, opts, vm, &tap_fd, err);
        if (r < 0) {
                /* Undo what was done; the first error is the one reported. */
                struct us_error *ignored = NULL;
                (void)unwire_fd(ns, &ignored);
                us_error_free(ignored);
                return us_error_wrap(err, r, "wire vm into %s", netns_path);
        }
        *ret_vm = TAKE_PTR(vm);
        *ret_tap_fd = tap_fd;
        return 0;
}
