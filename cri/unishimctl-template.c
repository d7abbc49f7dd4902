/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unishimctl template build|list|gc|rm: the node's VM template cache
 * (vmm/template-cache.h, docs/unishimctl.md). Talks to no CRI endpoint:
 * it reads the operator's config and works on the cache directory as root.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent-contract.h"
#include "agent/agent.pb-c.h"
#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/loop.h"
#include "cgroup/cgroup.h"
#include "policy/policy.h"
#include "shim/sandbox/image.h"
#include "shim/sandbox/template.h"
#include "ttrpc/ttrpc.h"
#include "unishimctl-template.h"
#include "vmm/template-cache.h"

#define BUILD_TIMEOUT_MS (300 * 1000) /* a cold boot under TCG on a busy host */
#define CHECK_TRY_MS     2000
#define DRAIN_MS         100

static int fail_err(const char *what, struct us_error *err, int r)
{
        fprintf(stderr, "unishimctl: template %s: %s\n", what,
                err ? us_error_text(err) : strerror(-r));
        us_error_free(err);
        return 1;
}

static void quit_loop(struct us_loop_source *src, void *userdata)
{
        (void)src;
        us_loop_quit(userdata, 0);
}

/* The builder's connections to the template's agent, one per port, made
 * right after QEMU started (before the guest's driver has the ports, as
 * the shim connects a cold pod's) and held until the build returned (QEMU
 * is gone by then), so the template's guest never sees a host come or go.
 * A template saved while its agent was reacting to a port without a host
 * wakes in every clone in that state, with the shim's Restore already
 * delivered to that port: an agent that closed the port then (older
 * guest images) dropped Restore with the port's buffers, and the clones
 * hung (docs/vmm.md, "Why clones hung"). */
struct held_ports {
        struct us_ttrpc_client *port[2];
        bool answered[2];
};

static void held_ports_free(struct held_ports *h)
{
        for (size_t i = 0; i < US_ELEMENTSOF(h->port); i++)
                h->port[i] = us_ttrpc_client_free(h->port[i]);
}

static int port_connect(struct vmm_vm *vm, enum vmm_agent_port port, struct us_ttrpc_client **ret,
                        struct us_error **err)
{
        int fd = -1;
        int r = vmm_vm_port_connect(vm, port, &fd, err);
        if (r >= 0)
                r = us_ttrpc_client_from_fd(fd, ret, err);
        return r;
}

/* One Check on a held connection, answered within ms. A try that times
 * out leaves the connection as it is: a late answer is skipped by the
 * next try's wait. */
static int port_check(struct us_ttrpc_client *c, int ms, struct us_error **err)
{
        uint8_t *out = NULL;
        size_t len = 0;
        Unishim__Agent__V1__CheckRequest req = UNISHIM__AGENT__V1__CHECK_REQUEST__INIT;
        int r = us_ttrpc_client_call(c, AGENT_SERVICE, "Check", &req.base, NULL, 0, ms, &out, &len,
                                     err);
        free(out);
        return r;
}

/* The build's readiness: the agent answers Check on both of its ports
 * (a clone's first call, Restore, takes the events port), over the held
 * connections. A Check is sent again on its connection every CHECK_TRY_MS
 * until the deadline (an older agent could drop one that reached a port it
 * had just opened, before its driver told it of the host). Any other
 * failure (QEMU gone, the connection broken) ends the build. */
static int agent_check(struct vmm_vm *vm, struct us_loop *loop, int timeout_ms, void *userdata,
                       struct us_error **err)
{
        struct held_ports *held = userdata;
        int64_t deadline = us_monotonic_ms() + timeout_ms;

