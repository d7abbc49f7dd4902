/* SPDX-License-Identifier: Apache-2.0 */
/* UpdateNetwork over raw rtnetlink: a handful of requests, each acked. The
 * guest has no libnl; the messages are small enough to build by hand. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"
#include "base/fs-util.h"

struct nlreq {
        struct nlmsghdr nh;
        union {
                struct ifinfomsg ifi;
                struct ifaddrmsg ifa;
                struct rtmsg rtm;
        };
        char attrs[512];
};

static int nl_addattr(struct nlreq *r, unsigned short type, const void *data, size_t len)
{
        size_t alen = RTA_LENGTH(len);
        if (NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(alen) > sizeof(*r))
                return -ENOBUFS;
        struct rtattr *rta = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->nh.nlmsg_len));
        rta->rta_type = type;
        rta->rta_len = (unsigned short)alen;
        if (len)
                memcpy(RTA_DATA(rta), data, len);
        r->nh.nlmsg_len = (uint32_t)(NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(alen));
        return 0;
}

/* Sends one request and waits for its ack. */
static int nl_talk(struct nlreq *r, struct us_error **err)
{
        _cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0)
                return us_errorf(err, errno, "netlink socket");
        r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
        r->nh.nlmsg_seq = 1;
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
        if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return us_errorf(err, errno, "netlink send");
        char buf[8192];
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return us_errorf(err, errno, "netlink recv");
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
                     h = NLMSG_NEXT(h, n)) {
                        if (h->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = NLMSG_DATA(h);
                                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
                                        return us_error_msg(err, EBADMSG, "short netlink error");
                                if (e->error == 0)
                                        return 0;
                                return us_errorf(err, -e->error, "netlink");
                        }
                }
        }
}

/* name, mtu (0) and mac (NULL) are left as they are when not given. */
static int link_set(int ifindex, unsigned flags, unsigned change, const char *name, uint32_t mtu,
                    const uint8_t *mac, struct us_error **err)
{
        struct nlreq r = {0};
        r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
        r.nh.nlmsg_type = RTM_NEWLINK;
        r.ifi.ifi_family = AF_UNSPEC;
        r.ifi.ifi_index = ifindex;
        r.ifi.ifi_flags = flags;
        r.ifi.ifi_change = change;
        if (name && nl_addattr(&r, IFLA_IFNAME, name, strlen(name) + 1) < 0)
                return -ENOBUFS;
        if (mtu && nl_addattr(&r, IFLA_MTU, &mtu, sizeof(mtu)) < 0)
                return -ENOBUFS;
        if (mac && nl_addattr(&r, IFLA_ADDRESS, mac, 6) < 0)
                return -ENOBUFS;
        return nl_talk(&r, err);
}

int agent_net_lo_up(struct us_error **err)
{
        int idx = (int)if_nametoindex("lo");
        if (idx <= 0)
                return us_errorf(err, errno, "lo");
        return link_set(idx, IFF_UP, IFF_UP, NULL, 0, NULL, err);
}

/* The ifindex of the interface with this MAC, from sysfs. */
static int find_by_mac(const uint8_t mac[6], int *ret, char name[IFNAMSIZ], struct us_error **err)
{
        DIR *d = opendir("/sys/class/net");
        if (!d)
                return us_errorf(err, errno, "open /sys/class/net");
        int found = -ENOENT;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || strlen(de->d_name) >= IFNAMSIZ)
                        continue;
                char path[300], addr[32] = "";
                snprintf(path, sizeof(path), "/sys/class/net/%s/address", de->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                bool ok = fgets(addr, sizeof(addr), f) != NULL;
                fclose(f);
                addr[strcspn(addr, "\n")] = '\0';
                uint8_t m[6];
                if (!ok || agent_parse_mac(addr, m, NULL) < 0 || memcmp(m, mac, 6) != 0)
                        continue;
                int idx = (int)if_nametoindex(de->d_name);
                if (idx > 0) {
                        *ret = idx;
                        strcpy(name, de->d_name);
                        found = 0;
                        break;
                }
        }
        closedir(d);
        if (found < 0)
                return us_error_msg(err, ENOENT, "no interface with that MAC address");
        return 0;
}

static int addr_add(int ifindex, const Unishim__Agent__V1__IPAddress *a, struct us_error **err)
{
        uint8_t buf[16];
        int af;
        int r = agent_parse_ip(a->family, a->address, (int)a->prefix_len, buf, &af, err);
        if (r < 0)
                return r;
        struct nlreq req = {0};
        req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
        req.nh.nlmsg_type = RTM_NEWADDR;
        req.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
        req.ifa.ifa_family = (unsigned char)af;
        req.ifa.ifa_prefixlen = (unsigned char)a->prefix_len;
        req.ifa.ifa_index = (unsigned)ifindex;
        /* The guest's link is a point-to-point /126 to the tap: no address
         * can be duplicate, and DAD would leave it tentative (unusable) for
         * the first second or two of the pod's life. */
        if (af == AF_INET6)
                req.ifa.ifa_flags = IFA_F_NODAD;
        size_t alen = af == AF_INET ? 4 : 16;
        (void)nl_addattr(&req, IFA_LOCAL, buf, alen);
        (void)nl_addattr(&req, IFA_ADDRESS, buf, alen);
        r = nl_talk(&req, err);
        return r < 0 ? us_error_wrap(err, r, "add address %s/%u", a->address, a->prefix_len) : 0;
}

