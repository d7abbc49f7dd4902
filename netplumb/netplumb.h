/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * netplumb: wires a VM into a pod's network namespace (docs/network.md).
 *
 * Model (KubeVirt's "masquerade" binding): a tap named NETPLUMB_TAP_NAME in
 * the pod netns, a fixed private guest address behind it, DNAT of the pod IP
 * to the guest and SNAT of the guest to the pod IP. Every VM packet enters
 * the pod netns's IP stack, so the mesh's netfilter rules see it.
 *
 * All functions take the path of the pod's network namespace (e.g.
 * /var/run/netns/cni-...) and never move the calling process: the work is
 * done from a short-lived forked child that setns()es (its pid is waited for
 * specifically), and from netlink sockets opened there. The calling process
 * must be single-threaded or fork-safe; the functions do not log.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* The tap's fixed name in the pod netns. A mesh names it: Istio's pod
 * annotation istio.io/reroute-virtual-interfaces: "us-tap0" (older:
 * traffic.sidecar.istio.io/kubevirtInterfaces). */
#define NETPLUMB_TAP_NAME "us-tap0"

/* The fixed addresses of the link between the pod netns (tap) and the guest.
 * IPv4 from the benchmarking range 198.18.0.0/15 (RFC 2544: never routed,
 * not used for pod or service CIDRs; inside the pod netns only these four
 * addresses are taken). Not link-local 169.254/16: a guest whose network is
 * systemd-networkd's (a distribution's cloud image, the vm kind) gives such
 * an address link scope, and then has no source address for its default
 * route: its connections left with 0.0.0.0 and were dropped as martians.
 * IPv6 from a ULA /126. */
#define NETPLUMB_TAP_IPV4     "198.18.75.1"
#define NETPLUMB_GUEST_IPV4   "198.18.75.2"
#define NETPLUMB_LINK_PREFIX4 30
#define NETPLUMB_TAP_IPV6     "fd75:6e69:7368::1"
#define NETPLUMB_GUEST_IPV6   "fd75:6e69:7368::2"
#define NETPLUMB_LINK_PREFIX6 126

/* iptables chains netplumb owns (nat: PRE, OUT, POST; filter: FWD) and the
 * comment on the jumps it appends to the built-in chains. unwire removes
 * exactly these. */
#define NETPLUMB_CHAIN_PREFIX "UNISHIM-"
#define NETPLUMB_RULE_COMMENT "unishim"

#define NETPLUMB_MAX_ADDRS  16
#define NETPLUMB_MAX_ROUTES 64

struct netplumb_addr {
        int family;       /* AF_INET or AF_INET6 */
        uint8_t addr[16]; /* network order; 4 bytes used for AF_INET */
        unsigned prefix;
};

struct netplumb_route {
        int family;
        uint8_t dst[16];
        unsigned dst_prefix; /* 0 = default route */
        bool has_gateway;
        uint8_t gateway[16];
};

/* The pod's interface as CNI left it. Plain data, one allocation: free() it. */
struct netplumb_pod_net {
        char ifname[16];
        int ifindex;
        unsigned mtu;
        uint8_t mac[6];
        size_t n_addrs; /* global-scope addresses only (no fe80::/64) */
        struct netplumb_addr addrs[NETPLUMB_MAX_ADDRS];
        size_t n_routes; /* main table routes through ifname (unicast) */
        struct netplumb_route routes[NETPLUMB_MAX_ROUTES];
};

/* What the guest agent configures on the guest's single NIC. Plain data, one
 * allocation: free() it. */
struct netplumb_vm_net {
        char tap_name[16]; /* NETPLUMB_TAP_NAME, for QEMU/diagnostics */
        uint8_t mac[6];    /* the guest NIC's MAC: the pod eth0's MAC */
        unsigned mtu;      /* the pod eth0's MTU; the tap has the same */
        size_t n_addrs;    /* NETPLUMB_GUEST_IPV4/30, and NETPLUMB_GUEST_IPV6/126 if v6 */
        struct netplumb_addr addrs[2];
        size_t n_routes; /* default routes via the tap's addresses */
        struct netplumb_route routes[2];
        /* The pod IPs the outside world knows the guest by (informational:
         * e.g. for the guest's /etc/hosts or POD_IP; not configured on the
         * guest NIC, see docs/network.md). */
        size_t n_pod_addrs;
        struct netplumb_addr pod_addrs[2];
};

/* An inclusive TCP destination port range left to the pod netns (a mesh
 * sidecar's own ports): neither DNATed nor hidden from it. */
struct netplumb_port_range {
        uint16_t first, last;
};

#define NETPLUMB_MAX_EXCLUDED 32

struct netplumb_vm_opts {
        /* TCP ports to the pod IP that stay in the pod netns. When
         * use_default_excludes is true, NETPLUMB_DEFAULT_EXCLUDES (Istio's
         * 15000-15100, Linkerd's 4140, 4143, 4190, 4191) are used instead. */
        bool use_default_excludes;
        size_t n_excluded;
        const struct netplumb_port_range *excluded;
        /* An existing tap in the network namespace at host_tap_netns,
         * already opened by a VMM that takes its tap by name (libvirt can
         * open one only in its own namespace): moved into the pod netns and
         * renamed
         * NETPLUMB_TAP_NAME instead of a new tap being made there (the
         * VMM's fd stays attached across the move). NULL: a new tap. */
        const char *host_tap;
        const char *host_tap_netns;
};

/* Inspects the pod's interface in the netns at netns_path: the one holding
 * the (IPv4, else IPv6) default route, else "eth0". On success *ret is a
 * malloc()ed result owned by the caller (free()). Returns 0 or -errno
 * (-ENODEV: no such interface; -E2BIG: more than the limits above). */
