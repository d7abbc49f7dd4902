/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd-shim-unishim-v2: containerd's runtime v2 shim contract.
 *
 *   containerd-shim-unishim-v2 -namespace NS -address ADDR -publish-binary BIN \
 *           -id ID [-debug] start      -> prints the address of the pod's shim
 *   ... -id ID -bundle DIR delete      -> cleans up after a dead shim
 *   ... -v                             -> version
 *
 * `start` forks the serving shim itself (no re-exec): the child keeps the
 * listening socket and serves the Task API until its last task is gone; its
 * command line no longer says `start`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "backend.h"
#include "events.h"
#include "base/log.h"
#include "manager.h"
#include "shim.h"
#include "task.h"
#include "version.h"

static int usage(const char *argv0)
{
        fprintf(stderr,
                "usage: %s -namespace NS -address ADDR [-publish-binary BIN] -id ID [-bundle DIR] "
                "[-debug] start|delete\n       %s -v\n",
                argv0, argv0);
        return 2;
}

static int parse_args(int argc, char **argv, struct shim_args *a, const char **action,
                      bool *version)
{
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i];
                /* Go's flag package accepts -flag and --flag, and -flag=value. */
                if (arg[0] == '-' && arg[1] == '-')
                        arg++;
                if (arg[0] != '-') {
                        if (*action)
                                return -EINVAL;
                        *action = arg;
                        continue;
                }
                arg++;
                if (strcmp(arg, "debug") == 0) {
                        a->debug = true;
                        continue;
                }
                if (strcmp(arg, "v") == 0 || strcmp(arg, "version") == 0) {
                        *version = true;
                        continue;
                }
                const char *value = strchr(arg, '=');
                size_t name_len = value ? (size_t)(value - arg) : strlen(arg);
                if (value)
                        value++;
                else if (i + 1 < argc)
                        value = argv[++i];
                else
                        return -EINVAL;
                static const struct {
                        const char *name;
                        size_t offset;
                } flags[] = {
                        {"namespace", offsetof(struct shim_args, namespace)},
                        {"address", offsetof(struct shim_args, address)},
                        {"publish-binary", offsetof(struct shim_args, publish_binary)},
                        {"id", offsetof(struct shim_args, id)},
                        {"bundle", offsetof(struct shim_args, bundle)},
                        {"socket", SIZE_MAX},
                };
                bool known = false;
                for (size_t j = 0; j < US_ELEMENTSOF(flags); j++) {
                        if (strlen(flags[j].name) == name_len &&
                            strncmp(flags[j].name, arg, name_len) == 0) {
                                if (flags[j].offset != SIZE_MAX)
                                        *(const char **)((char *)a + flags[j].offset) = value;
                                known = true;
                        }
                }
                if (!known)
                        return -EINVAL;
        }
        return 0;
}

static void on_signal(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct shim *shim = userdata;
        struct signalfd_siginfo si;
        bool reap = false;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGCHLD)
                        reap = true;
                else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                        us_log_info("signal %u received; serving until the last task is gone",
                                    si.ssi_signo);
        }
        if (reap)
                shim_reap(shim);
}

/* The serving shim's stderr goes to the "log" FIFO containerd opened in the
 * first task's bundle; containerd copies it into its own log. */
