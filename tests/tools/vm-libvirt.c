/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vm-libvirt: a vm pod's domain through vmm/libvirt.h and vmm/domain.h,
 * against the real libvirtd, for tests/integration/test-vmm-libvirt.sh.
 *
 *   vm-libvirt --name NAME --disk QCOW2 --console SOCKET --uid UID
 *              [--paused] [--uri URI] [--memory MIB]
 *
 * QEMU runs as UID, group libvirt-qemu (libvirt's state dir admits it), and
 * must be able to open the disk; the console socket is made its.
 *
 * Listens on SOCKET (the domain's serial console connects to it), creates
 * the domain (AUTODESTROY: it lives as long as this process's connection)
 * and runs one event loop, like the shim: libvirt's answers and events
 * arrive on it, and commands on stdin, one a line:
 *
 *   state | stats | suspend | resume | shutdown | destroy | ping | quit
 *
 * Prints, a line each: "created", "state N" (VIR_DOMAIN_*), "stats
 * vcpus=N memory_kib=N disks=NAME:RD_REQS:WR_REQS,...", "event E D"
 * (VIR_DOMAIN_EVENT_* and detail), "console connected", "closed REASON",
 * "ok CMD", "pong" (at once: the loop never waits for libvirt), "error:
 * ...". Ends at quit, stdin's EOF, or a Stopped event; exits 1 when the
 * domain could not be created.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "vmm/domain.h"
#include "vmm/libvirt.h"
#include "base/loop.h"

#define EVENT_STOPPED 5 /* VIR_DOMAIN_EVENT_STOPPED */

struct tool {
        struct us_loop *loop;
        struct vmm_libvirt *conn;
        struct vmm_libvirt_domain *dom;
        int console_listen, console_fd;
        bool created, eof; /* stdin's EOF ends it once the create has */
        char line[256];
        size_t line_len;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static void on_event(void *userdata, int event, int detail)
{
        struct tool *t = userdata;
        say("event %d %d", event, detail);
        if (event == EVENT_STOPPED)
                us_loop_quit(t->loop, 0);
}

static void on_closed(void *userdata, int reason)
{
        struct tool *t = userdata;
        say("closed %d", reason);
        us_loop_quit(t->loop, 0);
}

static void console_data(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        char buf[4096];
        (void)userdata;
        (void)events;
        if (read(fd, buf, sizeof(buf)) <= 0)
                us_loop_source_remove(src);
}

static void console_accept(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        struct tool *t = userdata;
        (void)events;
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0)
                return;
        t->console_fd = c;
        us_loop_source_remove(src);
        say("console connected");
        (void)us_loop_add_fd(t->loop, c, EPOLLIN, console_data, t, NULL, NULL);
}

static void acted(void *userdata, int r, struct us_error *err)
{
        if (r < 0)
                say("error: %s", us_error_text(err));
        else
                say("ok %s", (const char *)userdata);
        us_error_free(err);
}

static void got_state(void *userdata, int r, struct us_error *err,
                      const struct vmm_libvirt_stats *s)
{
        (void)userdata;
        if (r < 0)
                say("error: %s", us_error_text(err));
        else
                say("state %d", s->state);
        us_error_free(err);
}

static void got_stats(void *userdata, int r, struct us_error *err,
                      const struct vmm_libvirt_stats *s)
{
        (void)userdata;
        if (r < 0) {
                say("error: %s", us_error_text(err));
                us_error_free(err);
                return;
        }
        char disks[512] = "";
        size_t len = 0;
        for (size_t i = 0; i < s->n_disks && len < sizeof(disks); i++)
                len += (size_t)snprintf(disks + len, sizeof(disks) - len, "%s%s:%llu:%llu",
                                        i ? "," : "", s->disks[i].name,
                                        (unsigned long long)s->disks[i].rd_reqs,
                                        (unsigned long long)s->disks[i].wr_reqs);
        say("stats vcpus=%u memory_kib=%llu disks=%s", s->vcpus, (unsigned long long)s->memory_kib,
            disks);
}

static void command(struct tool *t, const char *cmd)
{
        if (!cmd[0])
                return;
        static const struct {
                const char *name;
                enum vmm_libvirt_action action;
        } actions[] = {
                {"suspend", VMM_LIBVIRT_SUSPEND},
                {"resume", VMM_LIBVIRT_RESUME},
                {"shutdown", VMM_LIBVIRT_SHUTDOWN},
                {"destroy", VMM_LIBVIRT_DESTROY},
        };
        struct us_error *err = NULL;
        int r = 0;

        if (!strcmp(cmd, "ping")) {
                say("pong");
                return;
        } else if (!strcmp(cmd, "quit")) {
                us_loop_quit(t->loop, 0);
                return;
        } else if (!strcmp(cmd, "state")) {
                r = vmm_libvirt_stats(t->dom, got_state, t, &err);
        } else if (!strcmp(cmd, "stats")) {
                r = vmm_libvirt_stats(t->dom, got_stats, t, &err);
        } else {
                size_t i = 0;
                while (i < US_ELEMENTSOF(actions) && strcmp(cmd, actions[i].name) != 0)
                        i++;
                if (i == US_ELEMENTSOF(actions)) {
                        say("error: unknown command %s", cmd);
                        return;
                }
                r = vmm_libvirt_act(t->dom, actions[i].action, acted, (void *)actions[i].name,
                                    &err);
        }
        if (r < 0)
                say("error: %s", us_error_text(err));
        us_error_free(err);
}

static void created(void *userdata, int r, struct us_error *err)
{
        struct tool *t = userdata;
        if (r < 0) {
                say("error: %s", us_error_text(err));
                us_error_free(err);
                us_loop_quit(t->loop, 1);
                return;
        }
        say("created");
        t->created = true;
        if (t->eof)
                us_loop_quit(t->loop, 0);
}

static void stdin_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        struct tool *t = userdata;
        (void)events;
        ssize_t n = read(fd, t->line + t->line_len, sizeof(t->line) - 1 - t->line_len);
        if (n <= 0) {
                us_loop_source_remove(src);
                t->eof = true;
                if (t->created)
                        us_loop_quit(t->loop, 0);
                return;
        }
        t->line_len += (size_t)n;
        char *nl;
        while ((nl = memchr(t->line, '\n', t->line_len))) {
                *nl = '\0';
                command(t, t->line);
                size_t used = (size_t)(nl - t->line) + 1;
                memmove(t->line, nl + 1, t->line_len - used);
                t->line_len -= used;
        }
        if (t->line_len == sizeof(t->line) - 1)
                t->line_len = 0;
}

static int listen_at(const char *path, uid_t uid)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path))
                return -1;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -1;
        (void)unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chown(path, uid, uid) < 0 ||
            listen(fd, 1) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