        for (size_t i = 0; i < US_ELEMENTSOF(held->port); i++) {
                int r = held->port[i]
                                ? 0
                                : port_connect(vm, (enum vmm_agent_port)i, &held->port[i], err);
                if (r < 0)
                        return us_error_wrap(err, r, "connect to the agent's ports");
        }
        for (;;) {
                bool all = true;
                for (size_t i = 0; i < US_ELEMENTSOF(held->port); i++) {
                        if (held->answered[i])
                                continue;
                        int64_t left = deadline - us_monotonic_ms();
                        if (left <= 0)
                                return us_error_msg(err, ETIMEDOUT,
                                                    "no answer to Check within %d s",
                                                    timeout_ms / 1000);
                        /* QEMU is this process's child: reaped here,
                         * as the save's wait reaps it. */
                        if (!vmm_vm_reap_qemu(vm))
                                return us_error_msg(err, ESRCH,
                                                    "QEMU ended before the agent answered");
                        int r = port_check(held->port[i],
                                           left < CHECK_TRY_MS ? (int)left : CHECK_TRY_MS, err);
                        if (r >= 0)
                                held->answered[i] = true;
                        else if (r != -ETIMEDOUT)
                                return us_error_wrap(err, r, "the %s port",
                                                     i == VMM_PORT_AGENT ? "agent" : "events");
                        else if (err)
                                *err = us_error_free(*err);
                        all = all && held->answered[i];
                }
                if (all)
                        return 0;
                /* The VM's logs drain between tries: longer than a log
                 * pipe's pause between two reads (vmm/logpipe.c). */
                if (us_loop_add_timer(loop, DRAIN_MS, quit_loop, loop, NULL, NULL) >= 0)
                        (void)us_loop_run(loop);
        }
}

/* Prints one removal of vmm_template_gc or vmm_template_remove, after
 * `prefix`. */
static void print_removed(const char *name, const char *why, void *userdata)
{
        printf("%s%s %s\n", (const char *)userdata, name, why);
}

/* A build's QEMU state directory: STATE_DIR_PREFIX<the build's pid>-XXXXXX
 * in STATE_DIR_PARENT, removed by the build however it ends, except by
 * SIGKILL: collect() removes those of builds that no longer run. */
#define STATE_DIR_PARENT "/tmp"
#define STATE_DIR_PREFIX "unishim-template-"

/* The build's pid in a state directory's name, or 0 when the name is no
 * build's. */
static pid_t state_dir_pid(const char *name)
{
        if (strncmp(name, STATE_DIR_PREFIX, strlen(STATE_DIR_PREFIX)) != 0)
                return 0;
        const char *digits = name + strlen(STATE_DIR_PREFIX);
        char *end = NULL;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (errno || end == digits || *end != '-' || pid <= 0 || pid > INT32_MAX)
                return 0;
        return (pid_t)pid;
}

/* Removes the state directories of killed builds: directories of our uid
 * with mkdtemp's mode, named for a pid that no longer runs (a pid reused
 * since keeps its directory: harmless). Each removal printed after
 * `prefix`. */
static void sweep_state_dirs(const char *prefix)
{
        DIR *d = opendir(STATE_DIR_PARENT);
        struct dirent *de;
        if (!d)
                return;
        while ((de = readdir(d))) {
                pid_t pid = state_dir_pid(de->d_name);
                struct stat st;
                if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH)
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != 0700)
                        continue;
                if (us_rm_tree_at(dirfd(d), de->d_name, NULL) == 0)
                        printf("%s" STATE_DIR_PARENT "/%s the state directory of a killed build "
                               "(pid %d)\n",
                               prefix, de->d_name, (int)pid);
        }
        closedir(d);
}

/* Collects what can never be used again (vmm_template_gc) with this host's
 * identity, and killed builds' state directories; each removal printed
 * after `prefix`. Returns 0, or the negative errno with err. */
static int collect(struct vmm_template_cache *c, const char *prefix, struct us_error **err)
{
        sweep_state_dirs(prefix);
        _cleanup_free_ char *host = NULL;
        int r = vmm_template_host_id_read(&host, err);
        if (r < 0)
                return r;
        r = vmm_template_gc(c, host, print_removed, (void *)prefix, err);
        fflush(stdout);
        return r;
}

/* An eviction, on stderr too: a shim's background build keeps only its
 * stderr (the pod's template-build.log), which the shim logs. */
static void print_evicted(const char *name, const char *why, void *userdata)
{
        (void)userdata;
        printf("evicted %s %s\n", name, why);
        fprintf(stderr, "unishimctl: template build: evicted %s (%s)\n", name, why);
}

