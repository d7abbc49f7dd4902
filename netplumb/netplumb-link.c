/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libnl-3 route: links and addresses on a netlink socket that was created in
 * the pod netns (netplumb_netns_fds). libnl's NLE_* codes are translated here,
 * at the boundary, into errnos with nl_geterror() text.
 */
#include <errno.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <string.h>
#include <sys/socket.h>

#include "base/cleanup.h"
#include "netplumb-libnl.h"
#include "netplumb.h"

/* libnl returns -NLE_*; map the ones with an errno meaning. */
static int nle_to_errno(int nle)
{
        switch (nle < 0 ? -nle : nle) {
        case NLE_NOMEM:
                return ENOMEM;
        case NLE_EXIST:
                return EEXIST;
        case NLE_INVAL:
        case NLE_MSG_TOOSHORT:
        case NLE_MSGTYPE_NOSUPPORT:
                return EINVAL;
        case NLE_NOACCESS:
                return EACCES;
        case NLE_PERM:
                return EPERM;
        case NLE_NODEV:
                return ENODEV;
        case NLE_OBJ_NOTFOUND:
                return ENOENT;
        case NLE_BUSY:
                return EBUSY;
        case NLE_RANGE:
                return ERANGE;
        case NLE_AF_NOSUPPORT:
        case NLE_OPNOTSUPP:
                return EOPNOTSUPP;
        case NLE_AGAIN:
                return EAGAIN;
        case NLE_INTR:
                return EINTR;
        case NLE_BAD_SOCK:
                return EBADF;
        case NLE_NOADDR:
        case NLE_MISSING_ATTR:
        default:
                return EIO;
        }
}

static int nl_error(struct us_error **err, int nle, const char *what, const char *name)
{
        return us_error_msg(err, nle_to_errno(nle), "%s %s: %s", what, name, nl_geterror(nle));
}

int netplumb_link_socket(int nl_fd, struct nl_sock **ret, struct us_error **err)
{
        _cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk = nl_socket_alloc();
        if (!sk)
                return us_error_msg(err, ENOMEM, "allocate netlink socket");
        /* nl_socket_set_fd takes the fd over only on success. */
        int r = nl_socket_set_fd(sk, NETLINK_ROUTE, nl_fd);
        if (r < 0)
                return nl_error(err, r, "use netlink socket", "in netns");
        *ret = TAKE_PTR(sk);
        return 0;
}

int netplumb_link_delete(struct nl_sock *sk, const char *ifname, struct us_error **err)
{
        _cleanup_(rtnl_link_put_cleanupp) struct rtnl_link *link = rtnl_link_alloc();
        if (!link)
                return us_error_msg(err, ENOMEM, "allocate link");
        rtnl_link_set_name(link, ifname);
        int r = rtnl_link_delete(sk, link);
        if (r == -NLE_NODEV || r == -NLE_OBJ_NOTFOUND)
                return 0;
        if (r < 0)
                return nl_error(err, r, "delete link", ifname);
        return 0;
}

int netplumb_link_move(struct nl_sock *sk, const char *ifname, int netns_fd, struct us_error **err)
{
        _cleanup_(rtnl_link_put_cleanupp) struct rtnl_link *link = NULL;
        int r = rtnl_link_get_kernel(sk, 0, ifname, &link);
        if (r < 0)
                return nl_error(err, r, "find link", ifname);
        _cleanup_(rtnl_link_put_cleanupp) struct rtnl_link *change = rtnl_link_alloc();
        if (!change)
                return us_error_msg(err, ENOMEM, "allocate link");
        rtnl_link_set_ns_fd(change, netns_fd);
        r = rtnl_link_change(sk, link, change, 0);
        if (r < 0)
                return nl_error(err, r, "move link", ifname);
        return 0;
}

int netplumb_link_setup(struct nl_sock *sk, const char *ifname, unsigned mtu,
                        const struct netplumb_addr *addrs, size_t n_addrs, struct us_error **err)
{
        _cleanup_(rtnl_link_put_cleanupp) struct rtnl_link *link = NULL;
        int r = rtnl_link_get_kernel(sk, 0, ifname, &link);
        if (r < 0)
                return nl_error(err, r, "find link", ifname);
        int ifindex = rtnl_link_get_ifindex(link);

        for (size_t i = 0; i < n_addrs; i++) {
                _cleanup_(rtnl_addr_put_cleanupp) struct rtnl_addr *a = rtnl_addr_alloc();
                _cleanup_(nl_addr_put_cleanupp) struct nl_addr *local = nl_addr_build(
                        addrs[i].family, addrs[i].addr, addrs[i].family == AF_INET ? 4 : 16);
                if (!a || !local)
                        return us_error_msg(err, ENOMEM, "allocate address");
                nl_addr_set_prefixlen(local, (int)addrs[i].prefix);
                rtnl_addr_set_ifindex(a, ifindex);
                rtnl_addr_set_family(a, addrs[i].family);
                r = rtnl_addr_set_local(a, local);
                if (r < 0)
                        return nl_error(err, r, "set address on", ifname);
                rtnl_addr_set_prefixlen(a, (int)addrs[i].prefix);
                /* The link is point-to-point with a guest we own: no DAD, so
                 * the address is usable (REDIRECT, SNAT) at once. */
                if (addrs[i].family == AF_INET6)
                        rtnl_addr_set_flags(a, IFA_F_NODAD);
                r = rtnl_addr_add(sk, a, 0);
                if (r < 0 && r != -NLE_EXIST)
                        return nl_error(err, r, "add address to", ifname);
        }

        _cleanup_(rtnl_link_put_cleanupp) struct rtnl_link *change = rtnl_link_alloc();
        if (!change)
                return us_error_msg(err, ENOMEM, "allocate link");
        if (mtu > 0)
                rtnl_link_set_mtu(change, mtu);
        rtnl_link_set_flags(change, IFF_UP);
        r = rtnl_link_change(sk, link, change, 0);
        if (r < 0)
                return nl_error(err, r, "set up link", ifname);
        return 0;
}
