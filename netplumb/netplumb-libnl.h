/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* netplumb's own: cleanup helpers for the libnl objects its files use, in
 * one place (_cleanup_(nl_socket_free_cleanupp) struct nl_sock *sk). */

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>

#include "base/cleanup.h"

DEFINE_CLEANUP(struct nl_sock *, nl_socket_free)
DEFINE_CLEANUP(struct nl_cache *, nl_cache_free)
DEFINE_CLEANUP(struct nl_addr *, nl_addr_put)
DEFINE_CLEANUP(struct rtnl_link *, rtnl_link_put)
DEFINE_CLEANUP(struct rtnl_addr *, rtnl_addr_put)
