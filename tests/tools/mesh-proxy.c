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
 *   inbound 10.1.2.4:8080
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
#define DIAL_FROM     "127.0.0.6"

static int listen_on(uint16_t port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
                fprintf(stderr, "mesh-proxy: listen on %u: %s\n", port, strerror(errno));
                exit(1);
        }
        return fd;
}

static int dial(const struct sockaddr_in *dst, bool inbound)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (inbound) {
                struct sockaddr_in from = {.sin_family = AF_INET};
                inet_pton(AF_INET, DIAL_FROM, &from.sin_addr);
                if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0) {
                        close(fd);
                        return -1;
                }
        }
        if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0) {
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

static void serve(int client, bool inbound, int log_fd)
{
        struct sockaddr_in dst;
        socklen_t len = sizeof(dst);
        if (getsockopt(client, SOL_IP, SO_ORIGINAL_DST, &dst, &len) < 0) {
                dprintf(log_fd, "%s no-original-destination %s\n", inbound ? "inbound" : "outbound",
                        strerror(errno));
                return;
        }
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &dst.sin_addr, ip, sizeof(ip));
        /* One write: lines from concurrent connections do not interleave. */
        dprintf(log_fd, "%s %s:%u\n", inbound ? "inbound" : "outbound", ip, ntohs(dst.sin_port));
        int upstream = dial(&dst, inbound);
        if (upstream < 0) {
                dprintf(log_fd, "%s %s:%u dial-failed %s\n", inbound ? "inbound" : "outbound", ip,
                        ntohs(dst.sin_port), strerror(errno));
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
        struct pollfd l[2] = {{.fd = listen_on(OUTBOUND_PORT), .events = POLLIN},
                              {.fd = listen_on(INBOUND_PORT), .events = POLLIN}};
        if (setgroups(0, NULL) < 0 || setgid((gid_t)uid) < 0 || setuid((uid_t)uid) < 0) {
                fprintf(stderr, "mesh-proxy: become uid %lu: %s\n", uid, strerror(errno));
                return 1;
        }
        dprintf(log_fd, "ready\n");
        for (;;) {
                if (poll(l, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return 1;
                }
                for (int i = 0; i < 2; i++) {
                        if (!(l[i].revents & POLLIN))
                                continue;
                        int c = accept4(l[i].fd, NULL, NULL, SOCK_CLOEXEC);
                        if (c < 0)
                                continue;
                        pid_t pid = fork();
                        if (pid == 0) {
                                serve(c, i == 1, log_fd);
                                _exit(0);
                        }
                        close(c);
                }
        }
}