int netplumb_pod_inspect(const char *netns_path, struct netplumb_pod_net **ret,
                         struct us_error **err);

/* Wires a VM into the netns: removes leftovers of an earlier wiring (as
 * netplumb_vm_unwire), creates the tap NETPLUMB_TAP_NAME (MTU = pod's, its
 * link addresses, up, route_localnet=1), sets ip_forward (and IPv6
 * forwarding when the pod has a global IPv6 address), and appends the nat and
 * filter rules. opts may be NULL (= default excludes).
 *
 * On success: *ret_vm is malloc()ed (caller frees) and *ret_tap_fd is an
 * O_CLOEXEC fd of /dev/net/tun attached to the tap (IFF_TAP|IFF_NO_PI, no
 * vnet header), owned by the caller: hand it to QEMU as -netdev tap,fd=N
 * (clear FD_CLOEXEC in the child). The tap is not persistent: it disappears
 * when the last fd on it closes. On failure nothing is written and what was
 * created is removed again. */
int netplumb_vm_wire(const char *netns_path, const struct netplumb_pod_net *pod,
                     const struct netplumb_vm_opts *opts, struct netplumb_vm_net **ret_vm,
                     int *ret_tap_fd, struct us_error **err);

/* What the guest of a pod will be given (its MAC, MTU, addresses and
 * routes), as netplumb_vm_wire computes it, without wiring anything: for a
 * guest configured before its NIC is (a cloud-init seed). Pure. -EADDRNOTAVAIL
 * when the pod has no global address. */
int netplumb_vm_plan(const struct netplumb_pod_net *pod, struct netplumb_vm_net *ret,
                     struct us_error **err);

/* A tap for opts.host_tap in the network namespace at vmm_netns (the
 * VMM's: the shim may run in another, as under the test environment's
 * containerd): name (at most 15 bytes), made persistent so that it
 * outlives this call until the VMM opens it; netplumb_vm_wire moves it
 * into the pod netns, and netplumb_vm_unwire deletes it there.
 * netplumb_host_tap_delete removes one that was never moved (0 when there
 * is none). */
int netplumb_host_tap_create(const char *vmm_netns, const char *name, struct us_error **err);
int netplumb_host_tap_delete(const char *vmm_netns, const char *name, struct us_error **err);

/* Removes the tap and every rule and chain netplumb added. Idempotent: 0 when
 * nothing is there, also when the netns itself is gone. Sysctls are left as
 * they are (the netns dies with the pod). */
int netplumb_vm_unwire(const char *netns_path, struct us_error **err);

/* Internals shared between netplumb's files (not for other components). */

/* Forks a child that joins netns_fd and returns a NETLINK_ROUTE socket (and,
 * if ret_tun_fd, an open /dev/net/tun attached to a new tap NETPLUMB_TAP_NAME
 * with the given sysctls written). Both are O_CLOEXEC. */
struct netplumb_netns_req {
        bool want_tap;
        /* Or: a tap already moved into the netns under this name, renamed
         * NETPLUMB_TAP_NAME there (no tun fd is returned). */
        const char *adopt_tap;
        /* Or: a new persistent tap of this name, nothing else (no tun fd,
         * no sysctl). */
        const char *persistent_tap;
        bool ipv6_forwarding;
};
int netplumb_netns_fds(int netns_fd, const struct netplumb_netns_req *req, int *ret_nl_fd,
                       int *ret_tun_fd, struct us_error **err);

/* Runs argv[0] (an absolute path) in the netns with stdin_data on stdin.
 * *ret_out (if non-NULL) gets its stdout, NUL-terminated, max 4 MiB. Returns 0
 * on exit status 0, -EPROTO with stderr in the message otherwise. */
int netplumb_netns_exec(int netns_fd, char *const argv[], const char *stdin_data, char **ret_out,
                        struct us_error **err);

/* netlink parts (netplumb-link.c), all on a connected socket in the netns. */
struct nl_sock;
int netplumb_link_socket(int nl_fd, struct nl_sock **ret, struct us_error **err);
int netplumb_link_delete(struct nl_sock *sk, const char *ifname, struct us_error **err);
/* Moves the link into the network namespace netns_fd. */
int netplumb_link_move(struct nl_sock *sk, const char *ifname, int netns_fd, struct us_error **err);
int netplumb_link_setup(struct nl_sock *sk, const char *ifname, unsigned mtu,
                        const struct netplumb_addr *addrs, size_t n_addrs, struct us_error **err);
int netplumb_link_inspect(struct nl_sock *sk, struct netplumb_pod_net *pod, struct us_error **err);

/* netfilter parts (netplumb-nat.c). family is AF_INET or AF_INET6. */
int netplumb_nat_install(int netns_fd, int family, const uint8_t pod_ip[16],
                         const struct netplumb_vm_opts *opts, struct us_error **err);
int netplumb_nat_remove(int netns_fd, int family, struct us_error **err);

/* Parses iptables-save output (hostile-until-parsed: at most
 * NETPLUMB_SAVE_MAX bytes) into an iptables-restore --noflush script that
 * deletes exactly netplumb's chains (NETPLUMB_CHAIN_PREFIX*) and the jumps to
 * them commented NETPLUMB_RULE_COMMENT, per table. *ret_script is malloc()ed
 * (caller frees), or NULL when there is nothing of ours. */
#define NETPLUMB_SAVE_MAX (4u << 20)
int netplumb_nat_removal_script(const char *saved, char **ret_script, struct us_error **err);
