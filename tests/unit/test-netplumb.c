/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netplumb against real network namespaces the test creates itself: "pod"
 * (eth0 with a pod IP and default routes, as a CNI plugin leaves it) and
 * "peer" (the other end of the veth, standing in for the node/network). The
 * guest is emulated on the tap fd with raw Ethernet frames (ARP and UDP), so
 * inbound DNAT and outbound SNAT are checked on real packets. Needs root.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "netplumb/netplumb.h"

/* The datagram exchanges below retransmit every second (the first datagram
 * may go before ARP/NDP resolves); these bound them, as hang guards scaled
 * by unit_wait_ms(), not as a speed requirement. */
#define RETRIES    (unit_wait_ms(5000) / 1000)
#define WAIT_MS    unit_wait_ms(5000)
#define DEADLINE_S (unit_wait_ms(15000) / 1000)

struct env {
        char pod[64], peer[64];
        char pod_path[128], peer_path[128];
        bool ready;
        const char *skip;
};

/* Runs a command given as one space-separated string (no quoting: the test's
 * own constant words), without a shell. Returns the exit status; *out gets
 * stdout if non-NULL. */
static int __attribute__((format(printf, 2, 3))) run(char **out, const char *fmt, ...)
{
        char *cmd = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&cmd, fmt, ap) < 0)
                abort();
        va_end(ap);
        char *argv[64];
        size_t n = 0;
        for (char *sp = NULL, *w = strtok_r(cmd, " ", &sp); w && n < 63;
             w = strtok_r(NULL, " ", &sp))
                argv[n++] = w;
        argv[n] = NULL;
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                abort();
        pid_t pid = fork();
        if (pid == 0) {
                dup2(p[1], 1);
                int devnull = open("/dev/null", O_WRONLY);
                if (!out)
                        dup2(devnull, 1);
                dup2(devnull, 2);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(p[1]);
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap);
        ssize_t k;
        while ((k = read(p[0], buf + len, cap - len - 1)) > 0) {
                len += (size_t)k;
                if (cap - len < 2) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                }
        }
        buf[len] = '\0';
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        free(cmd);
        if (out)
                *out = buf;
        else
                free(buf);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int setup_env(void **state)
{
        struct env *e = calloc(1, sizeof(*e));
        *state = e;
        if (geteuid() != 0) {
                e->skip = "needs root (creates network namespaces)";
                return 0;
        }
        if (run(NULL, "ip -V") != 0 || access("/usr/sbin/iptables-save", X_OK) != 0) {
                e->skip = "needs iproute2 and iptables";
                return 0;
        }
        snprintf(e->pod, sizeof(e->pod), "np-pod-%d", (int)getpid());
        snprintf(e->peer, sizeof(e->peer), "np-peer-%d", (int)getpid());
        snprintf(e->pod_path, sizeof(e->pod_path), "/run/netns/%s", e->pod);
        snprintf(e->peer_path, sizeof(e->peer_path), "/run/netns/%s", e->peer);
        const char *p = e->pod, *q = e->peer;
        if (run(NULL, "ip netns add %s", p) || run(NULL, "ip netns add %s", q)) {
                e->skip = "cannot create network namespaces";
                return 0;
        }
        e->ready = true;
        /* What a CNI plugin leaves behind; both ends created inside the
         * test's namespaces, never in the host's. */
        if (run(NULL, "ip -n %s link add eth0 mtu 1400 type veth peer name p0 mtu 1400 netns %s", p,
                q) ||
            run(NULL, "ip -n %s link set eth0 address 02:00:00:aa:bb:cc", p) ||
            run(NULL, "ip -n %s addr add 10.99.0.2/24 dev eth0", p) ||
            run(NULL, "ip -n %s addr add fd99::2/64 dev eth0 nodad", p) ||
            run(NULL, "ip -n %s link set lo up", p) || run(NULL, "ip -n %s link set eth0 up", p) ||
            run(NULL, "ip -n %s route add default via 10.99.0.1", p) ||
            run(NULL, "ip -n %s -6 route add default via fd99::1", p) ||
            run(NULL, "ip -n %s addr add 10.99.0.1/24 dev p0", q) ||
            run(NULL, "ip -n %s addr add fd99::1/64 dev p0 nodad", q) ||
            run(NULL, "ip -n %s link set lo up", q) || run(NULL, "ip -n %s link set p0 up", q))
                return -1;
        return 0;
}

static int teardown_env(void **state)
{
        struct env *e = *state;
        if (e->ready) {
                run(NULL, "ip netns del %s", e->pod);
                run(NULL, "ip netns del %s", e->peer);
        }
        free(e);
        return 0;
}

#define SKIP_UNLESS_READY(e)                                                                       \
        do {                                                                                       \
                if ((e)->skip)                                                                     \
                        unit_skip("%s", (e)->skip);                                                \
        } while (0)

static bool has_addr(const struct netplumb_pod_net *pod, int family, const char *text,
                     unsigned prefix)
{
        uint8_t want[16] = {0};
        assert_int_equal(inet_pton(family, text, want), 1);
        for (size_t i = 0; i < pod->n_addrs; i++)
                if (pod->addrs[i].family == family && pod->addrs[i].prefix == prefix &&
                    memcmp(pod->addrs[i].addr, want, family == AF_INET ? 4 : 16) == 0)
                        return true;
        return false;
}