static void open_log(void)
{
        int fd = open("log", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return;
        (void)dup2(fd, STDERR_FILENO);
        us_close(fd);
}

struct flush {
        struct us_loop *loop;
        struct us_loop_source *timer;
};

static void events_drained(void *userdata)
{
        struct flush *f = userdata;
        us_loop_quit(f->loop, 0);
}

static void flush_timeout(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct flush *f = userdata;
        f->timer = NULL; /* a fired timer is gone */
        us_loop_quit(f->loop, 0);
}

/* The last events (a task's delete) go out before we do; a containerd that
 * does not take them within FLUSH_MS loses them, as it would have lost the
 * shim. */
#define FLUSH_MS 10000

static void flush_events(struct shim *shim)
{
        if (shim_events_queued(shim->events) == 0)
                return;
        struct flush f = {.loop = shim->loop};
        if (us_loop_add_timer(shim->loop, FLUSH_MS, flush_timeout, &f, &f.timer, NULL) < 0)
                return;
        shim_events_on_drained(shim->events, events_drained, &f);
        (void)us_loop_run(shim->loop);
        shim_events_on_drained(shim->events, NULL, NULL);
        us_loop_source_remove(f.timer);
        size_t n = shim_events_queued(shim->events);
        if (n > 0)
                us_log_warn("exiting with %zu events containerd did not take", n);
}

static int serve(const struct shim_args *args, int listen_fd, char *socket_path)
{
        struct shim shim = {.args = args, .signal_fd = -1, .socket_path = socket_path};
        struct us_error *err = NULL;
        int r;

        open_log();
        /* Container processes are reparented to us: we reap and report them. */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
                r = us_errorf(&err, errno, "become subreaper");
                goto out;
        }
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        shim.signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (shim.signal_fd < 0) {
                r = us_errorf(&err, errno, "signalfd");
                goto out;
        }
        /* Stay out of the bundle: it is removed while we run. */
        if (chdir("/") < 0) {
                r = us_errorf(&err, errno, "chdir /");
                goto out;
        }

        r = us_loop_new(&shim.loop, &err);
        if (r < 0)
                goto out;
        r = us_loop_add_fd(shim.loop, shim.signal_fd, EPOLLIN, on_signal, &shim, &shim.signal_src,
                           &err);
        if (r < 0)
                goto out;
        r = shim_events_new(shim.loop, args->ttrpc_address, args->namespace, 0, &shim.events, &err);
        if (r < 0)
                goto out;
        r = us_ttrpc_server_new(shim.loop, listen_fd, &shim.server, &err);
        listen_fd = -1;
        if (r < 0)
                goto out;
        r = shim_service_register(&shim, &err);
        if (r < 0)
                goto out;

        us_log_debug("serving %s for %s", socket_path, args->id);
        r = us_loop_run(shim.loop);
        if (r >= 0)
                flush_events(&shim);
out:
        if (r < 0)
                us_log_error("shim %s: %s", args->id ? args->id : "", us_error_text(err));
        us_error_free(err);
        while (shim.tasks) {
                struct shim_task *t = shim.tasks;
                shim.tasks = t->next;
                shim_task_free(t);
        }
        if (shim.backend && shim.backend->pod_free && shim.backend_pod)
                shim.backend->pod_free(shim.backend_pod);
        shim.server = us_ttrpc_server_free(shim.server);
        us_close(listen_fd);
        if (socket_path)
                (void)unlink(socket_path);
        free(socket_path);
        us_loop_source_remove(shim.idle_timer);
        us_loop_source_remove(shim.signal_src);
        us_close(shim.signal_fd);
        shim_events_free(shim.events);
        policy_config_free(shim.config);
        us_loop_free(shim.loop);
        return r < 0 ? 1 : 0;
}

/* The serving shim is the `start` call's forked child: without this, ps
 * would show it as a `start` that never ends. The argument's bytes are
 * zeroed in place (what /proc/PID/cmdline reads); moving the argument area
 * with PR_SET_MM needs CAP_SYS_RESOURCE, which the shim need not have. */
static void hide_action(int argc, char **argv, const char *action)
{
        for (int i = 1; i < argc; i++)
                if (argv[i] == action)
                        memset(argv[i], 0, strlen(argv[i]));
}

int main(int argc, char **argv)
{
        struct shim_args args = {0};
        const char *action = NULL;
        bool version = false;
        if (parse_args(argc, argv, &args, &action, &version) < 0)
                return usage(argv[0]);
        if (version) {
                printf("%s:\n  Version: %s\n", argv[0], shim_version);
                return 0;
        }
        args.ttrpc_address = getenv("TTRPC_ADDRESS");
        if (args.debug)
                us_log_set_level(US_LOG_DEBUG);
        if (!action || !args.id || !args.namespace)
                return usage(argv[0]);

        struct us_error *err = NULL;
        if (strcmp(action, "start") == 0) {
                if (!args.address)
                        return usage(argv[0]);
                int listen_fd = -1;
                char *socket_path = NULL;
                int r = shim_manager_start(&args, &listen_fd, &socket_path, &err);
                if (r < 0) {
                        fprintf(stderr, "%s\n", us_error_text(err));
                        us_error_free(err);
                        return 1;
                }
                if (r == 0)
                        return 0;
                hide_action(argc, argv, action);
                return serve(&args, listen_fd, socket_path);
        }
        if (strcmp(action, "delete") == 0) {
                if (shim_manager_delete(&args, &err) < 0) {
                        fprintf(stderr, "%s\n", us_error_text(err));
                        us_error_free(err);
                        return 1;
                }
                return 0;
        }
        return usage(argv[0]);
}