/* With --max: whether the cache holds max templates or more, the key of
 * `in` not among them, once what can never be used again is collected (a
 * guest image's upgrade leaves stale keys, which must not keep the new
 * one out) and the template used least recently is evicted if it was
 * unused for SANDBOX_TEMPLATE_EVICT_IDLE_S (a node whose pods moved to
 * other sizes gets templates of those). A soft cap: two builds at once may
 * both pass it. */
static bool cache_full(struct vmm_template_cache *c, const struct vmm_template_inputs *in,
                       unsigned max)
{
        struct us_error *err = NULL;
        _cleanup_free_ char *manifest = NULL;
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        if (collect(c, "removed ", &err) < 0) {
                fprintf(stderr, "unishimctl: template build: gc: %s\n", us_error_text(err));
                err = us_error_free(err);
        }
        if (vmm_template_manifest(in, &manifest, NULL) < 0)
                return false;
        vmm_template_key(manifest, key);
        if (vmm_template_evict(c, key, max, SANDBOX_TEMPLATE_EVICT_IDLE_S, print_evicted, NULL,
                               &err) < 0) {
                fprintf(stderr, "unishimctl: template build: evict: %s\n", us_error_text(err));
                err = us_error_free(err);
        }
        fflush(stdout);
        if (vmm_template_cache_keys(c, false, &keys, &n, NULL) < 0 || n < max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(keys[i], key) == 0)
                        return false;
        fprintf(stderr,
                "unishimctl: template build: the cache holds %zu templates (--max %u), none "
                "unused for %d s: %s not built\n",
                n, max, SANDBOX_TEMPLATE_EVICT_IDLE_S, key);
        return true;
}

/* The build itself, in the child build() forks; its exit status. */
static int build_in(struct vmm_template_cache *c, const struct policy_config *cfg,
                    const struct policy_vm_size *size, unsigned max, const char *state_dir)
{
        struct vmm_template_inputs in = {0};
        struct vmm_template_build_result res;
        struct us_error *err = NULL;
        bool ninep = false;
        int r = sandbox_template_inputs(&cfg->sandbox, size, &in, &err);
        /* A template's layout serves the share over 9p: the config's pods
         * would never use one built for a kernel without it. */
        if (r >= 0)
                r = sandbox_image_shared_fs(cfg->sandbox.shared_fs, in.kernel, &ninep, &err);
        if (r >= 0 && !ninep)
                r = us_error_msg(&err, ENOTSUP,
                                 "the config's pods get their files over virtio-fs (guest "
                                 "kernel %s, sandbox.shared_fs %s), and VM templates need 9p",
                                 in.kernel,
                                 cfg->sandbox.shared_fs == POLICY_SHARED_FS_AUTO
                                         ? "unset: the kernel has no 9p"
                                         : "\"virtio-fs\"");
        if (r < 0) {
                sandbox_template_inputs_free(&in);
                return fail_err("build", err, r);
        }
        if (max > 0 && cache_full(c, &in, max)) {
                sandbox_template_inputs_free(&in);
                return SANDBOX_TEMPLATE_BUILD_FULL;
        }
        struct held_ports held = {{NULL}};
        r = vmm_template_build(c, &in, state_dir, agent_check, &held, BUILD_TIMEOUT_MS, &res, &err);
        held_ports_free(&held);
        if (r == VMM_TEMPLATE_BUSY) {
                fprintf(stderr, "unishimctl: template build: busy: %s\n", us_error_text(err));
                us_error_free(err);
                sandbox_template_inputs_free(&in);
                return SANDBOX_TEMPLATE_BUILD_BUSY;
        }
        if (r < 0) {
                sandbox_template_inputs_free(&in);
                return fail_err("build", err, r);
        }
        printf("key %s\nholder %d\nboot_s %.3f\nsave_s %.3f\nbuild_s %.3f\nstate_bytes %ju\n"
               "kernel %s\ninitrd %s\nmemory_mib %u\nvcpus %u\naccel %s\n",
               res.key, (int)res.holder_pid, res.boot_s, res.save_s, res.total_s,
               (uintmax_t)res.state_bytes, in.kernel, in.initrd,
               in.memory_mib ? in.memory_mib : 256, in.vcpus ? in.vcpus : 1,
               vmm_accel_name(in.accel));
        sandbox_template_inputs_free(&in);
        /* After the publish: a build follows an upgrade of the guest image
         * or QEMU (the shim starts one for the first pod that misses), so
         * this is where the templates of the old files go. A failure here
         * leaves the new template as good as built. */
        fflush(stdout);
        r = collect(c, "removed ", &err);
        if (r < 0)
                fprintf(stderr, "unishimctl: template build: built, but gc: %s\n",
                        us_error_text(err));
        us_error_free(err);
        return 0;
}