int main(int argc, char **argv)
{
        struct vmm_domain_config dc = {.vcpus = 1, .memory_mib = 128};
        const char *uri = NULL;
        bool paused = false;
        struct tool t = {.console_listen = -1, .console_fd = -1};
        struct us_error *err = NULL;
        _cleanup_free_ char *xml = NULL;
        static const struct option opts[] = {
                {"name", required_argument, NULL, 'n'},    {"disk", required_argument, NULL, 'd'},
                {"console", required_argument, NULL, 'c'}, {"paused", no_argument, NULL, 'p'},
                {"uri", required_argument, NULL, 'u'},     {"memory", required_argument, NULL, 'm'},
                {"uid", required_argument, NULL, 'U'},     {0},
        };
        int o;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (o) {
                case 'n':
                        dc.name = optarg;
                        break;
                case 'd':
                        dc.disk = optarg;
                        break;
                case 'c':
                        dc.console_socket = optarg;
                        break;
                case 'p':
                        paused = true;
                        break;
                case 'u':
                        uri = optarg;
                        break;
                case 'm':
                        dc.memory_mib = (unsigned)atoi(optarg);
                        break;
                case 'U':
                        dc.uid = (uid_t)strtoul(optarg, NULL, 0);
                        break;
                default:
                        return 2;
                }
        }
        if (!dc.name || !dc.disk || !dc.console_socket) {
                fprintf(stderr, "usage: vm-libvirt --name N --disk QCOW2 --console SOCKET\n");
                return 2;
        }
        (void)signal(SIGPIPE, SIG_IGN);
        const struct group *qemu_group = getgrnam("libvirt-qemu");
        dc.gid = qemu_group ? qemu_group->gr_gid : dc.uid;
        if (vmm_domain_xml(&dc, &xml, &err) < 0 || us_loop_new(&t.loop, &err) < 0)
                goto fail;
        t.console_listen = listen_at(dc.console_socket, dc.uid);
        if (t.console_listen < 0) {
                say("error: listen on %s: %s", dc.console_socket, strerror(errno));
                return 1;
        }
        if (us_loop_add_fd(t.loop, t.console_listen, EPOLLIN, console_accept, &t, NULL, &err) < 0 ||
            us_loop_add_fd(t.loop, 0, EPOLLIN, stdin_ready, &t, NULL, &err) < 0 ||
            vmm_libvirt_open(t.loop, uri, on_closed, &t, NULL, NULL, &t.conn, &err) < 0 ||
            vmm_libvirt_create(t.conn, xml, paused, on_event, &t, created, &t, &t.dom, &err) < 0)
                goto fail;
        /* (a failed open fails the create, which says why) */
        int rc = us_loop_run(t.loop);
        t.dom = vmm_libvirt_domain_free(t.dom);
        t.conn = vmm_libvirt_close(t.conn);
        return rc;
fail:
        say("error: %s", us_error_text(err));
        us_error_free(err);
        return 1;
}
