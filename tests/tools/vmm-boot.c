/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm-boot: drives vmm_vm_start() and friends against a real kernel/initrd,
 * for tests/integration/test-vmm-boot.sh and the measurements in docs/vmm.md.
 *
 *   vmm-boot --kernel K [--initrd I] --state-dir D [--accel auto|kvm|tcg]
 *            [--tb-size MIB] [--memory MIB] [--share virtiofs|9p:TAG:DIR]
 *            [--append ARGS] [--expect-console TEXT] [--expect-agent TEXT]
 *            [--timeout SEC] [--hold SEC] [--wait-exit] [--console-max BYTES]
 *            [--id ID] [--stall SEC] [--private-root]
 *            [--template-save DIR | --template-clone DIR | --template-cache DIR]
 *            [--ready-cmd CMD] [--wait-file F] [--ports-first]
 *
 * Default flow: start, connect the agent socket, wait for console output
 * (or TEXT), pause + resume over QMP (checking query-status), quit, and check
 * that no process and no socket is left. --wait-exit instead waits for the
 * guest to end QEMU (benchmarks that reboot -f). Prints "key=value" timings.
 *
 * Like the shim, it runs an event loop (between its steps) that drains the
 * VM's console into the capped console.log + console.log.1; at the end it
 * prints their sizes and fails if they exceed the cap (--console-max, 0 for
 * the VMM's default). --id names the VM (QEMU's -name unishim-ID).
 * --stall SEC: before the pause, no draining (as while the shim sits in a
 * synchronous call) until one of the log pipes is full and 1 s more, at most
 * SEC seconds; then a timed QMP query-status: a guest that fills the console
 * pipe must not block QEMU. --private-root: QEMU in its jail (vmm/jail.h;
 * needs root), a 9p share then bound at its fixed name there.
 *
 * The scripted flow (any of the options below; no default flow then):
 * start, for a clone restore, run CMD (sh -c, with AGENT_SOCK set to the
 * agent socket: it checks the agent, which the flow then no longer holds)
 * and wait for it to succeed, for a template save, then wait for F to exist
 * (a test measures the VM meanwhile), quit. --template-save DIR: a
 * template (vmm_vm_template_save) with its RAM in DIR/memory and its state
 * in DIR/state. --template-clone DIR: a clone of DIR/memory, restored from
 * DIR/state (vmm_vm_template_restore). Prints restore_s, agent_ready_s,
 * save_s, state_bytes and pss_kib (QEMU's, once the agent is ready).
 * --template-cache DIR: a clone from the cache (vmm/template-cache.h) as
 * the sandbox backend makes one: the template of these flags' inputs
 * looked up (key=, memory_ino=: the holder's memfd; lookup=none|busy|
 * broken|timeout|error and exit 3 if there is none to use), a tap in a
 * throwaway network namespace, an empty <state-dir>/share at the 9p
 * device's path, the layout of vmm_template_vm_config. --ports-first: a
 * clone's two agent ports connected before the restore, as the shim does,
 * and held until the end; CMD gets the events port's connection as the fd
 * AGENT_EVENTS_FD (unishim-agent-ctl fd:N).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent-contract.h"
#include "base/cleanup.h"
#include "base/loop.h"
#include "vmm/qemu.h"
#include "vmm/qmp.h"
#include "vmm/template-cache.h"
#include "vmm/template.h"

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static void quit_loop(struct us_loop_source *src, void *userdata)
{
        (void)src;
        us_loop_quit(userdata, 0);
}

/* Runs the loop (the console's drain) for ms milliseconds. */
static void pump_ms(struct us_loop *loop, int ms)
{
        if (us_loop_add_timer(loop, (uint64_t)ms, quit_loop, loop, NULL, NULL) < 0) {
                sleep_ms(ms);
                return;
        }
        (void)us_loop_run(loop);
}

/* The fullest pipe among our own fds (the read ends of the VM's log pipes:
 * the console's, when the guest floods it): bytes queued and capacity. */
static void fullest_pipe(size_t *ret_pending, size_t *ret_size)
{
        *ret_pending = *ret_size = 0;
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        if (!d)
                return;
        while ((de = readdir(d))) {
                char link[64] = "", path[300];
                int fd = atoi(de->d_name), pending = 0;
                snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
                if (de->d_name[0] == '.' || readlink(path, link, sizeof(link) - 1) < 0 ||
                    strncmp(link, "pipe:", 5) != 0 || ioctl(fd, FIONREAD, &pending) < 0)
                        continue;
                if ((size_t)pending >= *ret_pending) {
                        int size = fcntl(fd, F_GETPIPE_SZ);
                        *ret_pending = (size_t)pending;
                        *ret_size = size > 0 ? (size_t)size : 0;
                }
        }
        closedir(d);
}

/* Reap like the shim does: waitpid(-1) and report every pid. */
static void reap(struct vmm_vm *vm)
{
        int st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0)
                (void)vmm_vm_child_exited(vm, p, st);
}

