/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Working inside the pod netns without moving the shim: a forked child joins
 * the netns, creates what must be born there (a netlink socket, the tun fd and
 * thus the tap, sysctl writes, iptables runs) and hands fds back over a
 * socketpair with SCM_RIGHTS. Sockets and tun devices keep the netns they were
 * created in, so the parent can use them afterwards. The child's pid is
 * waited for specifically; the shim's own reaper never sees it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "netplumb.h"

#define CHILD_MSG_MAX 512
#define EXEC_OUT_MAX  NETPLUMB_SAVE_MAX

struct child_reply {
        int code; /* 0 or negative errno */
        char msg[CHILD_MSG_MAX];
};

static int wait_child(pid_t pid, int *ret_status)
{
        int status;
        for (;;) {
                if (waitpid(pid, &status, 0) == pid)
                        break;
                if (errno != EINTR)
                        return -errno;
        }
        *ret_status = status;
        return 0;
}

static int write_file(const char *path, const char *value)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t len = strlen(value);
        if (write(fd, value, len) != (ssize_t)len)
                return -errno;
        return 0;
}

static int child_fail(struct child_reply *reply, int e, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int child_fail(struct child_reply *reply, int e, const char *fmt, ...)
{
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        snprintf(reply->msg, sizeof(reply->msg), "%s: %s", what, strerror(e));
        return -e;
}

/* Runs in the child, already in the netns. Never returns an error without a
 * message in reply. */
static int child_make_fds(const struct netplumb_netns_req *req, int fds[2], size_t *n_fds,
                          struct child_reply *reply)
{
        int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0 /* NETLINK_ROUTE */);
        if (nl < 0)
                return child_fail(reply, errno, "netlink socket");
        fds[(*n_fds)++] = nl;
        /* Bound, so libnl learns the kernel-assigned port id. */
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
        if (bind(nl, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return child_fail(reply, errno, "bind netlink socket");
        if (!req || (!req->want_tap && !req->adopt_tap && !req->persistent_tap))
                return 0;
        if (req->persistent_tap) {
                _cleanup_close_ int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
                if (tun < 0)
                        return child_fail(reply, errno, "open /dev/net/tun");
                struct ifreq ifr = {0};
                ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
                snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", req->persistent_tap);
                if (ioctl(tun, TUNSETIFF, &ifr) < 0)
                        return child_fail(reply, errno, "create tap %s", req->persistent_tap);
                if (ioctl(tun, TUNSETPERSIST, 1) < 0)
                        return child_fail(reply, errno, "make tap %s persistent",
                                          req->persistent_tap);
                return 0;
        }

        if (req->adopt_tap) {
                /* Renamed while down: the moved tap is, as a new one is. */
                _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                if (s < 0)
                        return child_fail(reply, errno, "socket");
                struct ifreq ifr = {0};
                snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", req->adopt_tap);
                snprintf(ifr.ifr_newname, sizeof(ifr.ifr_newname), "%s", NETPLUMB_TAP_NAME);
                if (ioctl(s, SIOCSIFNAME, &ifr) < 0)
                        return child_fail(reply, errno, "rename tap %s to %s", req->adopt_tap,
                                          NETPLUMB_TAP_NAME);
        } else {
                int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
                if (tun < 0)
                        return child_fail(reply, errno, "open /dev/net/tun");
                fds[(*n_fds)++] = tun;
                struct ifreq ifr = {0};
                ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
                snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", NETPLUMB_TAP_NAME);
                if (ioctl(tun, TUNSETIFF, &ifr) < 0)
                        return child_fail(reply, errno, "create tap %s", NETPLUMB_TAP_NAME);
        }
        /* /proc/sys/net resolves to the netns of the opener, i.e. ours now. */
        static const char *const paths[] = {
                "/proc/sys/net/ipv4/ip_forward",
                "/proc/sys/net/ipv4/conf/" NETPLUMB_TAP_NAME "/route_localnet",
                "/proc/sys/net/ipv6/conf/all/forwarding",
        };
        size_t n = req->ipv6_forwarding ? 3 : 2;
        for (size_t i = 0; i < n; i++) {
                int r = write_file(paths[i], "1");
                if (r < 0)
                        return child_fail(reply, -r, "write 1 to %s", paths[i]);
        }
        return 0;
}

static int send_reply(int sock, const struct child_reply *reply, const int *fds, size_t n_fds)
{
        struct iovec iov = {.iov_base = (void *)reply, .iov_len = sizeof(*reply)};
        ssize_t n = us_sendmsg_fds(sock, &iov, 1, fds, n_fds, 0);
        return n < 0 ? (int)n : 0;
}

static int recv_reply(int sock, struct child_reply *reply, int fds[2], size_t *n_fds)
{
        struct iovec iov = {.iov_base = reply, .iov_len = sizeof(*reply)};
        ssize_t n = us_recvmsg_fds(sock, &iov, 1, fds, 2, n_fds, 0);
        if (n < 0)
                return (int)n;
        if (n != (ssize_t)sizeof(*reply)) {
                for (size_t i = 0; i < *n_fds; i++)
                        us_close(fds[i]);
                *n_fds = 0;
                return -EPROTO;
        }
        reply->msg[CHILD_MSG_MAX - 1] = '\0';
        return 0;
}

int netplumb_netns_fds(int netns_fd, const struct netplumb_netns_req *req, int *ret_nl_fd,
                       int *ret_tun_fd, struct us_error **err)
{
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return us_errorf(err, errno, "socketpair");
        _cleanup_close_ int parent_sock = sp[0];
        _cleanup_close_ int child_sock = sp[1];

        pid_t pid = fork();
        if (pid < 0)
                return us_errorf(err, errno, "fork netns helper");
        if (pid == 0) {
                struct child_reply reply = {0};
                int fds[2] = {-1, -1};
                size_t n_fds = 0;
                if (setns(netns_fd, CLONE_NEWNET) < 0) {
                        reply.code = child_fail(&reply, errno, "setns");
                } else {
                        reply.code = child_make_fds(req, fds, &n_fds, &reply);
                }
                (void)send_reply(child_sock, &reply, reply.code == 0 ? fds : NULL,
                                 reply.code == 0 ? n_fds : 0);
                _exit(reply.code == 0 ? 0 : 1);
        }
        child_sock = us_close(child_sock);

        struct child_reply reply = {0};
        int fds[2] = {-1, -1};
        size_t n_fds = 0;
        int r = recv_reply(parent_sock, &reply, fds, &n_fds);
        int status;
        int rw = wait_child(pid, &status);
        _cleanup_close_ int nl_fd = n_fds > 0 ? fds[0] : -1;
        _cleanup_close_ int tun_fd = n_fds > 1 ? fds[1] : -1;
        if (rw < 0)
                return us_errorf(err, -rw, "wait for netns helper %d", (int)pid);
        if (r < 0)
                return us_errorf(err, -r, "netns helper reply");
        if (reply.code < 0)
                return us_error_msg(err, -reply.code, "%s", reply.msg);
        if (nl_fd < 0 || (req && req->want_tap && tun_fd < 0))
                return us_error_msg(err, EPROTO, "netns helper sent no fds");
        *ret_nl_fd = TAKE_FD(nl_fd);
        if (ret_tun_fd)
                *ret_tun_fd = TAKE_FD(tun_fd);
        return 0;
}

/* Reads fd until EOF into a growing buffer capped at EXEC_OUT_MAX. */
struct outbuf {
        char *data;
        size_t len, cap;
        bool truncated;
};

static int outbuf_read(struct outbuf *b, int fd)
{
        if (b->cap - b->len < 4096) {
                size_t ncap = b->cap ? b->cap * 2 : 16384;
                if (ncap > EXEC_OUT_MAX + 1)
                        ncap = EXEC_OUT_MAX + 1;
                if (ncap > b->cap) {
                        char *n = realloc(b->data, ncap);
                        if (!n)
                                return -ENOMEM;
                        b->data = n;
                        b->cap = ncap;
                }
        }
        char discard[4096];
        char *dst = b->len + 1 < b->cap ? b->data + b->len : discard;
        size_t room = b->len + 1 < b->cap ? b->cap - b->len - 1 : sizeof(discard);
        ssize_t n = read(fd, dst, room);
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 1 : -errno;
        if (n == 0)
                return 0;
        if (dst == discard)
                b->truncated = true;
        else
                b->len += (size_t)n;
        b->data[b->len] = '\0';
        return 1;
}

int netplumb_netns_exec(int netns_fd, char *const argv[], const char *stdin_data, char **ret_out,
                        struct us_error **err)
{
        int in[2], out[2], errp[2];
        /* stdin is a socketpair, not a pipe: send(MSG_NOSIGNAL) cannot raise
         * SIGPIPE in the shim when the tool exits without reading it all. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0)
                return us_errorf(err, errno, "socketpair");
        _cleanup_close_ int in_r = in[0], in_w = in[1];
        if (pipe2(out, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pipe");
        _cleanup_close_ int out_r = out[0], out_w = out[1];
        if (pipe2(errp, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pipe");
        _cleanup_close_ int err_r = errp[0], err_w = errp[1];

        pid_t pid = fork();
        if (pid < 0)
                return us_errorf(err, errno, "fork %s", argv[0]);
        if (pid == 0) {
                if (setns(netns_fd, CLONE_NEWNET) < 0)
                        _exit(126);
                if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
                        _exit(126);
                /* The shim blocks signals for its signalfd; exec keeps the mask
                 * and ignored dispositions, so give the tool a clean slate. */
                sigset_t none;
                sigemptyset(&none);
                (void)sigprocmask(SIG_SETMASK, &none, NULL);
                (void)signal(SIGPIPE, SIG_DFL);
                static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
                                             NULL};
                execve(argv[0], argv, envp);
                _exit(127);
        }
        in_r = us_close(in_r);
        out_w = us_close(out_w);
        err_w = us_close(err_w);

        /* stdin is small (rules, < 64 KiB pipe buffer in practice) but write
         * it inside the poll loop anyway so a large one cannot deadlock. */
        size_t in_len = stdin_data ? strlen(stdin_data) : 0, in_off = 0;
        if (in_len == 0)
                in_w = us_close(in_w);
        struct outbuf ob = {0}, eb = {0};
        int r = 0;
        while (out_r >= 0 || err_r >= 0) {
                struct pollfd p[3] = {{.fd = out_r, .events = POLLIN},
                                      {.fd = err_r, .events = POLLIN},
                                      {.fd = in_w, .events = POLLOUT}};
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (in_w >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
                        ssize_t n = send(in_w, stdin_data + in_off, in_len - in_off,
                                         MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n > 0)
                                in_off += (size_t)n;
                        if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_off == in_len) {
                                /* EOF for the reader */
                                (void)shutdown(in_w, SHUT_WR);
                                in_w = us_close(in_w);
                        }
                }
                if (out_r >= 0 && p[0].revents) {
                        int k = outbuf_read(&ob, out_r);
                        if (k <= 0)
                                out_r = us_close(out_r);
                        if (k < 0) {
                                r = k;
                                break;
                        }
                }
                if (err_r >= 0 && p[1].revents) {
                        int k = outbuf_read(&eb, err_r);
                        if (k <= 0)
                                err_r = us_close(err_r);
                        if (k < 0) {
                                r = k;
                                break;
                        }
                }
        }
        in_w = us_close(in_w);
        out_r = us_close(out_r);
        err_r = us_close(err_r);
        int status = 0;
        int rw = wait_child(pid, &status);
        _cleanup_free_ char *out_text = ob.data;
        _cleanup_free_ char *err_text = eb.data;
        if (rw < 0)
                return us_errorf(err, -rw, "wait for %s", argv[0]);
        if (r < 0)
                return us_errorf(err, -r, "read output of %s", argv[0]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                /* Keep the message one line: the first line of stderr. */
                if (err_text) {
                        char *nl = strchr(err_text, '\n');
                        if (nl)
                                *nl = '\0';
                }
                int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                if (code == 127)
                        return us_error_msg(err, ENOENT, "%s: cannot execute", argv[0]);
                return us_error_msg(err, EPROTO, "%s exited %d: %s", argv[0], code,
                                    err_text && *err_text ? err_text : "(no message)");
        }
        if (ob.truncated)
                return us_error_msg(err, E2BIG, "%s: output larger than %u bytes", argv[0],
                                    EXEC_OUT_MAX);
        if (ret_out) {
                if (!out_text) {
                        out_text = strdup("");
                        if (!out_text)
                                return -ENOMEM;
                }
                *ret_out = TAKE_PTR(out_text);
        }
        return 0;
}
