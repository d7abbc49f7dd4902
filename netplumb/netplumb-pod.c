/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod's interface as CNI configured it: addresses, routes, MTU, MAC, read
 * with libnl caches from a netlink socket opened in the pod netns. The kernel's
 * replies are bounded by NETPLUMB_MAX_ADDRS / NETPLUMB_MAX_ROUTES.
 */
#include <errno.h>
#include <fcntl.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/cleanup.h"
#include "netplumb-libnl.h"
#include "netplumb.h"

#define RT_TABLE_MAIN_ID     254
#define RT_SCOPE_UNIVERSE_ID 0

struct walk {
        struct netplumb_pod_net *pod;
        int default_ifindex4, default_ifindex6;
        int overflow;
};

static bool addr_copy(const struct nl_addr *a, int family, uint8_t out[16])
{
        if (!a)
                return false;
        unsigned len = nl_addr_get_len(a);
        if (len != (family == AF_INET ? 4u : 16u))
                return false;
        memset(out, 0, 16);
        memcpy(out, nl_addr_get_binary_addr(a), len);
        return true;
}

/* The single nexthop's ifindex and gateway of a route, or 0. */
static int route_oif(struct rtnl_route *route, struct nl_addr **ret_gw)
{
        *ret_gw = NULL;
        if (rtnl_route_get_nnexthops(route) != 1)
                return 0;
        struct rtnl_nexthop *nh = rtnl_route_nexthop_n(route, 0);
        if (!nh)
                return 0;
        *ret_gw = rtnl_route_nh_get_gateway(nh);
        return rtnl_route_nh_get_ifindex(nh);
}

static void find_default(struct nl_object *obj, void *arg)
{
        struct walk *w = arg;
        struct rtnl_route *route = (struct rtnl_route *)obj;
        if (rtnl_route_get_table(route) != RT_TABLE_MAIN_ID ||
            rtnl_route_get_type(route) != 1 /* RTN_UNICAST */)
                return;
        struct nl_addr *dst = rtnl_route_get_dst(route);
        if (dst && nl_addr_get_prefixlen(dst) != 0)
                return;
        struct nl_addr *gw;
        int oif = route_oif(route, &gw);
        if (oif <= 0)
                return;
        if (rtnl_route_get_family(route) == AF_INET && !w->default_ifindex4)
                w->default_ifindex4 = oif;
        else if (rtnl_route_get_family(route) == AF_INET6 && !w->default_ifindex6)
                w->default_ifindex6 = oif;
}

static void collect_route(struct nl_object *obj, void *arg)
{
        struct walk *w = arg;
        struct rtnl_route *route = (struct rtnl_route *)obj;
        int family = rtnl_route_get_family(route);
        if (rtnl_route_get_table(route) != RT_TABLE_MAIN_ID ||
            rtnl_route_get_type(route) != 1 /* RTN_UNICAST */ ||
            (family != AF_INET && family != AF_INET6))
                return;
        struct nl_addr *gw;
        if (route_oif(route, &gw) != w->pod->ifindex)
                return;
        struct nl_addr *dst = rtnl_route_get_dst(route);
        struct netplumb_route r = {.family = family};
        if (dst && nl_addr_get_prefixlen(dst) > 0) {
                if (!addr_copy(dst, family, r.dst))
                        return;
                r.dst_prefix = nl_addr_get_prefixlen(dst);
        }
        /* Link-local and multicast v6 routes exist on every interface; they
         * say nothing about the pod's network. */
        if (family == AF_INET6 && r.dst_prefix > 0 &&
            ((r.dst[0] == 0xfe && (r.dst[1] & 0xc0) == 0x80) || r.dst[0] == 0xff))
                return;
        if (gw && nl_addr_get_len(gw) > 0) {
                if (!addr_copy(gw, family, r.gateway))
                        return;
                r.has_gateway = true;
        }
        if (w->pod->n_routes >= NETPLUMB_MAX_ROUTES) {
                w->overflow = 1;
                return;
        }
        w->pod->routes[w->pod->n_routes++] = r;
}