static void inspect_pod(void **state)
{
        struct env *e = *state;
        SKIP_UNLESS_READY(e);
        struct netplumb_pod_net *pod = NULL;
        struct us_error *err = NULL;
        int r = netplumb_pod_inspect(e->pod_path, &pod, &err);
        if (r < 0)
                fail_msg("inspect: %s", us_error_text(err));
        assert_string_equal(pod->ifname, "eth0");
        assert_int_equal(pod->mtu, 1400);
        const uint8_t mac[6] = {0x02, 0, 0, 0xaa, 0xbb, 0xcc};
        assert_memory_equal(pod->mac, mac, 6);
        assert_true(has_addr(pod, AF_INET, "10.99.0.2", 24));
        assert_true(has_addr(pod, AF_INET6, "fd99::2", 64));
        bool def4 = false, def6 = false;
        for (size_t i = 0; i < pod->n_routes; i++) {
                const struct netplumb_route *rt = &pod->routes[i];
                uint8_t gw[16] = {0};
                if (rt->dst_prefix != 0 || !rt->has_gateway)
                        continue;
                if (rt->family == AF_INET) {
                        inet_pton(AF_INET, "10.99.0.1", gw);
                        def4 = memcmp(rt->gateway, gw, 4) == 0;
                } else {
                        inet_pton(AF_INET6, "fd99::1", gw);
                        def6 = memcmp(rt->gateway, gw, 16) == 0;
                }
        }
        assert_true(def4);
        assert_true(def6);
        free(pod);

        /* A netns that does not exist: an error with the path in it. */
        r = netplumb_pod_inspect("/run/netns/np-does-not-exist", &pod, &err);
        assert_int_equal(r, -ENOENT);
        assert_non_null(strstr(us_error_text(err), "np-does-not-exist"));
        us_error_free(err);
}

/* ---- a guest emulated on the tap fd: raw Ethernet frames ---- */

static uint16_t ip_csum(const void *data, size_t len)
{
        const uint8_t *p = data;
        uint32_t sum = 0;
        for (size_t i = 0; i + 1 < len; i += 2)
                sum += (uint32_t)p[i] << 8 | p[i + 1];
        if (len & 1)
                sum += (uint32_t)p[len - 1] << 8;
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        return htons((uint16_t)~sum);
}

struct guest {
        int fd;
        uint8_t mac[6], tap_mac[6];
        bool have_tap_mac;
        struct in_addr ip;
};

static void guest_send_udp_from(struct guest *g, struct in_addr src, struct in_addr dst,
                                uint16_t sport, uint16_t dport, const char *payload)
{
        /* 2 bytes of headroom: the IP header after the 14-byte Ethernet header
         * lands 4-aligned, so the header structs can be used in place. */
        uint8_t buf[1504] __attribute__((aligned(4))) = {0};
        uint8_t *frame = buf + 2;
        size_t plen = strlen(payload);
        struct ether_header *eth = (struct ether_header *)frame;
        memcpy(eth->ether_dhost, g->tap_mac, 6);
        memcpy(eth->ether_shost, g->mac, 6);
        eth->ether_type = htons(ETHERTYPE_IP);
        struct iphdr *ip = (struct iphdr *)(frame + sizeof(*eth));
        ip->version = 4;
        ip->ihl = 5;
        ip->ttl = 64;
        ip->protocol = IPPROTO_UDP;
        ip->tot_len = htons((uint16_t)(sizeof(*ip) + sizeof(struct udphdr) + plen));
        ip->saddr = src.s_addr;
        ip->daddr = dst.s_addr;
        ip->check = ip_csum(ip, sizeof(*ip));
        struct udphdr *udp = (struct udphdr *)(ip + 1);
        udp->source = htons(sport);
        udp->dest = htons(dport);
        udp->len = htons((uint16_t)(sizeof(*udp) + plen));
        udp->check = 0; /* optional for IPv4 */
        memcpy(udp + 1, payload, plen);
        size_t len = sizeof(*eth) + sizeof(*ip) + sizeof(*udp) + plen;
        assert_int_equal(write(g->fd, frame, len < 60 ? 60 : len), (ssize_t)(len < 60 ? 60 : len));
}

static void guest_send_udp(struct guest *g, struct in_addr dst, uint16_t sport, uint16_t dport,
                           const char *payload)
{
        guest_send_udp_from(g, g->ip, dst, sport, dport, payload);
}

static void guest_answer_arp(struct guest *g, const uint8_t *frame, size_t len)
{
        /* ether(14) + arp(28): htype ptype hlen plen op sha spa tha tpa */
        if (len < 42)
                return;
        const uint8_t *a = frame + 14;
        if (a[6] != 0 || a[7] != 1 || memcmp(a + 24, &g->ip, 4) != 0)
                return;
        memcpy(g->tap_mac, a + 8, 6);
        g->have_tap_mac = true;
        uint8_t out[60] = {0};
        memcpy(out, a + 8, 6);
        memcpy(out + 6, g->mac, 6);
        out[12] = 0x08;
        out[13] = 0x06;
        uint8_t *r = out + 14;
        memcpy(r, a, 6); /* htype, ptype, hlen, plen */
        r[6] = 0;
        r[7] = 2;
        memcpy(r + 8, g->mac, 6);
        memcpy(r + 14, &g->ip, 4);
        memcpy(r + 18, a + 8, 10); /* target = the asker's sha + spa */
        assert_int_equal(write(g->fd, out, sizeof(out)), (ssize_t)sizeof(out));
}

/* Returns the UDP payload length of a frame to the guest (and its source),
 * -1 for anything else. */