/* Builds in a child, so that SIGTERM (a sandbox pod's shim abandoning the
 * build it started, or the operator) ends it cleanly: the child is
 * killed (its QEMU dies with it, its lock goes with it, nothing is
 * published) and QEMU's state directory removed here; the next build of
 * the key removes the entry it left unpublished. The signals are blocked
 * from before the fork and read from a signalfd polled beside the child's
 * pidfd: one that comes at any moment stays pending until that poll sees
 * it (a handler's flag, checked before a blocking waitpid, misses one that
 * comes between the check and the wait, and the build then publishes for a
 * pod that is gone). */
static int build(struct vmm_template_cache *c, const struct policy_config *cfg,
                 const struct policy_vm_size *size, unsigned max)
{
        char state_dir[sizeof(STATE_DIR_PARENT "/" STATE_DIR_PREFIX) + 32];
        sigset_t stop, old;
        int status = 1, stop_signal = 0, ws = 0;

        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &stop, &old) < 0) {
                fprintf(stderr, "unishimctl: template build: block signals: %s\n", strerror(errno));
                return 1;
        }
        _cleanup_close_ int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
        if (sfd < 0) {
                fprintf(stderr, "unishimctl: template build: signalfd: %s\n", strerror(errno));
                return 1;
        }
        snprintf(state_dir, sizeof(state_dir), STATE_DIR_PARENT "/" STATE_DIR_PREFIX "%d-XXXXXX",
                 (int)getpid());
        if (!mkdtemp(state_dir)) {
                fprintf(stderr, "unishimctl: template build: create %s: %s\n", state_dir,
                        strerror(errno));
                return 1;
        }
        fflush(NULL);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
                /* Killed with its parent, also one that died before the
                 * prctl (then the parent is another already). */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(1);
                close(sfd);
                /* A signal sent to the child itself (a terminal's process
                 * group) acts now, with the default action. */
                (void)sigprocmask(SIG_SETMASK, &old, NULL);
                status = build_in(c, cfg, size, max, state_dir);
                fflush(NULL);
                _exit(status);
        }
        if (pid < 0) {
                fprintf(stderr, "unishimctl: template build: fork: %s\n", strerror(errno));
        } else {
                /* The child is ours and unreaped: its pid cannot be reused
                 * before the waitpid below. */
                _cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
                if (pidfd < 0) {
                        fprintf(stderr, "unishimctl: template build: pidfd_open: %s\n",
                                strerror(errno));
                        (void)kill(pid, SIGKILL);
                }
                while (pidfd >= 0) {
                        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
                                              {.fd = pidfd, .events = POLLIN}};
                        int n = poll(p, 2, -1);
                        if (n < 0 && errno != EINTR)
                                break;
                        struct signalfd_siginfo si;
                        if (n > 0 && (p[0].revents & POLLIN) &&
                            read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                                stop_signal = (int)si.ssi_signo;
                                (void)kill(pid, SIGKILL);
                                break;
                        }
                        if (n > 0 && (p[1].revents & POLLIN))
                                break;
                }
                while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                        ;
                if (stop_signal) {
                        fprintf(stderr, "unishimctl: template build: stopped by signal %d\n",
                                stop_signal);
                        status = 128 + stop_signal;
                } else if (WIFEXITED(ws)) {
                        status = WEXITSTATUS(ws);
                }
        }
        /* QEMU's logs and sockets: what went wrong is in the child's
         * message. */
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (tmp >= 0)
                (void)us_rm_tree_at(tmp, state_dir + strlen("/tmp/"), NULL);
        return status;
}

/* "-" for a field the manifest does not have. */
static void print_field(const char *manifest, const char *name)
{
        _cleanup_free_ char *v = NULL;
        if (!manifest || vmm_template_manifest_field(manifest, name, &v) < 0 || !*v)
                printf(" %s=-", name);
        else
                printf(" %s=%s", name, v);
}