static int route_add(const Unishim__Agent__V1__Route *rt, struct us_error **err)
{
        uint8_t dst[16], gw[16];
        unsigned prefix;
        int af;
        int r = agent_parse_cidr(rt->family, rt->destination, dst, &prefix, &af, err);
        if (r < 0)
                return r;
        struct nlreq req = {0};
        req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
        req.nh.nlmsg_type = RTM_NEWROUTE;
        req.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
        req.rtm.rtm_family = (unsigned char)af;
        req.rtm.rtm_dst_len = (unsigned char)prefix;
        req.rtm.rtm_table = RT_TABLE_MAIN;
        req.rtm.rtm_protocol = RTPROT_BOOT;
        req.rtm.rtm_type = RTN_UNICAST;
        req.rtm.rtm_scope = rt->gateway[0] ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
        size_t alen = af == AF_INET ? 4 : 16;
        if (prefix)
                (void)nl_addattr(&req, RTA_DST, dst, alen);
        if (rt->gateway[0]) {
                int gaf;
                r = agent_parse_ip(rt->family, rt->gateway, -1, gw, &gaf, err);
                if (r < 0)
                        return r;
                (void)nl_addattr(&req, RTA_GATEWAY, gw, alen);
        }
        if (rt->device[0]) {
                unsigned idx = if_nametoindex(rt->device);
                if (!idx)
                        return us_error_msg(err, ENOENT, "route device %s not found", rt->device);
                (void)nl_addattr(&req, RTA_OIF, &idx, sizeof(idx));
        }
        r = nl_talk(&req, err);
        return r < 0 ? us_error_wrap(err, r, "add route %s via %s",
                                     rt->destination[0] ? rt->destination : "default",
                                     rt->gateway[0] ? rt->gateway : rt->device)
                     : 0;
}

/* name was checked by agent_validate_sysctl: dotted parts, no '/'. */
static int sysctl_write(const char *name, const char *value, struct us_error **err)
{
        char path[sizeof("/proc/sys/") + AGENT_MAX_SYSCTL_NAME];
        snprintf(path, sizeof(path), "/proc/sys/%s", name);
        for (char *c = path + strlen("/proc/sys/"); *c; c++)
                if (*c == '.')
                        *c = '/';
        _cleanup_close_ int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "sysctl %s", name);
        int r = us_write_all(fd, value, strlen(value));
        if (r < 0)
                return us_errorf(err, -r, "sysctl %s=%s", name, value);
        return 0;
}

int agent_net_update(const Unishim__Agent__V1__UpdateNetworkRequest *req, struct us_error **err)
{
        int r;
        for (size_t i = 0; i < req->n_interfaces; i++) {
                const Unishim__Agent__V1__Interface *itf = req->interfaces[i];
                uint8_t mac[6], dev[6];
                int idx;
                char cur[IFNAMSIZ];
                bool set_mac = false;
                r = agent_parse_mac(itf->mac, mac, err);
                if (r >= 0 && itf->device_mac[0])
                        r = agent_parse_mac(itf->device_mac, dev, err);
                if (r >= 0 && itf->device_mac[0]) {
                        /* A restored template's device, unless an earlier
                         * call gave it the pod's MAC already. */
                        if (find_by_mac(mac, &idx, cur, NULL) < 0) {
                                r = find_by_mac(dev, &idx, cur, err);
                                set_mac = true;
                        }
                } else if (r >= 0) {
                        r = find_by_mac(mac, &idx, cur, err);
                }
                if (r < 0)
                        return us_error_wrap(err, r, "interface %s", itf->name);
                /* A rename and a new MAC need the link down. */
                bool rename = strcmp(cur, itf->name) != 0;
                if (rename || set_mac) {
                        r = link_set(idx, 0, IFF_UP, NULL, 0, NULL, err);
                        if (r >= 0)
                                r = link_set(idx, 0, 0, rename ? itf->name : NULL, 0,
                                             set_mac ? mac : NULL, err);
                        if (r < 0)
                                return us_error_wrap(err, r, "%s %s as %s with MAC %s",
                                                     rename ? "rename" : "set up", cur, itf->name,
                                                     itf->mac);
                }
                r = link_set(idx, IFF_UP, IFF_UP, NULL, itf->mtu, NULL, err);
                if (r < 0)
                        return us_error_wrap(err, r, "set %s up", itf->name);
                for (size_t j = 0; j < itf->n_addresses; j++) {
                        r = addr_add(idx, itf->addresses[j], err);
                        if (r < 0)
                                return us_error_wrap(err, r, "interface %s", itf->name);
                }
        }
        for (size_t i = 0; i < req->n_routes; i++) {
                r = route_add(req->routes[i], err);
                if (r < 0)
                        return r;
        }
        if (req->hostname[0] && sethostname(req->hostname, strlen(req->hostname)) < 0)
                return us_errorf(err, errno, "sethostname");
        /* After the interfaces: net.ipv4.conf.eth0.* exists only now. */
        for (size_t i = 0; i < req->n_sysctls; i++) {
                r = sysctl_write(req->sysctls[i]->key, req->sysctls[i]->value, err);
                if (r < 0)
                        return r;
        }
        return 0;
}