static ssize_t udp_to_guest(struct guest *g, const uint8_t *frame, size_t len, struct in_addr *src,
                            uint16_t *sport, uint16_t *dport, const uint8_t **payload)
{
        if (len < 14 + 20 + 8 || frame[12] != 0x08 || frame[13] != 0x00)
                return -1;
        const struct iphdr *ip = (const struct iphdr *)(frame + 14);
        if (ip->protocol != IPPROTO_UDP || ip->daddr != g->ip.s_addr || ip->ihl != 5)
                return -1;
        const struct udphdr *udp = (const struct udphdr *)(ip + 1);
        size_t ulen = ntohs(udp->len);
        if (ulen < 8 || 14 + 20 + ulen > len)
                return -1;
        src->s_addr = ip->saddr;
        *sport = ntohs(udp->source);
        *dport = ntohs(udp->dest);
        *payload = (const uint8_t *)(udp + 1);
        return (ssize_t)(ulen - 8);
}

/* The peer side, in a child in the peer netns: sends to the pod IP, expects
 * the guest's answer from the pod IP, then expects the guest's own datagram
 * SNATed to the pod IP and answers it. Exit 0 = all seen. */
static int peer_main(const char *peer_path)
{
        int ns = open(peer_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
                return 10;
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(6666)};
        inet_pton(AF_INET, "10.99.0.1", &me.sin_addr);
        if (bind(s, (struct sockaddr *)&me, sizeof(me)) < 0)
                return 11;
        struct sockaddr_in pod = {.sin_family = AF_INET, .sin_port = htons(7777)};
        inet_pton(AF_INET, "10.99.0.2", &pod.sin_addr);
        char buf[256];
        struct sockaddr_in from;
        socklen_t fl;
        for (int tries = 0;; tries++) {
                if (tries == RETRIES)
                        return 12;
                sendto(s, "ping-in", 7, 0, (struct sockaddr *)&pod, sizeof(pod));
                struct pollfd p = {.fd = s, .events = POLLIN};
                if (poll(&p, 1, 1000) <= 0)
                        continue;
                fl = sizeof(from);
                ssize_t n = recvfrom(s, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&from, &fl);
                if (n == 7 && memcmp(buf, "pong-in", 7) == 0 &&
                    from.sin_addr.s_addr == pod.sin_addr.s_addr && from.sin_port == htons(7777))
                        break;
                return 13;
        }
        /* Outbound from the guest: must arrive from the pod IP (SNAT). */
        struct pollfd p = {.fd = s, .events = POLLIN};
        for (;;) {
                if (poll(&p, 1, WAIT_MS) <= 0)
                        return 14;
                fl = sizeof(from);
                ssize_t n = recvfrom(s, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&from, &fl);
                if (n == 7 && memcmp(buf, "pong-in", 7) == 0)
                        continue; /* a retransmitted ping's answer */
                if (n != 9 || memcmp(buf, "hello-out", 9) != 0)
                        return 15;
                if (from.sin_addr.s_addr != pod.sin_addr.s_addr)
                        return 16;
                break;
        }
        sendto(s, "ack-out", 7, 0, (struct sockaddr *)&from, fl);
        return 0;
}

/* A mesh proxy in the pod netns passing an inbound connection on: it dials
 * POD_IP:port from 127.0.0.6 (Istio's inbound passthrough source). Exit 0 =
 * the guest answered. */