static bool strv_has(char **v, const char *s)
{
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

/* Entries, and keys whose builds failed lately (no entry: state=failed),
 * each with its failed-build record on a line of its own. */
static int list(struct vmm_template_cache *c)
{
        _cleanup_strv_ char **keys = NULL, **entries = NULL;
        size_t n = 0, n_entries = 0;
        struct us_error *err = NULL;
        int r = vmm_template_cache_keys(c, true, &keys, &n, &err);
        if (r >= 0)
                r = vmm_template_cache_keys(c, false, &entries, &n_entries, &err);
        if (r < 0)
                return fail_err("list", err, r);
        int64_t now = (int64_t)time(NULL);
        for (size_t i = 0; i < n; i++) {
                struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
                struct vmm_template_failure f;
                _cleanup_free_ char *manifest = NULL;
                bool entry = strv_has(entries, keys[i]);
                bool failed = vmm_template_failure_read(c, keys[i], &f, NULL) == 0;
                if (!entry && !failed)
                        continue; /* leftovers only: not a template */
                r = entry ? vmm_template_check_key(c, keys[i], &e, &err) : 0;
                printf("%s", keys[i]);
                if (!entry)
                        printf(" state=failed holder=-");
                else if (r == 0)
                        printf(" state=ready holder=%d", (int)e.holder_pid);
                else
                        printf(" state=%s holder=-", r == VMM_TEMPLATE_BUSY     ? "busy"
                                                     : r == VMM_TEMPLATE_BROKEN ? "broken"
                                                     : r == -ETIMEDOUT          ? "holder-silent"
                                                                                : "error");
                if (entry)
                        (void)vmm_template_read_manifest(c, keys[i], &manifest, NULL);
                print_field(manifest, "kernel");
                print_field(manifest, "initrd");
                print_field(manifest, "memory_mib");
                print_field(manifest, "vcpus");
                print_field(manifest, "accel");
                printf("\n");
                if (r < 0)
                        printf("  %s\n", us_error_text(err));
                if (failed)
                        printf("  %u failed build(s) in a row, the last %lld s ago; a shim builds "
                               "it again in %lld s: %s\n",
                               f.failures, (long long)(now - f.time),
                               vmm_template_backoff_held(&f, now) ? (long long)(f.retry_after - now)
                                                                  : 0LL,
                               f.why);
                err = us_error_free(err);
                vmm_template_entry_clear(&e);
        }
        return 0;
}

static int rm(struct vmm_template_cache *c, const char *key)
{
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        struct us_error *err = NULL;
        int status = 0, r;

        /* Each removal on a line of its own, as gc prints them: a key with
         * no entry (its failed-build record only, leftovers only) is
         * removed all the same, and says what went. */
        if (key) {
                r = vmm_template_remove(c, key, print_removed, "", &err);
                fflush(stdout);
                return r < 0 ? fail_err("rm", err, r) : 0;
        }
        r = vmm_template_cache_keys(c, true, &keys, &n, &err);
        if (r < 0)
                return fail_err("rm", err, r);
        for (size_t i = 0; i < n; i++) {
                r = vmm_template_remove(c, keys[i], print_removed, "", &err);
                /* Nothing left to remove (it went meanwhile, or its only
                 * leftover is a record a live process is writing). */
                if (r < 0 && r != VMM_TEMPLATE_NONE)
                        status = fail_err("rm", err, r);
                else
                        err = us_error_free(err);
        }
        fflush(stdout);
        return status;
}

static int gc(struct vmm_template_cache *c)
{
        struct us_error *err = NULL;
        int r = collect(c, "", &err);
        return r < 0 ? fail_err("gc", err, r) : 0;
}

/* A size option's value: a decimal in min..max (the config's bounds). */
static int parse_size(const char *opt, const char *text, unsigned min, unsigned max, unsigned *ret)
{
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(text, &end, 10);
        if (errno || !end || *end || end == text || text[0] == '-' || v < min || v > max) {
                fprintf(stderr, "unishimctl: template build: %s \"%s\" is not within %u..%u\n", opt,
                        text, min, max);
                return -1;
        }
        *ret = (unsigned)v;
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: unishimctl template [--config FILE] build [--vcpus N] [--memory-mib M] "
                   "[--max N]\n"
                   "       unishimctl template [--config FILE] list|gc|rm KEY|rm --all\n");
}

