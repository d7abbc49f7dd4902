/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unishim-agent: PID 1 of a sandbox VM. Leaves the initramfs for a root of
 * its own (so that containers get a real pivot_root), mounts the basics,
 * loads the kernel modules listed in the initramfs's
 * /lib/modules/unishim.list (in dependency order, computed when the image
 * was built), empties the initramfs, brings up lo, finds the virtio-serial
 * port named "unishim.agent" and serves the Agent service on it. It never
 * exits: PID 1 exiting panics the kernel, so fatal errors power the VM off
 * instead.
 *
 * Kernel command line: unishim.debug=1 (debug log on /dev/console),
 * unishim.port_timeout_ms=N (wait for the port, default 10000).
 * Run as non-PID 1 with --port PATH for development: then it mounts nothing.
 * Run as "modprobe" (the kernel's helper, agent-modprobe.h) it loads one
 * on-demand module and exits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent-modprobe.h"
#include "agent.h"
#include "base/cleanup.h"
#include "base/loop.h"
#include "base/log.h"

/* In the initramfs, relative to its root. */
#define MODULE_DIR  "lib/modules"
#define MODULE_LIST MODULE_DIR "/unishim.list"

struct cmdline {
        bool debug;
        unsigned port_timeout_ms;
};

static void fatal(const char *what, struct us_error *err)
{
        us_log_error("%s: %s; powering off", what, us_error_text(err));
        sync();
        if (getpid() == 1) {
                (void)reboot(RB_POWER_OFF);
                (void)reboot(RB_AUTOBOOT);
                for (;;)
                        pause();
        }
        exit(1);
}

static void parse_cmdline(struct cmdline *c)
{
        c->port_timeout_ms = 10000;
        char buf[4096];
        int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        us_close(fd);
        if (n <= 0)
                return;
        buf[n] = '\0';
        char *save = NULL;
        for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
                if (!strcmp(tok, "unishim.debug=1"))
                        c->debug = true;
                else if (!strncmp(tok, "unishim.port_timeout_ms=", 24)) {
                        unsigned long v = strtoul(tok + 24, NULL, 10);
                        if (v > 0 && v < 600000)
                                c->port_timeout_ms = (unsigned)v;
                }
        }
}

static int64_t monotonic_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void console_stdio(void)
{
        int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return;
        (void)dup2(fd, STDIN_FILENO);
        (void)dup2(fd, STDOUT_FILENO);
        (void)dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
                us_close(fd);
}

/* finit_module every .ko listed (paths relative to /lib/modules), in order,
 * from the initramfs (root_fd). */
static void load_modules(int root_fd, bool debug)
{
        int lfd = openat(root_fd, MODULE_LIST, O_RDONLY | O_CLOEXEC);
        if (lfd < 0)
                return;
        _cleanup_fclose_ FILE *f = fdopen(lfd, "re");
        if (!f) {
                us_close(lfd);
                return;
        }
        char line[512];
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (!line[0] || line[0] == '#')
                        continue;
                char path[600];
                snprintf(path, sizeof(path), MODULE_DIR "/%s", line);
                int fd = openat(root_fd, path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        us_log_warn("module /%s: %s", path, strerror(errno));
                        continue;
                }
                if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                        us_log_warn("load module %s: %s", line, strerror(errno));
                else if (debug)
                        us_log_debug("loaded %s", line);
                us_close(fd);
        }
}

/* The host reaches the agent on two virtio-serial ports served alike: the
 * shim makes short synchronous calls on the first and keeps its long polls
 * (exits, output, OOM) on the second, so neither waits behind the other. */
static const char *const port_names[] = {AGENT_PORT_CALLS, AGENT_PORT_EVENTS};
#define N_PORTS (sizeof(port_names) / sizeof(port_names[0]))

static int find_port(const char *want, char *out, size_t outlen)
{
        DIR *d = opendir("/sys/class/virtio-ports");
        if (!d)
                return -ENOENT;
        struct dirent *de;
        int r = -ENOENT;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char path[300], name[64] = "";
                snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                bool ok = fgets(name, sizeof(name), f) != NULL;
                fclose(f);
                name[strcspn(name, "\n")] = '\0';
                if (ok && !strcmp(name, want)) {
                        snprintf(out, outlen, "/dev/%s", de->d_name);
                        r = 0;
                        break;
                }
        }
        closedir(d);
        return r;
}