static int proxy_main(const char *pod_path)
{
        int ns = open(pod_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
                return 20;
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in me = {.sin_family = AF_INET};
        inet_pton(AF_INET, "127.0.0.6", &me.sin_addr);
        if (bind(s, (struct sockaddr *)&me, sizeof(me)) < 0)
                return 21;
        struct sockaddr_in pod = {.sin_family = AF_INET, .sin_port = htons(8080)};
        inet_pton(AF_INET, "10.99.0.2", &pod.sin_addr);
        for (int tries = 0; tries < RETRIES; tries++) {
                if (sendto(s, "via-proxy", 9, 0, (struct sockaddr *)&pod, sizeof(pod)) < 0)
                        return 22;
                struct pollfd p = {.fd = s, .events = POLLIN};
                if (poll(&p, 1, 1000) <= 0)
                        continue;
                char buf[64];
                struct sockaddr_in from;
                socklen_t fl = sizeof(from);
                ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
                if (n == 8 && memcmp(buf, "proxy-ok", 8) == 0 &&
                    from.sin_addr.s_addr == pod.sin_addr.s_addr && from.sin_port == htons(8080))
                        return 0;
                return 23;
        }
        return 24;
}

/* The CRI's port forwarding, as containerd does it: a TCP dial of
 * 127.0.0.1:PORT inside the pod netns. A port the pod netns keeps (a
 * sidecar's, 15020) stays local: nothing listens, refused. Then it dials
 * 127.0.0.1:8080, which must leave for the guest; the guest side sees the SYN
 * and the parent kills this child. Exits early only on a failure. */
static int forward_main(const char *pod_path)
{
        int ns = open(pod_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
                return 30;
        struct sockaddr_in lo = {.sin_family = AF_INET, .sin_port = htons(15020)};
        inet_pton(AF_INET, "127.0.0.1", &lo.sin_addr);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return 31;
        if (connect(s, (struct sockaddr *)&lo, sizeof(lo)) == 0 || errno != ECONNREFUSED)
                return 32;
        close(s);
        lo.sin_port = htons(8080);
        for (;;) {
                s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (s < 0)
                        return 33;
                /* Blocks in SYN retransmits (the emulated guest never
                 * answers) until killed. */
                if (connect(s, (struct sockaddr *)&lo, sizeof(lo)) < 0 && errno == ECONNREFUSED)
                        return 34; /* answered locally: not forwarded */
                close(s);
        }
}

/* What the pod netns keeps on loopback (a sidecar's admin port) is out of
 * the guest's reach, although route_localnet on the tap lets loopback
 * addresses through it for the proxy's and the CRI's own connections. In the
 * pod netns: UDP sockets on 127.0.0.1:9999 and the tap's address:9997, then
 * the readiness byte on ready_fd; the guest then sends a datagram to
 * 127.0.0.1:9999, one from 127.0.0.1 to the tap's address:9997, and last a
 * plain one to the tap's address:9998, the same path, in that order. Once
 * the plain one is in, the first two must not be. Exit 0 = nothing leaked. */
static int lo_guard_main(const char *pod_path, int ready_fd)
{
        int ns = open(pod_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
                return 40;
        static const struct {
                const char *addr;
                uint16_t port;
        } socks[] = {{"127.0.0.1", 9999}, {NETPLUMB_TAP_IPV4, 9997}, {NETPLUMB_TAP_IPV4, 9998}};
        int fds[3];
        for (size_t i = 0; i < 3; i++) {
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(socks[i].port)};
                inet_pton(AF_INET, socks[i].addr, &a.sin_addr);
                fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0)
                        return 41;
        }
        if (write(ready_fd, "r", 1) != 1)
                return 42;
        char buf[64];
        struct pollfd p = {.fd = fds[2], .events = POLLIN};
        if (poll(&p, 1, WAIT_MS) <= 0 || recv(fds[2], buf, sizeof(buf), 0) < 0)
                return 43; /* the plain datagram never came */
        if (recv(fds[0], buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                return 44; /* the guest reached 127.0.0.1 */
        if (recv(fds[1], buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                return 45; /* a loopback source from the guest was taken */
        return 0;
}

static void guest_cannot_reach_loopback(struct env *e, struct guest *g)
{
        int ready[2];
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(lo_guard_main(e->pod_path, ready[1]));
        close(ready[1]);
        char c;
        struct pollfd p = {.fd = ready[0], .events = POLLIN};
        assert_true(poll(&p, 1, WAIT_MS) == 1 && read(ready[0], &c, 1) == 1);
        close(ready[0]);
        struct in_addr lo, tap;
        inet_pton(AF_INET, "127.0.0.1", &lo);
        inet_pton(AF_INET, NETPLUMB_TAP_IPV4, &tap);
        guest_send_udp(g, lo, 5000, 9999, "to-loopback");
        guest_send_udp_from(g, lo, tap, 5000, 9997, "from-loopback");
        guest_send_udp(g, tap, 5000, 9998, "plain");
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("loopback guard failed with %d",
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* A TCP SYN to the guest: its source address and destination port. */
static bool tcp_syn_to_guest(struct guest *g, const uint8_t *frame, size_t len, struct in_addr *src,
                             uint16_t *dport)
{
        if (len < 14 + 20 + 20 || frame[12] != 0x08 || frame[13] != 0x00)
                return false;
        const struct iphdr *ip = (const struct iphdr *)(frame + 14);
        if (ip->protocol != IPPROTO_TCP || ip->daddr != g->ip.s_addr || ip->ihl != 5)
                return false;
        const uint8_t *tcp = frame + 14 + 20;
        if ((tcp[13] & 0x12) != 0x02) /* SYN without ACK */
                return false;
        src->s_addr = ip->saddr;
        *dport = (uint16_t)(tcp[2] << 8 | tcp[3]);
        return true;
}

static void guest_traffic(struct env *e, const struct netplumb_vm_net *vm, int tap_fd)
{
        struct guest g = {.fd = tap_fd};
        memcpy(g.mac, vm->mac, 6);
        inet_pton(AF_INET, NETPLUMB_GUEST_IPV4, &g.ip);
        struct in_addr peer;
        inet_pton(AF_INET, "10.99.0.1", &peer);

        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(peer_main(e->peer_path));

        bool inbound = false, outbound_acked = false, via_proxy = false, forwarded = false;
        pid_t proxy = -1, forwarder = -1;
        struct in_addr tap_ip;
        inet_pton(AF_INET, NETPLUMB_TAP_IPV4, &tap_ip);
        time_t deadline = time(NULL) + DEADLINE_S;
        while (!forwarded && time(NULL) < deadline) {
                if (outbound_acked && proxy < 0) {
                        proxy = fork();
                        assert_true(proxy >= 0);
                        if (proxy == 0)
                                _exit(proxy_main(e->pod_path));
                }
                if (via_proxy && forwarder < 0) {
                        forwarder = fork();
                        assert_true(forwarder >= 0);
                        if (forwarder == 0)
                                _exit(forward_main(e->pod_path));
                }
                struct pollfd p = {.fd = tap_fd, .events = POLLIN};
                if (poll(&p, 1, 500) <= 0)
                        continue;
                uint8_t buf[2052] __attribute__((aligned(4)));
                uint8_t *frame = buf + 2;
                ssize_t n = read(tap_fd, frame, sizeof(buf) - 2);
                if (n < 14)
                        continue;
                if (frame[12] == 0x08 && frame[13] == 0x06) {
                        guest_answer_arp(&g, frame, (size_t)n);
                        continue;
                }
                struct in_addr src;
                uint16_t sport, dport;
                if (forwarder > 0 && tcp_syn_to_guest(&g, frame, (size_t)n, &src, &dport)) {
                        /* nat OUTPUT DNAT of 127.0.0.1 + SNAT + route_localnet */
                        assert_int_equal(src.s_addr, tap_ip.s_addr);
                        assert_int_equal(dport, 8080);
                        forwarded = true;
                        continue;
                }
                const uint8_t *payload;
                ssize_t pl = udp_to_guest(&g, frame, (size_t)n, &src, &sport, &dport, &payload);
                if (pl < 0)
                        continue;
                if (pl == 7 && memcmp(payload, "ping-in", 7) == 0) {
                        /* DNAT: sent to the pod IP, arrives for the guest. */
                        assert_int_equal(src.s_addr, peer.s_addr);
                        assert_int_equal(dport, 7777);
                        memcpy(g.tap_mac, frame + 6, 6);
                        g.have_tap_mac = true;
                        guest_send_udp(&g, src, 7777, sport, "pong-in");
                        if (!inbound)
                                guest_send_udp(&g, peer, 5555, 6666, "hello-out");
                        inbound = true;
                } else if (pl == 7 && memcmp(payload, "ack-out", 7) == 0) {
                        assert_int_equal(dport, 5555);
                        outbound_acked = true;
                } else if (pl == 9 && memcmp(payload, "via-proxy", 9) == 0) {
                        /* nat OUTPUT DNAT + SNAT of 127.0.0.6 + route_localnet */
                        assert_int_equal(src.s_addr, tap_ip.s_addr);
                        assert_int_equal(dport, 8080);
                        guest_send_udp(&g, src, 8080, sport, "proxy-ok");
                        via_proxy = true;
                }
        }
        int status;
        if (proxy > 0) {
                assert_int_equal(waitpid(proxy, &status, 0), proxy);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        fail_msg("proxy side failed with %d",
                                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        if (forwarder > 0) {
                /* Still dialing unless it failed: a kill is the expected end. */
                kill(forwarder, SIGKILL);
                assert_int_equal(waitpid(forwarder, &status, 0), forwarder);
                if (WIFEXITED(status))
                        fail_msg("port-forward side failed with %d", WEXITSTATUS(status));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("peer side failed with %d (inbound seen %d, ack %d)",
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1, inbound, outbound_acked);
        assert_true(inbound);
        assert_true(outbound_acked);
        assert_true(via_proxy);
        assert_true(forwarded);
        guest_cannot_reach_loopback(e, &g);
}

/* ---- the same over IPv6: NDP instead of ARP, mandatory UDP checksums ---- */

static uint16_t csum6(const uint8_t src[16], const uint8_t dst[16], uint8_t nh, const uint8_t *data,
                      size_t len)
{
        uint8_t buf[1600];
        size_t off = 0;
        memcpy(buf, src, 16);
        memcpy(buf + 16, dst, 16);
        buf[32] = (uint8_t)(len >> 24);
        buf[33] = (uint8_t)(len >> 16);
        buf[34] = (uint8_t)(len >> 8);
        buf[35] = (uint8_t)len;
        buf[36] = buf[37] = buf[38] = 0;
        buf[39] = nh;
        off = 40;
        memcpy(buf + off, data, len);
        return ip_csum(buf, off + len);
}

struct guest6 {
        int fd;
        uint8_t mac[6], tap_mac[6];
        uint8_t ip[16];
};

static void guest6_send(struct guest6 *g, const uint8_t dst[16], uint8_t nh, uint8_t *l4,
                        size_t l4len, size_t csum_off)
{
        uint8_t frame[1600] = {0};
        memcpy(frame, g->tap_mac, 6);
        memcpy(frame + 6, g->mac, 6);
        frame[12] = 0x86;
        frame[13] = 0xdd;
        uint8_t *ip = frame + 14;
        ip[0] = 0x60;
        ip[4] = (uint8_t)(l4len >> 8);
        ip[5] = (uint8_t)l4len;
        ip[6] = nh;
        ip[7] = 255;
        memcpy(ip + 8, g->ip, 16);
        memcpy(ip + 24, dst, 16);
        l4[csum_off] = l4[csum_off + 1] = 0;
        uint16_t c = csum6(g->ip, dst, nh, l4, l4len);
        memcpy(l4 + csum_off, &c, 2);
        memcpy(ip + 40, l4, l4len);
        size_t len = 14 + 40 + l4len;
        assert_int_equal(write(g->fd, frame, len), (ssize_t)len);
}

static void guest6_send_udp(struct guest6 *g, const uint8_t dst[16], uint16_t sport, uint16_t dport,
                            const char *payload)
{
        uint8_t l4[256] = {0};
        size_t plen = strlen(payload);
        l4[0] = (uint8_t)(sport >> 8);
        l4[1] = (uint8_t)sport;
        l4[2] = (uint8_t)(dport >> 8);
        l4[3] = (uint8_t)dport;
        l4[4] = (uint8_t)((8 + plen) >> 8);
        l4[5] = (uint8_t)(8 + plen);
        memcpy(l4 + 8, payload, plen);
        guest6_send(g, dst, IPPROTO_UDP, l4, 8 + plen, 6);
}

/* Answers a neighbour solicitation for the guest's address. */
static void guest6_answer_ns(struct guest6 *g, const uint8_t *frame, size_t len)
{
        const uint8_t *ip = frame + 14;
        if (len < 14 + 40 + 24 || ip[6] != IPPROTO_ICMPV6 || ip[40] != 135 ||
            memcmp(ip + 40 + 8, g->ip, 16) != 0)
                return;
        memcpy(g->tap_mac, frame + 6, 6);
        uint8_t na[32] = {136, 0, 0, 0, 0x60 /* solicited, override */};
        memcpy(na + 8, g->ip, 16);
        na[24] = 2; /* target link-layer address option */
        na[25] = 1;
        memcpy(na + 26, g->mac, 6);
        guest6_send(g, ip + 8 /* the asker */, IPPROTO_ICMPV6, na, sizeof(na), 2);
}

static int peer6_main(const char *peer_path)
{
        int ns = open(peer_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
                return 30;
        int s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in6 me = {.sin6_family = AF_INET6, .sin6_port = htons(6667)};
        inet_pton(AF_INET6, "fd99::1", &me.sin6_addr);
        if (bind(s, (struct sockaddr *)&me, sizeof(me)) < 0)
                return 31;
        struct sockaddr_in6 pod = {.sin6_family = AF_INET6, .sin6_port = htons(7778)};
        inet_pton(AF_INET6, "fd99::2", &pod.sin6_addr);
        char buf[256];
        struct sockaddr_in6 from;
        socklen_t fl;
        for (int tries = 0;; tries++) {
                if (tries == RETRIES)
                        return 32;
                sendto(s, "ping6-in", 8, 0, (struct sockaddr *)&pod, sizeof(pod));
                struct pollfd p = {.fd = s, .events = POLLIN};
                if (poll(&p, 1, 1000) <= 0)
                        continue;
                fl = sizeof(from);
                ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
                if (n == 8 && memcmp(buf, "pong6-in", 8) == 0 &&
                    memcmp(&from.sin6_addr, &pod.sin6_addr, 16) == 0 &&
                    from.sin6_port == htons(7778))
                        break;
                return 33;
        }
        struct pollfd p = {.fd = s, .events = POLLIN};
        for (;;) {
                if (poll(&p, 1, WAIT_MS) <= 0)
                        return 34;
                fl = sizeof(from);
                ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
                if (n == 8 && memcmp(buf, "pong6-in", 8) == 0)
                        continue;
                if (n != 10 || memcmp(buf, "hello6-out", 10) != 0)
                        return 35;
                if (memcmp(&from.sin6_addr, &pod.sin6_addr, 16) != 0)
                        return 36; /* not SNATed to the pod IP */
                break;
        }
        sendto(s, "ack6-out", 8, 0, (struct sockaddr *)&from, fl);
        return 0;
}

static void guest_traffic6(struct env *e, const struct netplumb_vm_net *vm, int tap_fd)
{
        struct guest6 g = {.fd = tap_fd};
        memcpy(g.mac, vm->mac, 6);
        inet_pton(AF_INET6, NETPLUMB_GUEST_IPV6, g.ip);
        uint8_t peer[16];
        inet_pton(AF_INET6, "fd99::1", peer);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(peer6_main(e->peer_path));
        bool inbound = false, acked = false;
        time_t deadline = time(NULL) + DEADLINE_S;
        while (!acked && time(NULL) < deadline) {
                struct pollfd p = {.fd = tap_fd, .events = POLLIN};
                if (poll(&p, 1, 500) <= 0)
                        continue;
                uint8_t frame[2048];
                ssize_t n = read(tap_fd, frame, sizeof(frame));
                if (n < 14 + 40 + 8 || frame[12] != 0x86 || frame[13] != 0xdd)
                        continue;
                const uint8_t *ip = frame + 14;
                if (ip[6] == IPPROTO_ICMPV6) {
                        guest6_answer_ns(&g, frame, (size_t)n);
                        continue;
                }
                if (ip[6] != IPPROTO_UDP || memcmp(ip + 24, g.ip, 16) != 0)
                        continue;
                const uint8_t *udp = ip + 40;
                uint16_t sport = (uint16_t)(udp[0] << 8 | udp[1]);
                uint16_t dport = (uint16_t)(udp[2] << 8 | udp[3]);
                size_t ulen = (size_t)(udp[4] << 8 | udp[5]);
                if (ulen < 8 || 14 + 40 + ulen > (size_t)n)
                        continue;
                const uint8_t *payload = udp + 8;
                size_t pl = ulen - 8;
                if (pl == 8 && memcmp(payload, "ping6-in", 8) == 0) {
                        assert_memory_equal(ip + 8, peer, 16);
                        assert_int_equal(dport, 7778);
                        memcpy(g.tap_mac, frame + 6, 6);
                        guest6_send_udp(&g, ip + 8, 7778, sport, "pong6-in");
                        if (!inbound)
                                guest6_send_udp(&g, peer, 5556, 6667, "hello6-out");
                        inbound = true;
                } else if (pl == 8 && memcmp(payload, "ack6-out", 8) == 0) {
                        assert_int_equal(dport, 5556);
                        acked = true;
                }
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("IPv6 peer side failed with %d (inbound seen %d, ack %d)",
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1, inbound, acked);
        assert_true(inbound);
        assert_true(acked);
}

static char *pod_cmd(struct env *e, const char *cmd)
{
        char *out = NULL;
        int r = run(&out, "ip netns exec %s %s", e->pod, cmd);
        if (r != 0) {
                free(out);
                return NULL;
        }
        return out;
}

static void wire_traffic_unwire(void **state)
{
        struct env *e = *state;
        SKIP_UNLESS_READY(e);
        struct us_error *err = NULL;

        /* A mesh's CNI rules are there before the sandbox starts. */
        assert_int_equal(run(NULL, "ip netns exec %s iptables -t nat -N ISTIO_INBOUND", e->pod), 0);
        assert_int_equal(
                run(NULL, "ip netns exec %s iptables -t nat -A PREROUTING -p tcp -j ISTIO_INBOUND",
                    e->pod),
                0);

        struct netplumb_pod_net *pod = NULL;
        if (netplumb_pod_inspect(e->pod_path, &pod, &err) < 0)
                fail_msg("inspect: %s", us_error_text(err));
        struct netplumb_vm_net *vm = NULL;
        int tap_fd = -1;
        if (netplumb_vm_wire(e->pod_path, pod, NULL, &vm, &tap_fd, &err) < 0)
                fail_msg("wire: %s", us_error_text(err));
        assert_true(tap_fd >= 0);
        assert_true(fcntl(tap_fd, F_GETFD) & FD_CLOEXEC);
        assert_string_equal(vm->tap_name, "us-tap0");
        assert_int_equal(vm->mtu, 1400);
        assert_memory_equal(vm->mac, pod->mac, 6);
        assert_int_equal(vm->n_addrs, 2);
        assert_int_equal(vm->n_routes, 2);
        assert_int_equal(vm->n_pod_addrs, 2);

        /* The tap: documented name, up, its addresses, MTU, route_localnet. */
        char *out = NULL;
        assert_int_equal(run(&out, "ip -n %s addr show dev us-tap0", e->pod), 0);
        assert_non_null(strstr(out, "198.18.75.1/30"));
        assert_non_null(strstr(out, "fd75:6e69:7368::1/126"));
        assert_non_null(strstr(out, "mtu 1400"));
        assert_non_null(strstr(out, ",UP"));
        free(out);
        out = pod_cmd(e, "cat /proc/sys/net/ipv4/conf/us-tap0/route_localnet");
        assert_non_null(out);
        assert_string_equal(out, "1\n");
        free(out);
        out = pod_cmd(e, "cat /proc/sys/net/ipv4/ip_forward");
        assert_string_equal(out, "1\n");
        free(out);

        /* The rules, appended after the mesh's. */
        out = pod_cmd(e, "iptables-save -t nat");
        assert_non_null(out);
        assert_non_null(
                strstr(out, "-A UNISHIM-PRE -d 10.99.0.2/32 -j DNAT --to-destination 198.18.75.2"));
        assert_non_null(
                strstr(out, "-A UNISHIM-OUT -d 10.99.0.2/32 -j DNAT --to-destination 198.18.75.2"));
        assert_non_null(strstr(
                out, "-A UNISHIM-POST -s 127.0.0.0/8 -o us-tap0 -j SNAT --to-source 198.18.75.1"));
        assert_non_null(strstr(
                out,
                "-A UNISHIM-POST -s 198.18.75.2/32 ! -o us-tap0 -j SNAT --to-source 10.99.0.2"));
        assert_non_null(strstr(out, "--dport 15000:15100 -j RETURN"));
        char *istio = strstr(out, "-A PREROUTING -p tcp -j ISTIO_INBOUND");
        char *ours = strstr(out, "-A PREROUTING -m comment --comment unishim -j UNISHIM-PRE");
        assert_non_null(istio);
        assert_non_null(ours);
        assert_true(istio < ours);
        free(out);
        out = pod_cmd(e, "ip6tables-save -t nat");
        assert_non_null(out);
        assert_non_null(strstr(
                out, "-A UNISHIM-PRE -d fd99::2/128 -j DNAT --to-destination fd75:6e69:7368::2"));
        assert_non_null(strstr(out, "-j SNAT --to-source fd99::2"));
        free(out);

        /* Real packets: peer -> pod IP reaches the guest (DNAT) and the
         * answer comes back from the pod IP; the guest's own traffic leaves as
         * the pod IP (SNAT). */
        guest_traffic(e, vm, tap_fd);
        guest_traffic6(e, vm, tap_fd);
        out = pod_cmd(e, "iptables-save -c -t nat");
        assert_null(strstr(out, "[0:0] -A UNISHIM-PRE -d 10.99.0.2/32 -j DNAT"));
        free(out);

        /* Wiring again (a restarted shim) replaces, never duplicates. */
        close(tap_fd);
        free(vm);
        if (netplumb_vm_wire(e->pod_path, pod, NULL, &vm, &tap_fd, &err) < 0)
                fail_msg("wire again: %s", us_error_text(err));
        out = pod_cmd(e, "iptables-save -t nat");
        char *first = strstr(out, "-j UNISHIM-PRE");
        assert_non_null(first);
        assert_null(strstr(first + 1, "-j UNISHIM-PRE"));
        free(out);

        /* Unwire with the fd still open: the tap goes anyway. */
        if (netplumb_vm_unwire(e->pod_path, &err) < 0)
                fail_msg("unwire: %s", us_error_text(err));
        assert_int_not_equal(run(NULL, "ip -n %s link show us-tap0", e->pod), 0);
        for (int v6 = 0; v6 < 2; v6++) {
                out = pod_cmd(e, v6 ? "ip6tables-save" : "iptables-save");
                assert_non_null(out);
                assert_null(strstr(out, "UNISHIM"));
                assert_null(strstr(out, "unishim"));
                if (!v6)
                        assert_non_null(strstr(out, "-A PREROUTING -p tcp -j ISTIO_INBOUND"));
                free(out);
        }
        /* Idempotent. */
        if (netplumb_vm_unwire(e->pod_path, &err) < 0)
                fail_msg("unwire again: %s", us_error_text(err));
        close(tap_fd);
        free(vm);
        free(pod);
        assert_int_equal(netplumb_vm_unwire("/run/netns/np-does-not-exist", &err), 0);
        assert_null(err);
}

static void bad_input(void **state)
{
        struct env *e = *state;
        SKIP_UNLESS_READY(e);
        struct us_error *err = NULL;
        struct netplumb_pod_net *pod = NULL;
        if (netplumb_pod_inspect(e->pod_path, &pod, &err) < 0)
                fail_msg("inspect: %s", us_error_text(err));
        struct netplumb_vm_net *vm = NULL;
        int fd = -1;

        /* An invalid port range: refused, and nothing is left behind. */
        struct netplumb_port_range bad = {200, 100};
        struct netplumb_vm_opts opts = {.n_excluded = 1, .excluded = &bad};
        assert_int_equal(netplumb_vm_wire(e->pod_path, pod, &opts, &vm, &fd, &err), -EINVAL);
        assert_null(vm);
        assert_int_equal(fd, -1);
        assert_non_null(strstr(us_error_text(err), "invalid excluded port range 200-100"));
        err = us_error_free(err);
        assert_int_not_equal(run(NULL, "ip -n %s link show us-tap0", e->pod), 0);
        char *out = pod_cmd(e, "iptables-save");
        assert_null(strstr(out, "UNISHIM"));
        free(out);

        /* A pod without addresses cannot be wired. */
        struct netplumb_pod_net empty = *pod;
        empty.n_addrs = 0;
        assert_int_equal(netplumb_vm_wire(e->pod_path, &empty, NULL, &vm, &fd, &err),
                         -EADDRNOTAVAIL);
        err = us_error_free(err);
        empty.n_addrs = NETPLUMB_MAX_ADDRS + 1;
        assert_int_equal(netplumb_vm_wire(e->pod_path, &empty, NULL, &vm, &fd, &err), -EINVAL);
        err = us_error_free(err);
        free(pod);
}

/* ---- the iptables-save parser: no root needed ---- */

static const char save_sample[] =
        "# Generated by iptables-save v1.8.9 (nf_tables)\n"
        "*filter\n"
        ":INPUT ACCEPT [0:0]\n"
        ":FORWARD ACCEPT [0:0]\n"
        ":UNISHIM-FWD - [0:0]\n"
        "-A FORWARD -m comment --comment unishim -j UNISHIM-FWD\n"
        "-A UNISHIM-FWD -i us-tap0 -j ACCEPT\n"
        "COMMIT\n"
        "*nat\n"
        ":PREROUTING ACCEPT [0:0]\n"
        ":ISTIO_INBOUND - [0:0]\n"
        ":UNISHIM-PRE - [0:0]\n"
        ":UNISHIM-OUT - [0:0]\n"
        "-A PREROUTING -p tcp -j ISTIO_INBOUND\n"
        "-A PREROUTING -m comment --comment unishim -j UNISHIM-PRE\n"
        "-A PREROUTING -j UNISHIM-PRE\n" /* not commented as ours: kept */
        "-A OUTPUT -m comment --comment unishim -j UNISHIM-OUT\n"
        "-A UNISHIM-PRE -d 10.0.0.1/32 -j DNAT --to-destination 198.18.75.2\n"
        "COMMIT\n"
        "*mangle\n"
        ":PREROUTING ACCEPT [0:0]\n"
        "-A PREROUTING -j MARK --set-mark 1\n"
        "COMMIT\n";

static void removal_script(void **state)
{
        (void)state;
        char *script = NULL;
        struct us_error *err = NULL;
        assert_int_equal(netplumb_nat_removal_script(save_sample, &script, &err), 0);
        assert_non_null(script);
        assert_string_equal(script, "*filter\n"
                                    ":UNISHIM-FWD - [0:0]\n"
                                    "-D FORWARD -m comment --comment unishim -j UNISHIM-FWD\n"
                                    "-X UNISHIM-FWD\n"
                                    "COMMIT\n"
                                    "*nat\n"
                                    ":UNISHIM-PRE - [0:0]\n"
                                    ":UNISHIM-OUT - [0:0]\n"
                                    "-D PREROUTING -m comment --comment unishim -j UNISHIM-PRE\n"
                                    "-D OUTPUT -m comment --comment unishim -j UNISHIM-OUT\n"
                                    "-X UNISHIM-PRE\n"
                                    "-X UNISHIM-OUT\n"
                                    "COMMIT\n");
        free(script);
}

static void removal_script_hostile(void **state)
{
        (void)state;
        static const char *const inputs[] = {
                "",
                "\n\n\n",
                "COMMIT\n", /* COMMIT without a table */
                ":UNISHIM-PRE - [0:0]\n-A X -j UNISHIM-Y --comment unishim\n", /* no table */
                "*nat\n:UNISHIM-PRE - [0:0]\n",                                /* never committed */
                "*nat\n:UNISHIM- - [0:0]\nCOMMIT\n", /* bare prefix is not ours */
                "*nat\n-A \nCOMMIT\n",               /* truncated rule */
                "*nat\n:\nCOMMIT\n",                 /* empty chain name */
                "*\n-A PREROUTING -m comment --comment unishim\nCOMMIT\n",
        };
        for (size_t i = 0; i < US_ELEMENTSOF(inputs); i++) {
                char *script = (char *)1;
                struct us_error *err = NULL;
                assert_int_equal(netplumb_nat_removal_script(inputs[i], &script, &err), 0);
                assert_null(script);
                assert_null(err);
        }
        /* Over the limit: refused, not parsed. */
        size_t big = NETPLUMB_SAVE_MAX + 2;
        char *huge = malloc(big);
        memset(huge, 'a', big - 1);
        huge[big - 1] = '\0';
        char *script = NULL;
        struct us_error *err = NULL;
        assert_int_equal(netplumb_nat_removal_script(huge, &script, &err), -E2BIG);
        assert_null(script);
        us_error_free(err);
        err = NULL;
        free(huge);
        assert_int_equal(netplumb_nat_removal_script(NULL, &script, &err), -EINVAL);
        us_error_free(err);
}

int main(void)
{
        const struct CMUnitTest parse_tests[] = {
                cmocka_unit_test(removal_script),
                cmocka_unit_test(removal_script_hostile),
        };
        const struct CMUnitTest netns_tests[] = {
                cmocka_unit_test(inspect_pod),
                cmocka_unit_test(wire_traffic_unwire),
                cmocka_unit_test(bad_input),
        };
        int failed = unit_run_group_tests_name("netplumb-parse", parse_tests, NULL, NULL);
        failed += unit_run_group_tests_name("netplumb-netns", netns_tests, setup_env, teardown_env);
        return unit_exit(failed);
}