int unishimctl_template(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'},
                {"all", no_argument, NULL, 'a'},
                {"vcpus", required_argument, NULL, 'v'},
                {"memory-mib", required_argument, NULL, 'm'},
                {"max", required_argument, NULL, 'x'},
                {NULL, 0, NULL, 0},
        };
        const char *config = NULL, *vcpus = NULL, *mib = NULL, *max_text = NULL;
        bool all = false;
        int o;

        /* 0: getopt starts afresh (main's getopt stopped at "template"),
         * and permutes: options may come before or after the subcommand
         * (template rm --all). */
        optind = 0;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (o == 'c')
                        config = optarg;
                else if (o == 'a')
                        all = true;
                else if (o == 'v')
                        vcpus = optarg;
                else if (o == 'm')
                        mib = optarg;
                else if (o == 'x')
                        max_text = optarg;
                else {
                        usage(stderr);
                        return 2;
                }
        }
        const char *sub = optind < argc ? argv[optind++] : NULL;
        const char *arg = optind < argc ? argv[optind++] : NULL;
        if (!sub || optind < argc || (strcmp(sub, "rm") == 0 ? !arg == !all : arg || all) ||
            (strcmp(sub, "build") && strcmp(sub, "list") && strcmp(sub, "gc") &&
             strcmp(sub, "rm")) ||
            ((vcpus || mib || max_text) && strcmp(sub, "build") != 0)) {
                usage(stderr);
                return 2;
        }

        struct policy_config *cfg = NULL;
        struct us_error *err = NULL;
        int r = policy_config_load(config, &cfg, &err);
        if (r < 0)
                return fail_err(sub, err, r);
        /* A template of another size than the config's default: what a
         * pod with limits boots with (the shim passes its VM's). */
        struct policy_vm_size size = {0};
        unsigned max = 0; /* the shim's cap (sandbox.template_max); by hand: none */
        if ((vcpus && parse_size("--vcpus", vcpus, 1, cfg->sandbox.max_vcpus, &size.vcpus) < 0) ||
            (mib && parse_size("--memory-mib", mib, POLICY_VM_MIN_MEMORY_MIB,
                               cfg->sandbox.max_memory_mib, &size.memory_mib) < 0) ||
            (max_text && parse_size("--max", max_text, 1, POLICY_TEMPLATE_MAX_LIMIT, &max) < 0)) {
                policy_config_free(cfg);
                return 2;
        }
        const char *dir =
                cfg->sandbox.template_dir ? cfg->sandbox.template_dir : POLICY_TEMPLATE_DIR_DEFAULT;
        struct vmm_template_cache *c = NULL;
        /* A build's QEMU and holder in the node's template cgroup, not in
         * the caller's (a login session's ends with it). */
        _cleanup_(us_cgroup_free_cleanupp) struct us_cgroup *cg = NULL;
        if (strcmp(sub, "build") == 0 &&
            (r = us_cgroup_create(NULL, SANDBOX_TEMPLATE_CGROUP, &cg, &err)) < 0) {
                policy_config_free(cfg);
                return fail_err(sub, err, r);
        }
        r = vmm_template_cache_open(dir, strcmp(sub, "build") == 0, cg, &c, &err);
        if (r == -ENOENT && strcmp(sub, "build") != 0) {
                /* No cache: nothing to list or remove. */
                us_error_free(err);
                policy_config_free(cfg);
                if (arg) {
                        fprintf(stderr, "unishimctl: template rm: no template %s (no cache %s)\n",
                                arg, dir);
                        return 1;
                }
                return 0;
        }
        int status;
        if (r < 0)
                status = fail_err(sub, err, r);
        else if (strcmp(sub, "build") == 0)
                status = build(c, cfg, &size, max);
        else if (strcmp(sub, "list") == 0)
                status = list(c);
        else if (strcmp(sub, "gc") == 0)
                status = gc(c);
        else
                status = rm(c, arg);
        vmm_template_cache_free(c);
        policy_config_free(cfg);
        return status;
}