#define PORT_PATH_MAX 300

/* The port appears when virtio_console has probed; devtmpfs creates the node. */
static int open_port(const char *name, unsigned timeout_ms, char path[PORT_PATH_MAX],
                     struct us_error **err)
{
        int64_t deadline = us_monotonic_ms() + timeout_ms;
        for (;;) {
                if (find_port(name, path, PORT_PATH_MAX) == 0) {
                        int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                        if (fd >= 0)
                                return fd;
                        if (errno != ENOENT)
                                return us_errorf(err, errno, "open %s", path);
                }
                if (us_monotonic_ms() > deadline)
                        return us_error_msg(err, ETIMEDOUT,
                                            "virtio-serial port %s did not appear within %u ms",
                                            name, timeout_ms);
                usleep(10000);
        }
}

struct main_ctx;

struct port {
        struct main_ctx *m;
        const char *name;
        const char *dev;          /* --port: a fixed device for tests (first port only) */
        bool optional;            /* the events port: older hosts do not offer it */
        int fd;                   /* the port, open while it exists; each connection a dup */
        char path[PORT_PATH_MAX]; /* fd's device node */
};

struct main_ctx {
        struct agent *agent;
        struct us_loop *loop;
        unsigned port_timeout_ms;
        struct port ports[N_PORTS];
};

static void port_closed(void *userdata);

/* Serves the port on a new connection: a dup of the port, which stays
 * open when the connection ends. The virtio-serial driver discards what a
 * port has buffered when its last fd is closed, and the host's bytes can
 * arrive between the agent's EOF (the driver told it of no host) and a
 * close: a restored clone's guest wakes believing its template's host
 * state, and the shim's first call, already delivered, would be lost with
 * the close (docs/vmm.md, "Why clones hung"); a cold guest's first open
 * can race its driver's news of the host the same way. */