static void collect_addr(struct nl_object *obj, void *arg)
{
        struct walk *w = arg;
        struct rtnl_addr *a = (struct rtnl_addr *)obj;
        int family = rtnl_addr_get_family(a);
        if (rtnl_addr_get_ifindex(a) != w->pod->ifindex ||
            rtnl_addr_get_scope(a) != RT_SCOPE_UNIVERSE_ID ||
            (family != AF_INET && family != AF_INET6))
                return;
        struct netplumb_addr out = {.family = family};
        struct nl_addr *local = rtnl_addr_get_local(a);
        if (!local || !addr_copy(local, family, out.addr))
                return;
        out.prefix = (unsigned)rtnl_addr_get_prefixlen(a);
        if (w->pod->n_addrs >= NETPLUMB_MAX_ADDRS) {
                w->overflow = 1;
                return;
        }
        w->pod->addrs[w->pod->n_addrs++] = out;
}

static int nl_fail(struct us_error **err, int nle, const char *what)
{
        int e = nle == -NLE_NOMEM ? ENOMEM : EIO;
        return us_error_msg(err, e, "%s: %s", what, nl_geterror(nle));
}

int netplumb_link_inspect(struct nl_sock *sk, struct netplumb_pod_net *pod, struct us_error **err)
{
        _cleanup_(nl_cache_free_cleanupp) struct nl_cache *links = NULL;
        _cleanup_(nl_cache_free_cleanupp) struct nl_cache *addrs = NULL;
        _cleanup_(nl_cache_free_cleanupp) struct nl_cache *routes = NULL;
        int r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &links);
        if (r < 0)
                return nl_fail(err, r, "list links");
        r = rtnl_route_alloc_cache(sk, AF_UNSPEC, 0, &routes);
        if (r < 0)
                return nl_fail(err, r, "list routes");
        r = rtnl_addr_alloc_cache(sk, &addrs);
        if (r < 0)
                return nl_fail(err, r, "list addresses");

        struct walk w = {.pod = pod};
        nl_cache_foreach(routes, find_default, &w);
        int ifindex = w.default_ifindex4 ? w.default_ifindex4 : w.default_ifindex6;
        struct rtnl_link *link =
                ifindex > 0 ? rtnl_link_get(links, ifindex) : rtnl_link_get_by_name(links, "eth0");
        if (!link)
                return us_error_msg(err, ENODEV, "no interface with a default route and no eth0");
        const char *name = rtnl_link_get_name(link);
        snprintf(pod->ifname, sizeof(pod->ifname), "%s", name ? name : "");
        pod->ifindex = rtnl_link_get_ifindex(link);
        pod->mtu = rtnl_link_get_mtu(link);
        struct nl_addr *ll = rtnl_link_get_addr(link);
        if (ll && nl_addr_get_len(ll) == 6)
                memcpy(pod->mac, nl_addr_get_binary_addr(ll), 6);
        rtnl_link_put(link);

        nl_cache_foreach(addrs, collect_addr, &w);
        nl_cache_foreach(routes, collect_route, &w);
        if (w.overflow)
                return us_error_msg(err, E2BIG, "%s: more than %d addresses or %d routes",
                                    pod->ifname, NETPLUMB_MAX_ADDRS, NETPLUMB_MAX_ROUTES);
        return 0;
}

int netplumb_pod_inspect(const char *netns_path, struct netplumb_pod_net **ret,
                         struct us_error **err)
{
        _cleanup_close_ int ns = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
                return us_errorf(err, errno, "open netns %s", netns_path);
        _cleanup_close_ int nl_fd = -1;
        int r = netplumb_netns_fds(ns, NULL, &nl_fd, NULL, err);
        if (r < 0)
                return us_error_wrap(err, r, "inspect pod network %s", netns_path);
        _cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk = NULL;
        r = netplumb_link_socket(nl_fd, &sk, err);
        if (r < 0)
                return us_error_wrap(err, r, "inspect pod network %s", netns_path);
        nl_fd = -1; /* owned by sk now */

        _cleanup_free_ struct netplumb_pod_net *pod = calloc(1, sizeof(*pod));
        if (!pod)
                return us_errorf(err, ENOMEM, "inspect pod network");
        r = netplumb_link_inspect(sk, pod, err);
        if (r < 0)
                return us_error_wrap(err, r, "inspect pod network %s", netns_path);
        *ret = TAKE_PTR(pod);
        return 0;
}
