/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mesh-proxy: the part of a service mesh sidecar that the network wiring
 * has to get right, for tests/integration/test-mesh.sh. Like Istio's
 * proxy it accepts the connections that the mesh's nat REDIRECT rules send
 * to it (15001 outbound, 15006 inbound), reads where each was going
 * (SO_ORIGINAL_DST), logs it, and dials that destination itself: inbound
 * ones from 127.0.0.6, as Envoy does. It runs as UID (Istio's 1337) once it
 * listens, so that the mesh's OUTPUT rules let its own connections pass.
 * Linked statically: the tests bind-mount it into a busybox container.
 *
 *   mesh-proxy LOGFILE UID      (LOGFILE "-": standard output)
 *
 * Each intercepted connection appends one line to LOGFILE:
 *   outbound 10.1.2.3:8080
 *   inbound [fd00::4]:8080
 * (IPv6 too where the namespace has it: listeners on both families, inbound
 * dialled from ::6, IP6T_SO_ORIGINAL_DST.)
 * then bytes are relayed both ways until either side closes. One process
 * per connection; a test tool, not a proxy to deploy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define OUTBOUND_PORT 15001
#define INBOUND_PORT  15006
/* Where Envoy dials inbound connections from (Istio's passthrough binds). */
#define DIAL_FROM4 "127.0.0.6"
#define DIAL_FROM6 "::6"
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#endif

/* A listener on port for family; -1 when the family is not there (an
 * IPv4-only namespace has IPv6 off) and optional is set. */
static int listen_on(int family, uint16_t port, bool optional)
{
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
        socklen_t len = sizeof(struct sockaddr_in);
        if (family == AF_INET6) {
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
                len = sizeof(struct sockaddr_in6);
        } else {
                ((struct sockaddr_in *)&ss)->sin_port = htons(port);
        }
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            (family == AF_INET6 &&
             setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
            bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
                if (optional) {
                        if (fd >= 0)
                                close(fd);
                        return -1;
                }
                fprintf(stderr, "mesh-proxy: listen on %u: %s\n", port, strerror(errno));
                exit(1);
        }
        return fd;
}

static int dial(const struct sockaddr_storage *dst, bool inbound)
{
        bool v6 = dst->ss_family == AF_INET6;
        int fd = socket(dst->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        if (fd < 0)
                return -1;
        if (inbound) {
                struct sockaddr_storage from = {.ss_family = dst->ss_family};
                if (v6)
                        inet_pton(AF_INET6, DIAL_FROM6, &((struct sockaddr_in6 *)&from)->sin6_addr);
                else
                        inet_pton(AF_INET, DIAL_FROM4, &((struct sockaddr_in *)&from)->sin_addr);
                if (bind(fd, (struct sockaddr *)&from, len) < 0) {
                        close(fd);
                        return -1;
                }
        }
        if (connect(fd, (const struct sockaddr *)dst, len) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Copies a -> b and b -> a until one side has closed and the other has
 * drained. */
static void relay(int a, int b)
{
        struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
        char buf[16384];
        int open_dirs = 2;
        while (open_dirs > 0 && poll(p, 2, 60000) > 0) {
                for (int i = 0; i < 2; i++) {
                        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        ssize_t n = read(p[i].fd, buf, sizeof(buf));
                        if (n <= 0) {
                                shutdown(p[1 - i].fd, SHUT_WR);
                                p[i].fd = -1;
                                open_dirs--;
                                continue;
                        }
                        for (ssize_t off = 0; off < n;) {
                                ssize_t w = write(p[1 - i].fd, buf + off, (size_t)(n - off));
                                if (w <= 0)
                                        return;
                                off += w;
                        }
                }
        }
}

static void serve(int client, int family, bool inbound, int log_fd)
{
        const char *dir = inbound ? "inbound" : "outbound";
        struct sockaddr_storage dst;
        socklen_t len = sizeof(dst);
        int r = family == AF_INET6 ? getsockopt(client, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len)
                                   : getsockopt(client, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
        if (r < 0) {
                dprintf(log_fd, "%s no-original-destination %s\n", dir, strerror(errno));
                return;
        }
        char ip[INET6_ADDRSTRLEN] = "?", where[INET6_ADDRSTRLEN + 16];
        if (family == AF_INET6) {
                const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)&dst;
                inet_ntop(AF_INET6, &d->sin6_addr, ip, sizeof(ip));
                snprintf(where, sizeof(where), "[%s]:%u", ip, ntohs(d->sin6_port));
        } else {
                const struct sockaddr_in *d = (const struct sockaddr_in *)&dst;
                inet_ntop(AF_INET, &d->sin_addr, ip, sizeof(ip));
                snprintf(where, sizeof(where), "%s:%u", ip, ntohs(d->sin_port));
        }
        /* One write: lines from concurrent connections do not interleave. */
        dprintf(log_fd, "%s %s\n", dir, where);
        int upstream = dial(&dst, inbound);
        if (upstream < 0) {
                dprintf(log_fd, "%s %s dial-failed %s\n", dir, where, strerror(errno));
                return;
        }
        relay(client, upstream);
        close(upstream);
}

int main(int argc, char **argv)
{
        char *end = NULL;
        unsigned long uid = argc == 3 ? strtoul(argv[2], &end, 10) : 0;
        if (argc != 3 || !end || *end || uid == 0 || uid > 65535) {
                fprintf(stderr, "usage: mesh-proxy LOGFILE UID\n");
                return 2;
        }
        int log_fd = strcmp(argv[1], "-") == 0
                             ? STDOUT_FILENO
                             : open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
                fprintf(stderr, "mesh-proxy: %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        signal(SIGCHLD, SIG_IGN); /* connection handlers are not waited for */
        /* outbound v4, inbound v4, outbound v6, inbound v6 (v6 if there) */
        struct pollfd l[4] = {
                {.fd = listen_on(AF_INET, OUTBOUND_PORT, false), .events = POLLIN},
                {.fd = listen_on(AF_INET, INBOUND_PORT, false), .events = POLLIN},
                {.fd = listen_on(AF_INET6, OUTBOUND_PORT, true), .events = POLLIN},
                {.fd = listen_on(AF_INET6, INBOUND_PORT, true), .events = POLLIN},
        };
        /* Started as UID already (a pod's runAsUser, as Istio's injector
         * writes it): nothing to change, nor the right to. */
        bool as_uid = getuid() == uid && geteuid() == uid && getgid() == uid;
        if (!as_uid &&
            (setgroups(0, NULL) < 0 || setgid((gid_t)uid) < 0 || setuid((uid_t)uid) < 0)) {
                fprintf(stderr, "mesh-proxy: become uid %lu: %s\n", uid, strerror(errno));
                return 1;
        }
        dprintf(log_fd, "ready\n");
        for (;;) {
                if (poll(l, 4, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return 1;
                }
                for (int i = 0; i < 4; i++) {
                        if (!(l[i].revents & POLLIN))
                                continue;
                        int c = accept4(l[i].fd, NULL, NULL, SOCK_CLOEXEC);
                        if (c < 0)
                                continue;
                        pid_t pid = fork();
                        if (pid == 0) {
                                serve(c, i < 2 ? AF_INET : AF_INET6, i % 2 == 1, log_fd);
                                _exit(0);
                        }
                        close(c);
                }
        }
}