static int port_serve(struct port *p, struct us_error **err)
{
        char now[PORT_PATH_MAX];
        /* A port unplugged (its driver unbound in the guest: only root there
         * can) reads EOF for good: it is opened anew, and when it does not
         * come back within port_timeout_ms the VM powers off, as at boot. */
        if (p->fd >= 0 && !p->dev &&
            (find_port(p->name, now, sizeof(now)) < 0 || strcmp(now, p->path) != 0))
                p->fd = us_close(p->fd);
        if (p->fd < 0 && p->dev) {
                p->fd = open(p->dev, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                if (p->fd < 0)
                        return us_errorf(err, errno, "open %s", p->dev);
        } else if (p->fd < 0) {
                int fd = open_port(p->name, p->m->port_timeout_ms, p->path, err);
                if (fd < 0)
                        return fd;
                p->fd = fd;
        }
        int conn = fcntl(p->fd, F_DUPFD_CLOEXEC, 3);
        if (conn < 0)
                return us_errorf(err, errno, "dup port %s", p->name);
        return agent_serve_fd_notify(p->m->agent, conn, port_closed, p, err);
}

static void on_reopen(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct port *p = userdata;
        struct us_error *err = NULL;
        if (port_serve(p, &err) < 0)
                fatal("reopen agent port", err);
}

/* A virtio-serial port reads EOF while no host is connected; the server then
 * drops the connection. Serve the port again (after a pause: it would read
 * EOF at once until a host comes) so the next host finds the agent. */
static void port_closed(void *userdata)
{
        struct port *p = userdata;
        us_log_debug("port %s: host side closed", p->name);
        if (us_loop_add_timer(p->m->loop, 100, on_reopen, p, NULL, NULL) < 0)
                fatal("schedule port reopen", NULL);
}

static void on_signal(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct main_ctx *m = userdata;
        struct signalfd_siginfo si;
        bool reap = false;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                if (si.ssi_signo == SIGCHLD)
                        reap = true;
        if (reap)
                agent_reap(m->agent);
}

int main(int argc, char **argv)
{
        bool pid1 = getpid() == 1;
        const char *dev_port = NULL;
        struct us_error *err = NULL;
        struct cmdline cl = {0};
        int initramfs = -1;
        int64_t t0 = monotonic_us(), t_left = t0;

        if (!pid1 && argc > 0 && agent_modprobe_invoked(argv[0]))
                return agent_modprobe_main(argc, argv);

        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--port") && i + 1 < argc)
                        dev_port = argv[++i];
                else if (!strcmp(argv[i], "--debug"))
                        cl.debug = true;

        if (pid1) {
                /* Before anything is mounted: the mounts then go into the
                 * new root, and no container ever runs from the initramfs.
                 * A guest that cannot leave it does not serve. */
                if (agent_leave_initramfs(&initramfs, &err) < 0) {
                        console_stdio();
                        fatal("leave the initramfs", err);
                }
                t_left = monotonic_us();
                if (agent_mount_early(&err) < 0) {
                        console_stdio();
                        fatal("mount", err);
                }
                console_stdio();
                parse_cmdline(&cl);
        }
        us_log_set_level(cl.debug ? US_LOG_DEBUG : US_LOG_INFO);
        us_log_info("unishim-agent " UNISHIM_VERSION " starting");

        if (pid1) {
                load_modules(initramfs, cl.debug);
                /* Before the initramfs is emptied, and before any container
                 * runs (none could yet have written to the initramfs). A
                 * guest without the store still serves: only on-demand
                 * modules are missing. */
                unsigned od_files = 0;
                uint64_t od_bytes = 0;
                int64_t t_od = monotonic_us();
                if (agent_modprobe_install(initramfs, &od_files, &od_bytes, &err) < 0) {
                        us_log_warn("on-demand modules: %s", us_error_text(err));
                        err = us_error_free(err);
                } else if (cl.debug) {
                        us_log_debug("on-demand modules: %u files, %" PRIu64
                                     " KiB copied in %" PRId64 " us",
                                     od_files, od_bytes / 1024, monotonic_us() - t_od);
                }
                uint64_t freed = 0;
                int64_t t_free = monotonic_us();
                if (agent_free_initramfs(initramfs, &freed, &err) < 0) {
                        us_log_warn("%s", us_error_text(err));
                        err = us_error_free(err);
                } else if (cl.debug) {
                        us_log_debug("left the initramfs in %" PRId64 " us, emptied it in %" PRId64
                                     " us: %" PRIu64 " KiB freed",
                                     t_left - t0, monotonic_us() - t_free, freed / 1024);
                }
                initramfs = us_close(initramfs);
                if (agent_net_lo_up(&err) < 0) {
                        us_log_warn("lo: %s", us_error_text(err));
                        err = us_error_free(err);
                }
        } else {
                /* Not PID 1: become the reaper of the containers we start. */
                (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
        }

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGPIPE);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0)
                fatal("signalfd", NULL);

        struct us_loop *loop = NULL;
        if (us_loop_new(&loop, &err) < 0)
                fatal("loop", err);
        struct main_ctx m = {0};
        struct agent_options opts = {.debug = cl.debug};
        if (agent_new(loop, &opts, &m.agent, &err) < 0)
                fatal("agent", err);
        if (us_loop_add_fd(loop, sfd, EPOLLIN, on_signal, &m, NULL, &err) < 0)
                fatal("signalfd watch", err);

        m.loop = loop;
        m.port_timeout_ms = cl.port_timeout_ms;
        for (size_t i = 0; i < N_PORTS; i++) {
                m.ports[i] =
                        (struct port){.m = &m, .name = port_names[i], .optional = i > 0, .fd = -1};
                if (dev_port)
                        m.ports[i].dev = i == 0 ? dev_port : NULL;
        }
        for (size_t i = 0; i < N_PORTS; i++) {
                if (dev_port && i > 0)
                        break; /* tests serve one fixed device */
                if (port_serve(&m.ports[i], &err) < 0) {
                        if (!m.ports[i].optional)
                                fatal("agent port", err);
                        us_log_warn("%s", us_error_text(err));
                        err = us_error_free(err);
                        continue;
                }
                us_log_info("agent ready on %s", port_names[i]);
        }

        int code = us_loop_run(loop);
        /* Only reached when not PID 1 (Shutdown quits the loop there). */
        agent_free(m.agent);
        us_loop_free(loop);
        if (pid1)
                fatal("event loop ended", NULL);
        return code;
}