/* The console so far (console.log.1 + console.log, what the cap kept):
 * non-empty, and containing text if given. */
static bool console_contains(struct vmm_vm *vm, size_t cap, const char *text)
{
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return false;
        size_t n = vmm_vm_console_tail(vm, buf, cap + 1);
        if (n == 0)
                return false;
        if (!text)
                return true;
        for (size_t i = 0; i < n; i++)
                if (buf[i] == '\0')
                        buf[i] = ' ';
        return strstr(buf, text) != NULL;
}

static off_t file_size(const char *dir, const char *name)
{
        char p[4200];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        return stat(p, &st) == 0 ? st.st_size : -1;
}

static int query_status(struct vmm_vm *vm, char *out, size_t len)
{
        struct vmm_qmp_msg *m = NULL;
        struct us_error *err = NULL;
        const char *path[] = {"status", NULL};
        int r = vmm_vm_qmp(vm, "query-status", NULL, &m, &err);
        if (r < 0) {
                fprintf(stderr, "query-status: %s\n", us_error_text(err));
                us_error_free(err);
                return r;
        }
        yajl_val v = yajl_tree_get(m->value, path, yajl_t_string);
        snprintf(out, len, "%s", v ? YAJL_GET_STRING(v) : "?");
        vmm_qmp_msg_free(m);
        return 0;
}

/* QEMU's "Pss:" from smaps_rollup, in KiB (-1 if unreadable). */
static long pss_kib(pid_t pid)
{
        char p[64], line[256];
        long v = -1;
        snprintf(p, sizeof(p), "/proc/%d/smaps_rollup", (int)pid);
        FILE *f = fopen(p, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Pss: %ld kB", &v) == 1)
                        break;
        fclose(f);
        return v;
}

struct migration_wait {
        struct us_loop *loop;
        bool ended;
        int r;
        char error[2048];
};

static void migration_done(struct vmm_vm *vm, int r, const struct us_error *err, void *userdata)
{
        (void)vm;
        struct migration_wait *w = userdata;
        w->ended = true;
        w->r = r;
        snprintf(w->error, sizeof(w->error), "%s", r < 0 ? us_error_text(err) : "");
}

/* Runs the loop until the save or restore ended (reaping like the shim). */
static int migration_wait(struct vmm_vm *vm, struct migration_wait *w, double deadline)
{
        while (!w->ended && now_s() < deadline) {
                pump_ms(w->loop, 10);
                reap(vm);
        }
        return w->ended ? w->r : -ETIMEDOUT;
}

/* sh -c cmd with AGENT_SOCK, run while the loop drains the VM's logs.
 * Returns its wait status, or -1. */
static int run_ready_cmd(struct vmm_vm *vm, struct us_loop *loop, const char *cmd, int events_fd,
                         double deadline)
{
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                setenv("AGENT_SOCK", vmm_vm_agent_socket(vm), 1);
                if (events_fd >= 0) {
                        char n[16];
                        int fd = dup(events_fd); /* without O_CLOEXEC */
                        snprintf(n, sizeof(n), "%d", fd);
                        setenv("AGENT_EVENTS_FD", n, 1);
                }
                execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
                _exit(127);
        }
        while (now_s() < deadline) {
                int st;
                pid_t p;
                pump_ms(loop, 10);
                while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
                        if (p == pid)
                                return st;
                        (void)vmm_vm_child_exited(vm, p, st);
                }
        }
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        return -1;
}

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, "vmm-boot: FAIL: " __VA_ARGS__);                                   \
                fputc('\n', stderr);                                                               \
                rc = 1;                                                                            \
                goto out;                                                                          \
        } while (0)

