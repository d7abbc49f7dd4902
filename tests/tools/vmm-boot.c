/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm-boot: drives vmm_vm_start() and friends against a real kernel/initrd,
 * for tests/integration/test-vmm-boot.sh and the measurements in docs/vmm.md.
 *
 *   vmm-boot --kernel K [--initrd I] --state-dir D [--accel auto|kvm|tcg]
 *            [--tb-size MIB] [--memory MIB] [--share virtiofs|9p:TAG:DIR]
 *            [--append ARGS] [--expect-console TEXT] [--expect-agent TEXT]
 *            [--timeout SEC] [--hold SEC] [--wait-exit]
 *
 * Default flow: start, connect the agent socket, wait for console output
 * (or TEXT), pause + resume over QMP (checking query-status), quit, and check
 * that no process and no socket is left. --wait-exit instead waits for the
 * guest to end QEMU (benchmarks that reboot -f). Prints "key=value" timings.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "qemu.h"
#include "qmp.h"

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

/* Reap like the shim does: waitpid(-1) and report every pid. */
static void reap(struct vmm_vm *vm)
{
        int st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0)
                (void)vmm_vm_child_exited(vm, p, st);
}

static bool file_contains(const char *path, const char *text, size_t *ret_size)
{
        _cleanup_free_ char *buf = NULL;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return false;
        if (ret_size)
                *ret_size = (size_t)st.st_size;
        if (!text)
                return st.st_size > 0;
        if (st.st_size <= 0 || st.st_size > 16 * 1024 * 1024)
                return false;
        buf = calloc(1, (size_t)st.st_size + 1);
        if (!buf || read(fd, buf, (size_t)st.st_size) < 0)
                return false;
        for (off_t i = 0; i < st.st_size; i++)
                if (buf[i] == '\0')
                        buf[i] = ' ';
        return strstr(buf, text) != NULL;
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

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, "vmm-boot: FAIL: " __VA_ARGS__);                                   \
                fputc('\n', stderr);                                                               \
                rc = 1;                                                                            \
                goto out;                                                                          \
        } while (0)

int main(int argc, char **argv)
{
        struct vmm_vm_config cfg = {.tap_fd = -1, .accel = VMM_ACCEL_AUTO, .memory_mib = 256};
        struct vmm_share share = {0};
        const char *expect_console = NULL, *expect_agent = NULL;
        int timeout = 60, hold = 0, rc = 0;
        bool wait_exit = false;
        char console[4096];
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
                default:
                        return 2;
                }
        }
        if (!cfg.kernel || !cfg.state_dir) {
                fprintf(stderr, "vmm-boot: --kernel and --state-dir are required\n");
                return 2;
        }
        snprintf(console, sizeof(console), "%s/console.log", cfg.state_dir);
        cfg.console_log = console;
        cfg.id = "vmm-boot";
        /* The shim is a subreaper; so are we, for the same reaping rules. */
        (void)prctl(PR_SET_CHILD_SUBREAPER, 1);

        struct vmm_vm *vm = NULL;
        struct us_error *err = NULL;
        int agent = -1;
        pid_t qpid = -1;
        double t0 = now_s();
        int r = vmm_vm_start(&cfg, &vm, &err);
        double t_ready = now_s();
        if (r < 0)
                FAIL("start: %s", us_error_text(err));
        qpid = vmm_vm_pid(vm);
        printf("accel=%s (%s)\nqemu_pid=%d\nqmp_ready_s=%.3f\n", vmm_accel_name(vmm_vm_accel(vm)),
               vmm_vm_accel_reason(vm), (int)qpid, t_ready - t0);
        fflush(stdout);

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
                size_t size = 0;
                if (!first && file_contains(console, NULL, &size) && size > 0) {
                        first = true;
                        printf("first_console_s=%.3f\n", now_s() - t0);
                        fflush(stdout);
                }
                if (!seen && file_contains(console, expect_console, NULL)) {
                        seen = true;
                        printf("console_match_s=%.3f\n", now_s() - t0);
                        fflush(stdout);
                }
                reap(vm);
                if (!vmm_vm_running(vm))
                        break;
                sleep_ms(10);
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
                        if (poll(&p, 1, 100) > 0) {
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
                        sleep_ms(20);
                }
                if (vmm_vm_running(vm))
                        FAIL("guest did not end QEMU within %d s", timeout);
                printf("exit_s=%.3f\n", now_s() - t0);
        } else {
                char st[64];
                if (hold > 0) {
                        sleep(hold);
                        printf("held_s=%d\n", hold);
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

out:
        us_close(agent);
        /* Teardown always (also after failures): nothing may remain. */
        if (vm)
                (void)vmm_vm_destroy(vm, NULL);
        vm = vmm_vm_free(vm);
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