int main(int argc, char **argv)
{
        struct vmm_vm_config cfg = {.tap_fd = -1,
                                    .accel = VMM_ACCEL_AUTO,
                                    .memory_mib = 256,
                                    .serial_ports = {AGENT_PORT_CALLS, AGENT_PORT_EVENTS}};
        struct vmm_share share = {0};
        const char *expect_console = NULL, *expect_agent = NULL;
        const char *template_dir = NULL, *ready_cmd = NULL, *wait_file = NULL;
        const char *template_cache = NULL;
        _cleanup_close_ int state_fd = -1, memory_fd = -1, tap_fd = -1, userns_fd = -1;
        struct vmm_template_vm tv;
        struct vmm_template_entry entry = VMM_TEMPLATE_ENTRY_INIT;
        _cleanup_free_ char *host_id = NULL, *share_dir = NULL;
        int timeout = 60, hold = 0, stall = 0, rc = 0;
        bool wait_exit = false, ports_first = false;
        _cleanup_close_ int held_agent_fd = -1, held_events_fd = -1;
        _cleanup_free_ char *sharebuf = NULL;
        static const struct option opts[] = {
                {"kernel", required_argument, NULL, 'k'},
                {"initrd", required_argument, NULL, 'i'},
                {"state-dir", required_argument, NULL, 's'},
                {"accel", required_argument, NULL, 'a'},
                {"tb-size", required_argument, NULL, 'b'},
                {"memory", required_argument, NULL, 'm'},
                {"share", required_argument, NULL, 'f'},
                {"append", required_argument, NULL, 'A'},
                {"expect-console", required_argument, NULL, 'c'},
                {"expect-agent", required_argument, NULL, 'g'},
                {"timeout", required_argument, NULL, 't'},
                {"hold", required_argument, NULL, 'H'},
                {"wait-exit", no_argument, NULL, 'w'},
                {"console-max", required_argument, NULL, 'C'},
                {"id", required_argument, NULL, 'I'},
                {"stall", required_argument, NULL, 'S'},
                {"private-root", no_argument, NULL, 'P'},
                {"template-save", required_argument, NULL, 'T'},
                {"template-clone", required_argument, NULL, 'L'},
                {"template-cache", required_argument, NULL, 'K'},
                {"ready-cmd", required_argument, NULL, 'R'},
                {"wait-file", required_argument, NULL, 'W'},
                {"ports-first", no_argument, NULL, 'F'},
                {0},
        };
        int o;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (o) {
                case 'k':
                        cfg.kernel = optarg;
                        break;
                case 'i':
                        cfg.initrd = optarg;
                        break;
                case 's':
                        cfg.state_dir = optarg;
                        break;
                case 'a':
                        cfg.accel = strcmp(optarg, "kvm") == 0   ? VMM_ACCEL_KVM
                                    : strcmp(optarg, "tcg") == 0 ? VMM_ACCEL_TCG
                                                                 : VMM_ACCEL_AUTO;
                        break;
                case 'b':
                        cfg.tcg_tb_size_mib = (unsigned)atoi(optarg);
                        break;
                case 'm':
                        cfg.memory_mib = (unsigned)atoi(optarg);
                        break;
                case 'f': {
                        /* TYPE:TAG:DIR */
                        sharebuf = strdup(optarg);
                        char *t = sharebuf, *tag = sharebuf ? strchr(t, ':') : NULL;
                        char *dir = tag ? strchr(tag + 1, ':') : NULL;
                        if (!dir) {
                                fprintf(stderr, "--share TYPE:TAG:DIR\n");
                                return 2;
                        }
                        *tag++ = '\0';
                        *dir++ = '\0';
                        cfg.share_type = strcmp(t, "9p") == 0 ? VMM_SHARE_9P : VMM_SHARE_VIRTIOFS;
                        share.tag = tag;
                        share.host_dir = dir;
                        cfg.shares = &share;
                        cfg.n_shares = 1;
                        break;
                }
                case 'A':
                        cfg.cmdline_extra = optarg;
                        break;
                case 'P':
                        cfg.private_root = true;
                        break;
                case 'c':
                        expect_console = optarg;
                        break;
                case 'g':
                        expect_agent = optarg;
                        break;
                case 't':
                        timeout = atoi(optarg);
                        break;
                case 'H':
                        hold = atoi(optarg);
                        break;
                case 'w':
                        wait_exit = true;
                        break;
                case 'C':
                        cfg.console_log_max = (size_t)strtoull(optarg, NULL, 10);
                        break;
                case 'I':
                        cfg.id = optarg;
                        break;
                case 'S':
                        stall = atoi(optarg);
                        break;
                case 'T':
                case 'L':
                        template_dir = optarg;
                        cfg.template_role = o == 'T' ? VMM_TEMPLATE_SOURCE : VMM_TEMPLATE_CLONE;
                        break;
                case 'K':
                        template_cache = optarg;
                        break;
                case 'R':
                        ready_cmd = optarg;
                        break;
                case 'W':
                        wait_file = optarg;
                        break;
                case 'F':
                        ports_first = true;
                        break;
                default:
                        return 2;
                }
        }
        if (!cfg.kernel || !cfg.state_dir) {
                fprintf(stderr, "vmm-boot: --kernel and --state-dir are required\n");
                return 2;
        }
        if (ports_first && cfg.template_role != VMM_TEMPLATE_CLONE && !template_cache) {
                fprintf(stderr, "vmm-boot: --ports-first is for a clone (--template-clone or "
                                "--template-cache)\n");
                return 2;
        }
        if (!cfg.id)
                cfg.id = "vmm-boot";
        size_t cap = cfg.console_log_max ? cfg.console_log_max : VMM_CONSOLE_LOG_DEFAULT;
        if (cap > 256u << 20) {
                fprintf(stderr, "vmm-boot: --console-max above 256 MiB\n");
                return 2;
        }
        if (template_dir) {
                char path[4200];
                snprintf(path, sizeof(path), "%s/memory", template_dir);
                if (cfg.template_role == VMM_TEMPLATE_SOURCE) {
                        memory_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                        if (memory_fd >= 0 && ftruncate(memory_fd, (off_t)cfg.memory_mib << 20) < 0)
                                memory_fd = us_close(memory_fd);
                } else {
                        memory_fd = open(path, O_RDWR | O_CLOEXEC);
                }
                snprintf(path, sizeof(path), "%s/state", template_dir);
                if (memory_fd >= 0)
                        state_fd =
                                cfg.template_role == VMM_TEMPLATE_SOURCE
                                        ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                                        : open(path, O_RDONLY | O_CLOEXEC);
                if (memory_fd < 0 || state_fd < 0) {
                        fprintf(stderr, "vmm-boot: %s: %s\n", path, strerror(errno));
                        return 1;
                }
                cfg.memory_fd = memory_fd;
        }
        bool scripted = template_dir || template_cache || ready_cmd || wait_file;
        /* The shim is a subreaper; so are we, for the same reaping rules. */
        (void)prctl(PR_SET_CHILD_SUBREAPER, 1);

        struct vmm_vm *vm = NULL;
        struct us_error *err = NULL;
        struct us_loop *loop = NULL;
        int agent = -1;
        pid_t qpid = -1;
        if (us_loop_new(&loop, &err) < 0) {
                fprintf(stderr, "vmm-boot: %s\n", us_error_text(err));
                us_error_free(err);
                return 1;
        }
        cfg.loop = loop;
        if (template_cache) {
                /* The inputs as `unishimctl template build` derives them
                 * from the same kernel, initrd, size and accelerator. */
                struct vmm_template_inputs in = {
                        .kernel = cfg.kernel,
                        .initrd = cfg.initrd,
                        .cmdline_extra = cfg.cmdline_extra,
                        .serial_ports = {cfg.serial_ports[0], cfg.serial_ports[1]},
                        .vcpus = cfg.vcpus,
                        .memory_mib = cfg.memory_mib,
                        .tcg_tb_size_mib = cfg.tcg_tb_size_mib,
                };
                struct vmm_template_cache *cache = NULL;
                char *reason = NULL;
                if (vmm_accel_decide(cfg.accel, NULL, NULL, &in.accel, &reason, &err) < 0 ||
                    vmm_template_host_id_read(&host_id, &err) < 0 ||
                    vmm_template_cache_open(template_cache, false, NULL, &cache, &err) < 0) {
                        free(reason);
                        FAIL("template cache: %s", us_error_text(err));
                }
                free(reason);
                in.host_id = host_id;
                if (in.accel == VMM_ACCEL_TCG)
                        in.tsc_khz = vmm_host_tsc_khz_read();
                double tl = now_s();
                int lr = vmm_template_lookup(cache, &in, &entry, &err);
                cache = vmm_template_cache_free(cache);
                if (lr < 0) {
                        printf("lookup=%s\nlookup_error=%s\n",
                               lr == VMM_TEMPLATE_NONE     ? "none"
                               : lr == VMM_TEMPLATE_BUSY   ? "busy"
                               : lr == VMM_TEMPLATE_BROKEN ? "broken"
                               : lr == -ETIMEDOUT          ? "timeout"
                                                           : "error",
                               us_error_text(err));
                        rc = 3;
                        goto out;
                }
                struct stat mst;
                printf("lookup=ok\nlookup_s=%.3f\nkey=%s\nholder_pid=%d\nmemory_ino=%ju\n",
                       now_s() - tl, entry.key, (int)entry.holder_pid,
                       fstat(entry.memory_fd, &mst) == 0 ? (uintmax_t)mst.st_ino : 0);
                fflush(stdout);
                if (asprintf(&share_dir, "%s/share", cfg.state_dir) < 0 ||
                    (mkdir(share_dir, 0700) < 0 && errno != EEXIST))
                        FAIL("share dir: %s", strerror(errno));
                if (vmm_template_tap_open(&tap_fd, &err) < 0)
                        FAIL("tap: %s", us_error_text(err));
                uid_t qemu_uid;
                if (vmm_template_userns_open(&userns_fd, &qemu_uid, &err) < 0)
                        FAIL("user namespace: %s", us_error_text(err));
                /* The 9p export root, opened by QEMU as the namespace's root. */
                if (chown(share_dir, qemu_uid, (gid_t)qemu_uid) < 0)
                        FAIL("chown %s: %s", share_dir, strerror(errno));
                const struct vmm_template_instance inst = {
                        .id = cfg.id,
                        .state_dir = cfg.state_dir,
                        .loop = loop,
                        .console_log_max = cfg.console_log_max,
                        .memory_fd = entry.memory_fd,
                        .tap_fd = tap_fd,
                        .userns_fd = userns_fd,
                        .share_dir = share_dir,
                };
                if (vmm_template_vm_config(&in, VMM_TEMPLATE_CLONE, &inst, &tv, &err) < 0)
                        FAIL("clone config: %s", us_error_text(err));
                /* Only what the config function says, nothing of the flags'. */
                cfg = tv.cfg;
                cfg.shares = &tv.share;
                state_fd = entry.state_fd;
                entry.state_fd = -1;
        }
        double t0 = now_s();
        int r = vmm_vm_start(&cfg, &vm, &err);
        double t_ready = now_s();
        if (r < 0)
                FAIL("start: %s", us_error_text(err));
        qpid = vmm_vm_pid(vm);
        printf("accel=%s (%s)\nqemu_pid=%d\nqmp_ready_s=%.3f\n", vmm_accel_name(vmm_vm_accel(vm)),
               vmm_vm_accel_reason(vm), (int)qpid, t_ready - t0);
        fflush(stdout);

        if (scripted) {
                double deadline = t0 + timeout;
                struct migration_wait w = {.loop = loop};
                if (cfg.template_role == VMM_TEMPLATE_CLONE) {
                        /* As the shim does: both ports connected before
                         * the load, held to the end. */
                        if (ports_first &&
                            (vmm_vm_agent_connect(vm, &held_agent_fd, &err) < 0 ||
                             vmm_vm_port_connect(vm, VMM_PORT_EVENTS, &held_events_fd, &err) < 0))
                                FAIL("connect the ports: %s", us_error_text(err));
                        double tr = now_s();
                        r = vmm_vm_template_restore(vm, state_fd, migration_done, &w, &err);
                        if (r < 0)
                                FAIL("restore: %s", us_error_text(err));
                        if (migration_wait(vm, &w, deadline) < 0)
                                FAIL("restore: %s", w.ended ? w.error : "timed out");
                        printf("restore_s=%.3f\n", now_s() - tr);
                        fflush(stdout);
                }
                if (ready_cmd) {
                        int st = run_ready_cmd(vm, loop, ready_cmd, held_events_fd, deadline);
                        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                                FAIL("the ready command failed (wait status %d)", st);
                        printf("agent_ready_s=%.3f\n", now_s() - t0);
                }
                if (cfg.template_role == VMM_TEMPLATE_SOURCE) {
                        double ts = now_s();
                        r = vmm_vm_template_save(vm, state_fd, migration_done, &w, &err);
                        if (r < 0)
                                FAIL("save: %s", us_error_text(err));
                        if (migration_wait(vm, &w, ts + timeout) < 0)
                                FAIL("save: %s", w.ended ? w.error : "timed out");
                        struct stat sst;
                        printf("save_s=%.3f\nstate_bytes=%jd\n", now_s() - ts,
                               fstat(state_fd, &sst) == 0 ? (intmax_t)sst.st_size : -1);
                }
                printf("pss_kib=%ld\n", pss_kib(qpid));
                fflush(stdout);
                while (wait_file && access(wait_file, F_OK) != 0 && vmm_vm_running(vm) &&
                       now_s() < deadline + hold) {
                        pump_ms(loop, 50);
                        reap(vm);
                }
                if (wait_file && access(wait_file, F_OK) != 0)
                        FAIL("%s never appeared", wait_file);
                if (!vmm_vm_running(vm))
                        FAIL("qemu ended early");
                double tq = now_s();
                if (vmm_vm_quit(vm, &err) < 0)
                        FAIL("quit: %s", us_error_text(err));
                printf("quit_s=%.3f\n", now_s() - tq);
                goto out;
        }

        r = vmm_vm_agent_connect(vm, &agent, &err);
        if (r < 0)
                FAIL("agent connect: %s", us_error_text(err));
        printf("agent_connect=ok\n");
        {
                int ev = -1;
                r = vmm_vm_port_connect(vm, VMM_PORT_EVENTS, &ev, &err);
                if (r < 0)
                        FAIL("events port connect: %s", us_error_text(err));
                us_close(ev);
                printf("events_connect=ok\n");
        }

        /* First console output, then the expected text. */
        bool first = false, seen = !expect_console;
        double deadline = t0 + timeout;
        while (now_s() < deadline && (!first || !seen)) {
                if (!first && console_contains(vm, cap, NULL)) {
                        first = true;
                        printf("first_console_s=%.3f\n", now_s() - t0);
                        fflush(stdout);
                }
                if (!seen && console_contains(vm, cap, expect_console)) {
                        seen = true;
                        printf("console_match_s=%.3f\n", now_s() - t0);
                        fflush(stdout);
                }
                reap(vm);
                if (!vmm_vm_running(vm))
                        break;
                pump_ms(loop, 10);
        }
        if (!first)
                FAIL("no console output within %d s", timeout);
        if (!seen && !wait_exit)
                FAIL("console never showed \"%s\"", expect_console);

        if (expect_agent) {
                char buf[256];
                size_t have = 0;
                bool ok = false;
                while (now_s() < deadline && !ok) {
                        struct pollfd p = {.fd = agent, .events = POLLIN};
                        pump_ms(loop, 10);
                        if (poll(&p, 1, 90) > 0) {
                                ssize_t n = read(agent, buf + have, sizeof(buf) - 1 - have);
                                if (n <= 0)
                                        break;
                                have += (size_t)n;
                                buf[have] = '\0';
                                ok = strstr(buf, expect_agent) != NULL;
                        }
                }
                if (!ok)
                        FAIL("agent port never sent \"%s\"", expect_agent);
                printf("agent_data=ok\n");
        }

        if (wait_exit) {
                while (now_s() < deadline && vmm_vm_running(vm)) {
                        reap(vm);
                        pump_ms(loop, 20);
                }
                if (vmm_vm_running(vm))
                        FAIL("guest did not end QEMU within %d s", timeout);
                printf("exit_s=%.3f\n", now_s() - t0);
        } else {
                char st[64];
                if (hold > 0) {
                        pump_ms(loop, hold * 1000);
                        printf("held_s=%d\n", hold);
                }
                if (stall > 0) {
                        /* Until a pipe is full (then 1 s more, the guest
                         * pushing against it), at most `stall` seconds. */
                        size_t pending = 0, size = 0;
                        double t_stall = now_s(), t_full = 0;
                        while (now_s() - t_stall < stall && (!t_full || now_s() - t_full < 1)) {
                                sleep_ms(100);
                                fullest_pipe(&pending, &size);
                                if (!t_full && size > 0 && pending >= size)
                                        t_full = now_s();
                        }
                        printf("stalled_s=%.3f\nstall_pipe_bytes=%zu\nstall_pipe_size=%zu\n",
                               now_s() - t_stall, pending, size);
                        double ts = now_s();
                        if (query_status(vm, st, sizeof(st)) < 0 || strcmp(st, "running") != 0)
                                FAIL("after a stall, status is %s", st);
                        printf("qmp_after_stall_s=%.3f\n", now_s() - ts);
                }
                if (vmm_vm_pause(vm, &err) < 0)
                        FAIL("pause: %s", us_error_text(err));
                if (query_status(vm, st, sizeof(st)) < 0 || strcmp(st, "paused") != 0)
                        FAIL("after stop, status is %s", st);
                if (vmm_vm_resume(vm, &err) < 0)
                        FAIL("resume: %s", us_error_text(err));
                if (query_status(vm, st, sizeof(st)) < 0 || strcmp(st, "running") != 0)
                        FAIL("after cont, status is %s", st);
                printf("pause_resume=ok\n");
                double tq = now_s();
                if (vmm_vm_quit(vm, &err) < 0)
                        FAIL("quit: %s", us_error_text(err));
                printf("quit_s=%.3f\n", now_s() - tq);
        }
        if (vmm_vm_running(vm))
                FAIL("qemu still running after quit");
        if (kill(qpid, 0) == 0 || errno != ESRCH)
                FAIL("qemu pid %d still exists", (int)qpid);

        /* QEMU is gone and its console drained: the cap must have held. */
        {
                off_t cur = file_size(cfg.state_dir, "console.log");
                off_t old = file_size(cfg.state_dir, "console.log.1");
                off_t total = (cur > 0 ? cur : 0) + (old > 0 ? old : 0);
                /* Our own CPU (not QEMU's): what draining the console cost. */
                struct rusage ru;
                double cpu = 0;
                if (getrusage(RUSAGE_SELF, &ru) == 0)
                        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
                printf("console_max=%zu\nconsole_log_bytes=%jd\nconsole_log1_bytes=%jd\n"
                       "console_bytes=%jd\nhost_cpu_s=%.3f\n",
                       cap, (intmax_t)cur, (intmax_t)old, (intmax_t)total, cpu);
                if (cur < 0)
                        FAIL("no console.log");
                if ((uint64_t)total > cap || (uint64_t)cur > cap / 2 ||
                    (old > 0 && (uint64_t)old > cap / 2))
                        FAIL("console logs hold %jd bytes, above the cap %zu", (intmax_t)total,
                             cap);
        }

out:
        us_close(agent);
        vmm_template_entry_clear(&entry);
        /* Teardown always (also after failures): nothing may remain. */
        if (vm)
                (void)vmm_vm_destroy(vm, NULL);
        vm = vmm_vm_free(vm);
        loop = us_loop_free(loop);
        if (rc == 0) {
                const char *names[] = {"qmp.sock", "agent.sock", "events.sock", "virtiofsd-0.sock"};
                for (size_t i = 0; i < US_ELEMENTSOF(names); i++) {
                        char p[4200];
                        snprintf(p, sizeof(p), "%s/%s", cfg.state_dir, names[i]);
                        if (access(p, F_OK) == 0) {
                                fprintf(stderr, "vmm-boot: FAIL: %s left behind\n", p);
                                rc = 1;
                        }
                }
        }
        us_error_free(err);
        printf("result=%s\n", rc == 0 ? "ok" : "fail");
        return rc;
}
