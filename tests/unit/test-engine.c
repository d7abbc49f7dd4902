/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The container engine against the real kernel: a busybox rootfs in a temp
 * dir, real namespaces, real cgroups (under /unishim-test-<pid>/). Needs root;
 * skips with the reason otherwise. Like the shim, the test process is a
 * child subreaper and reaps container processes itself.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "engine/engine-internal.h"
#include "engine/engine.h"
#include "base/loop.h"
#include "oci/oci-spec.h"

/* The test's cgroups, per process: a second run of this binary (another
 * build tree's) must not remove this one's. Set in main. */
static char cgroup_prefix[48];

struct env {
        char tmp[64];
        char rootfs[128];
        const char *skip_reason;
};

static struct env E;

static const char *const applets[] = {"sh",    "echo", "cat",   "hostname", "touch", "id",
                                      "sleep", "pwd",  "env",   "grep",     "ls",    "true",
                                      "false", "tty",  "mkdir", "test",     "head"};

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (in < 0 || out < 0)
                return -1;
        char buf[65536];
        ssize_t n;
        while ((n = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t)n) != n)
                        return -1;
        return n < 0 ? -1 : 0;
}

static void reap_all(void)
{
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
}

/* Kills whatever a failed test left in <hier>/unishim-test-<pid>/<id> and
 * removes those cgroups, so that a failure leaves nothing on the host. */
static void clean_prefix_dir(const char *dir)
{
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || de->d_type != DT_DIR)
                        continue;
                char p[1024];
                snprintf(p, sizeof(p), "%s/%s/cgroup.procs", dir, de->d_name);
                for (int round = 0; round < 100; round++) {
                        FILE *f = fopen(p, "re");
                        int pid, n = 0;
                        while (f && fscanf(f, "%d", &pid) == 1) {
                                (void)kill(pid, SIGKILL);
                                n++;
                        }
                        if (f)
                                fclose(f);
                        reap_all();
                        if (n == 0)
                                break;
                        usleep(10000);
                }
                snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
                (void)rmdir(p);
        }
        closedir(d);
        (void)rmdir(dir);
}

static void rmdir_cgroup_prefix(void)
{
        DIR *d = opendir("/sys/fs/cgroup");
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char p[512];
                snprintf(p, sizeof(p), "/sys/fs/cgroup/%s%s", de->d_name, cgroup_prefix);
                clean_prefix_dir(p);
        }
        closedir(d);
        char unified[96];
        snprintf(unified, sizeof(unified), "/sys/fs/cgroup%s", cgroup_prefix);
        clean_prefix_dir(unified);
}

static int group_setup(void **state)
{
        (void)state;
        if (geteuid() != 0) {
                E.skip_reason = "needs root (namespaces, mounts, cgroups)";
                return 0;
        }
        if (access("/bin/busybox", X_OK) != 0) {
                E.skip_reason = "needs /bin/busybox (package busybox-static)";
                return 0;
        }
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
                E.skip_reason = "PR_SET_CHILD_SUBREAPER failed";
                return 0;
        }
        snprintf(E.tmp, sizeof(E.tmp), "/tmp/unishim-engine-XXXXXX");
        if (!mkdtemp(E.tmp))
                return -1;
        /* A user-namespaced container's root (an unmapped uid) must be able
         * to reach its rootfs. */
        if (chmod(E.tmp, 0755) < 0)
                return -1;
        snprintf(E.rootfs, sizeof(E.rootfs), "%s/rootfs", E.tmp);
        char p[256];
        const char *dirs[] = {"", "/bin", "/proc", "/sys", "/dev", "/tmp", "/etc"};
        for (size_t i = 0; i < US_ELEMENTSOF(dirs); i++) {
                snprintf(p, sizeof(p), "%s%s", E.rootfs, dirs[i]);
                if (mkdir(p, 0755) < 0)
                        return -1;
        }
        snprintf(p, sizeof(p), "%s/bin/busybox", E.rootfs);
        if (copy_file("/bin/busybox", p, 0755) < 0)
                return -1;
        for (size_t i = 0; i < US_ELEMENTSOF(applets); i++) {
                snprintf(p, sizeof(p), "%s/bin/%s", E.rootfs, applets[i]);
                if (symlink("busybox", p) < 0)
                        return -1;
        }
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        reap_all();
        if (E.tmp[0])
                (void)nftw(E.tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
        if (!E.skip_reason)
                rmdir_cgroup_prefix();
        return 0;
}

#define REQUIRE_ENV()                                                                              \
        do {                                                                                       \
                if (E.skip_reason)                                                                 \
                        unit_skip("%s", E.skip_reason);                                            \
        } while (0)

static const char *default_caps = "\"CAP_CHOWN\",\"CAP_DAC_OVERRIDE\",\"CAP_FSETID\","
                                  "\"CAP_FOWNER\",\"CAP_MKNOD\",\"CAP_SETGID\",\"CAP_SETUID\","
                                  "\"CAP_SETFCAP\",\"CAP_SETPCAP\",\"CAP_NET_BIND_SERVICE\","
                                  "\"CAP_SYS_CHROOT\",\"CAP_KILL\",\"CAP_AUDIT_WRITE\"";

#define DEFAULT_NS                                                                                 \
        "[{\"type\":\"pid\"},{\"type\":\"ipc\"},{\"type\":\"uts\"},{\"type\":\"mount\"},"          \
        "{\"type\":\"network\"}]"

struct spec_opts {
        const char *args; /* JSON array */
        const char *id;   /* for the cgroup path */
        const char *user; /* JSON object */
        const char *env;  /* JSON array */
        const char *cwd;
        const char *hostname;
        bool readonly;
        bool terminal;
        const char *resources;    /* JSON object or NULL */
        const char *extra_mounts; /* ",{...}" or NULL */
        const char *namespaces;   /* JSON array or NULL for pid,ipc,uts,mount,network */
        const char *linux_extra;  /* ",\"key\":..." inside "linux" */
        const char *top_extra;    /* ",\"key\":..." at the top level */
};

static struct us_oci_spec *make_spec(const struct spec_opts *o)
{
        char *json = NULL;
        char caps[1024];
        snprintf(caps, sizeof(caps), "[%s]", default_caps);
        int n = asprintf(
                &json,
                "{\"ociVersion\":\"1.0.2\","
                "\"process\":{\"terminal\":%s,\"user\":%s,\"args\":%s,\"env\":%s,\"cwd\":\"%s\","
                "\"capabilities\":{\"bounding\":%s,\"effective\":%s,\"permitted\":%s},"
                "\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":1024,\"soft\":1024}],"
                "\"noNewPrivileges\":true},"
                "\"root\":{\"path\":\"rootfs\",\"readonly\":%s},"
                "\"hostname\":\"%s\","
                "\"mounts\":["
                "{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\","
                "\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},"
                "{\"destination\":\"/dev\",\"type\":\"tmpfs\",\"source\":\"tmpfs\","
                "\"options\":[\"nosuid\",\"strictatime\",\"mode=755\",\"size=65536k\"]},"
                "{\"destination\":\"/dev/pts\",\"type\":\"devpts\",\"source\":\"devpts\","
                "\"options\":[\"nosuid\",\"noexec\",\"newinstance\",\"ptmxmode=0666\","
                "\"mode=0620\"]},"
                "{\"destination\":\"/dev/shm\",\"type\":\"tmpfs\",\"source\":\"shm\","
                "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"mode=1777\",\"size=65536k\"]},"
                "{\"destination\":\"/dev/mqueue\",\"type\":\"mqueue\",\"source\":\"mqueue\","
                "\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},"
                "{\"destination\":\"/sys\",\"type\":\"sysfs\",\"source\":\"sysfs\","
                "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"ro\"]},"
                "{\"destination\":\"/etc/hostname-bind\",\"type\":\"bind\","
                "\"source\":\"/etc/hostname\",\"options\":[\"rbind\",\"ro\",\"nosuid\"]}%s"
                "],"
                "\"linux\":{\"namespaces\":%s,"
                "\"cgroupsPath\":\"%s/%s\","
                "\"resources\":%s,"
                "\"maskedPaths\":[\"/proc/kcore\",\"/proc/keys\",\"/sys/firmware\"],"
                "\"readonlyPaths\":[\"/proc/sys\",\"/proc/sysrq-trigger\"]%s}%s}",
                o->terminal ? "true" : "false", o->user ? o->user : "{\"uid\":0,\"gid\":0}",
                o->args, o->env ? o->env : "[\"PATH=/bin\"]", o->cwd ? o->cwd : "/", caps, caps,
                caps, o->readonly ? "true" : "false", o->hostname ? o->hostname : "engine",
                o->extra_mounts ? o->extra_mounts : "", o->namespaces ? o->namespaces : DEFAULT_NS,
                cgroup_prefix, o->id, o->resources ? o->resources : "{}",
                o->linux_extra ? o->linux_extra : "", o->top_extra ? o->top_extra : "");
        assert_true(n > 0);
        struct us_oci_spec *spec = NULL;
        struct us_error *err = NULL;
        int r = us_oci_spec_parse(json, strlen(json), &spec, &err);
        if (r < 0)
                fail_msg("spec: %s\n%s", us_error_text(err), json);
        free(json);
        return spec;
}

/* Waits for pid (our child or, as subreaper, grandchild) to exit; timeout_ms
 * (scaled by unit_wait_ms()) only tells a hang from a slow machine. */
static int wait_exit(pid_t pid, int timeout_ms)
{
        int status;
        int64_t deadline = us_monotonic_ms() + unit_wait_ms(timeout_ms);
        while (us_monotonic_ms() < deadline) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return status;
                if (r < 0)
                        fail_msg("waitpid %d: %s", (int)pid, strerror(errno));
                usleep(5000);
        }
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
        fail_msg("process %d did not exit in time", (int)pid);
        return -1;
}

/* Reads fd until EOF (or EIO for a pty); timeout_ms (scaled by
 * unit_wait_ms()) only tells a hang from a slow machine. */
static size_t read_all(int fd, char *buf, size_t size, int timeout_ms)
{
        size_t len = 0;
        timeout_ms = unit_wait_ms(timeout_ms);
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                long el = (now.tv_sec - start.tv_sec) * 1000 +
                          (now.tv_nsec - start.tv_nsec) / 1000000;
                if (el >= timeout_ms)
                        break;
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, (int)(timeout_ms - el)) <= 0)
                        break;
                ssize_t n = read(fd, buf + len, size - 1 - len);
                if (n <= 0)
                        break;
                len += (size_t)n;
                if (len >= size - 1)
                        break;
        }
        buf[len] = 0;
        return len;
}

struct run {
        struct us_container *c;
        int out; /* read end of stdout+stderr, or pty master */
        pid_t pid;
};

static void create_container(const struct spec_opts *o, struct run *run)
{
        char bundle[128];
        snprintf(bundle, sizeof(bundle), "%s", E.tmp);
        int p[2] = {-1, -1};
        if (!o->terminal)
                assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        struct us_container_config cfg = {
                .id = o->id,
                .bundle = bundle,
                .rootfs = E.rootfs,
                .spec = make_spec(o),
                .stdio = {.in = -1, .out = p[1], .err = p[1]},
        };
        struct us_error *err = NULL;
        int pty = -2;
        int r = us_container_create(&cfg, &run->c, &pty, &err);
        us_close(p[1]);
        if (r < 0) {
                us_close(p[0]);
                us_oci_spec_free(cfg.spec);
                fail_msg("create: %s", us_error_text(err));
        }
        if (o->terminal) {
                assert_true(pty >= 0);
                run->out = pty;
        } else {
                assert_int_equal(pty, -1);
                run->out = p[0];
        }
        run->pid = us_container_pid(run->c);
        assert_true(run->pid > 0);
}

static void start_container(struct run *run)
{
        struct us_error *err = NULL;
        if (us_container_start(run->c, &err) < 0)
                fail_msg("start: %s", us_error_text(err));
}

static void destroy_container(struct run *run)
{
        struct us_error *err = NULL;
        (void)kill(run->pid, SIGKILL);
        if (us_container_destroy(run->c, &err) < 0)
                fail_msg("destroy: %s", us_error_text(err));
        /* Idempotent. */
        assert_int_equal(us_container_destroy(run->c, &err), 0);
        run->c = us_container_free(run->c);
        run->out = us_close(run->out);
        reap_all();
}

/* create + start + read all output + exit status + destroy. */
static int run_to_exit(const struct spec_opts *o, char *out, size_t size)
{
        struct run run;
        create_container(o, &run);
        start_container(&run);
        read_all(run.out, out, size, 5000);
        int status = wait_exit(run.pid, 5000);
        destroy_container(&run);
        return status;
}

static bool cgroup_dir_exists(const char *controller, const char *id)
{
        char p[256];
        snprintf(p, sizeof(p), "/sys/fs/cgroup/%s%s/%s", controller, cgroup_prefix, id);
        return access(p, F_OK) == 0;
}

static void echo_hello(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {.id = "echo", .args = "[\"echo\",\"hello\"]"};
        int status = run_to_exit(&o, out, sizeof(out));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_string_equal(out, "hello\n");
}

static void exit_code(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {.id = "exitcode", .args = "[\"sh\",\"-c\",\"exit 3\"]"};
        int status = run_to_exit(&o, out, sizeof(out));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 3);
}

static void hostname_in_uts_ns(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {.id = "uts", .args = "[\"hostname\"]", .hostname = "c-host-1"};
        run_to_exit(&o, out, sizeof(out));
        assert_string_equal(out, "c-host-1\n");
        char host[256];
        gethostname(host, sizeof(host));
        assert_string_not_equal(host, "c-host-1");
}

static void readonly_root(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[512];
        struct spec_opts o = {.id = "ro",
                              .args = "[\"sh\",\"-c\",\"touch /x && echo wrote; touch "
                                      "/dev/shm/y && echo shm-ok\"]",
                              .readonly = true};
        run_to_exit(&o, out, sizeof(out));
        assert_null(strstr(out, "wrote"));
        assert_non_null(strstr(out, "Read-only file system"));
        assert_non_null(strstr(out, "shm-ok"));
}

static void masked_and_readonly_paths(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[512];
        struct spec_opts o = {
                .id = "masked",
                .args = "[\"sh\",\"-c\",\"test -s /proc/kcore && echo kcore-visible; "
                        "echo x > /proc/sys/kernel/domainname || echo sys-ro; "
                        "echo x > /etc/hostname-bind || echo bind-ro; ls /sys/firmware | head "
                        "-1; echo end\"]"};
        run_to_exit(&o, out, sizeof(out));
        assert_null(strstr(out, "kcore-visible"));
        assert_non_null(strstr(out, "sys-ro"));
        assert_non_null(strstr(out, "bind-ro"));
        assert_non_null(strstr(out, "end"));
}

static void dropped_caps(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {.id = "caps", .args = "[\"grep\",\"CapEff\",\"/proc/self/status\"]"};
        run_to_exit(&o, out, sizeof(out));
        char *hex = strchr(out, '\t');
        assert_non_null(hex);
        unsigned long long eff = strtoull(hex + 1, NULL, 16);
        assert_false(eff & (1ULL << 13)); /* CAP_NET_RAW */
        assert_false(eff & (1ULL << 21)); /* CAP_SYS_ADMIN */
        assert_true(eff & (1ULL << 0));   /* CAP_CHOWN */
}

static void user_and_groups(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {
                .id = "user",
                .args = "[\"sh\",\"-c\",\"id -u; id -g; id -G; grep CapEff /proc/self/status\"]",
                .user = "{\"uid\":1000,\"gid\":1001,\"additionalGids\":[2000,2001]}"};
        run_to_exit(&o, out, sizeof(out));
        assert_non_null(strstr(out, "1000\n1001\n"));
        assert_non_null(strstr(out, "2000"));
        assert_non_null(strstr(out, "2001"));
}

static void env_and_cwd(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {.id = "envcwd",
                              .args = "[\"sh\",\"-c\",\"echo $FOO; pwd\"]",
                              .env = "[\"PATH=/bin\",\"FOO=bar baz\"]",
                              .cwd = "/work/dir"};
        run_to_exit(&o, out, sizeof(out));
        assert_string_equal(out, "bar baz\n/work/dir\n");
}

static void exec_not_found(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run run;
        struct spec_opts o = {.id = "notfound", .args = "[\"no-such-binary\"]"};
        create_container(&o, &run);
        struct us_error *err = NULL;
        int r = us_container_start(run.c, &err);
        assert_int_equal(r, -ENOENT);
        assert_non_null(strstr(us_error_text(err), "exec \"no-such-binary\": No such file"));
        err = us_error_free(err);
        int status = wait_exit(run.pid, 5000);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 127);
        destroy_container(&run);
        assert_false(cgroup_dir_exists("pids", "notfound"));
}

static void create_failure_leaves_nothing(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct spec_opts o = {.id = "badmount",
                              .args = "[\"true\"]",
                              .extra_mounts = ",{\"destination\":\"/bad\",\"type\":\"nosuchfs\","
                                              "\"source\":\"x\"}"};
        struct us_container_config cfg = {
                .id = o.id,
                .bundle = E.tmp,
                .rootfs = E.rootfs,
                .spec = make_spec(&o),
                .stdio = {-1, -1, -1},
        };
        struct us_container *c = NULL;
        struct us_error *err = NULL;
        int pty = -2;
        int r = us_container_create(&cfg, &c, &pty, &err);
        assert_true(r < 0);
        assert_null(c);
        assert_int_equal(pty, -2);
        assert_non_null(strstr(us_error_text(err), "create container badmount: mount nosuchfs "
                                                   "on /bad: No such device"));
        err = us_error_free(err);
        us_oci_spec_free(cfg.spec);
        assert_false(cgroup_dir_exists("pids", "badmount"));
        /* The child was reaped by the engine: nothing left for us. */
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
}

static void pids_limit(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[2048];
        struct spec_opts o = {
                .id = "pids",
                .args = "[\"sh\",\"-c\",\"for i in 1 2 3 4 5 6 7 8; do sleep 30 & done; echo "
                        "end\"]",
                .resources = "{\"pids\":{\"limit\":4}}"};
        struct run run;
        create_container(&o, &run);
        char p[256];
        snprintf(p, sizeof(p), "/sys/fs/cgroup/pids%s/pids/pids.max", cgroup_prefix);
        FILE *f = fopen(p, "re");
        assert_non_null(f);
        char buf[32] = {0};
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        assert_string_equal(buf, "4\n");
        start_container(&run);
        int status = wait_exit(run.pid, 5000);
        assert_true(WIFEXITED(status));
        /* The sleeps hold the pipe open: destroy kills them. */
        struct us_error *err = NULL;
        assert_int_equal(us_container_kill(run.c, SIGKILL, true, &err), 0);
        read_all(run.out, out, sizeof(out), 3000);
        assert_non_null(strstr(out, "fork"));
        destroy_container(&run);
        assert_false(cgroup_dir_exists("pids", "pids"));
}

static void exec_sees_same_pid_ns(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run run;
        struct spec_opts o = {.id = "exec", .args = "[\"sleep\",\"100\"]"};
        create_container(&o, &run);
        start_container(&run);

        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        struct us_oci_process *proc = NULL;
        struct us_error *err = NULL;
        const char *pj = "{\"args\":[\"sh\",\"-c\",\"cat /proc/1/cmdline; echo; echo $$; "
                         "hostname\"],\"env\":[\"PATH=/bin\"],\"cwd\":\"/tmp\","
                         "\"user\":{\"uid\":0,\"gid\":0}}";
        if (us_oci_process_parse(pj, strlen(pj), &proc, &err) < 0)
                fail_msg("parse process: %s", us_error_text(err));
        struct us_stdio io = {.in = -1, .out = p[1], .err = p[1]};
        pid_t pid = 0;
        int pty = -2;
        if (us_container_exec(run.c, proc, &io, &pid, &pty, &err) < 0)
                fail_msg("exec: %s", us_error_text(err));
        us_close(p[1]);
        assert_true(pid > 0);
        assert_int_equal(pty, -1);
        char out[512];
        size_t n = read_all(p[0], out, sizeof(out), 5000);
        us_close(p[0]);
        int status = wait_exit(pid, 5000);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        /* cmdline is NUL-separated: "sleep\0100\0" */
        for (size_t i = 0; i < n; i++)
                if (!out[i])
                        out[i] = ' ';
        assert_int_equal(strncmp(out, "sleep 100 \n", 11), 0);
        assert_non_null(strstr(out, "\nengine\n"));
        /* The exec'd process's pid inside the container's pid ns is small. */
        int inner = atoi(out + 11);
        assert_true(inner > 1 && inner < 100);

        /* An exec of a missing binary fails with a clear error. */
        us_oci_process_free(proc);
        pj = "{\"args\":[\"nope\"],\"env\":[\"PATH=/bin\"],\"cwd\":\"/\",\"user\":{\"uid\":0,"
             "\"gid\":0}}";
        assert_int_equal(us_oci_process_parse(pj, strlen(pj), &proc, &err), 0);
        io = (struct us_stdio){-1, -1, -1};
        assert_true(us_container_exec(run.c, proc, &io, &pid, &pty, &err) < 0);
        assert_non_null(strstr(us_error_text(err), "exec \"nope\": No such file or directory"));
        err = us_error_free(err);
        us_oci_process_free(proc);

        destroy_container(&run);
        assert_int_equal(kill(run.pid, 0), -1);
        assert_int_equal(errno, ESRCH);
}

static void read_freezer(const char *id, char *buf, size_t size)
{
        char p[256];
        snprintf(p, sizeof(p), "/sys/fs/cgroup/freezer%s/%s/freezer.state", cgroup_prefix, id);
        FILE *f = fopen(p, "re");
        assert_non_null(f);
        assert_non_null(fgets(buf, (int)size, f));
        fclose(f);
}

static void pause_resume_kill(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run run;
        struct spec_opts o = {.id = "pause", .args = "[\"sleep\",\"100\"]"};
        create_container(&o, &run);
        start_container(&run);
        struct us_error *err = NULL;
        char buf[64];
        if (us_container_pause(run.c, &err) < 0)
                fail_msg("pause: %s", us_error_text(err));
        read_freezer("pause", buf, sizeof(buf));
        assert_string_equal(buf, "FROZEN\n");
        if (us_container_resume(run.c, &err) < 0)
                fail_msg("resume: %s", us_error_text(err));
        read_freezer("pause", buf, sizeof(buf));
        assert_string_equal(buf, "THAWED\n");
        assert_int_equal(waitpid(run.pid, NULL, WNOHANG), 0); /* still running */
        assert_int_equal(us_container_kill(run.c, SIGKILL, false, &err), 0);
        int status = wait_exit(run.pid, 5000);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGKILL);
        destroy_container(&run);
        assert_false(cgroup_dir_exists("freezer", "pause"));
        assert_false(cgroup_dir_exists("pids", "pause"));
}

static void terminal_mode(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run run;
        struct spec_opts o = {
                .id = "tty", .args = "[\"sh\",\"-c\",\"tty; echo hi-from-tty\"]", .terminal = true};
        create_container(&o, &run);
        start_container(&run);
        char out[512];
        read_all(run.out, out, sizeof(out), 5000);
        int status = wait_exit(run.pid, 5000);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_non_null(strstr(out, "/dev/pts/0"));
        assert_non_null(strstr(out, "hi-from-tty"));
        destroy_container(&run);
}

static void destroy_unstarted(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run run;
        struct spec_opts o = {.id = "unstarted", .args = "[\"true\"]"};
        create_container(&o, &run);
        assert_true(cgroup_dir_exists("pids", "unstarted"));
        pid_t pid = run.pid;
        destroy_container(&run);
        assert_false(cgroup_dir_exists("pids", "unstarted"));
        assert_false(cgroup_dir_exists("memory", "unstarted"));
        assert_int_equal(kill(pid, 0), -1);
        assert_int_equal(errno, ESRCH);
}

static void cleanup_bundle_missing_is_ok(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct us_error *err = NULL;
        assert_int_equal(us_container_cleanup_bundle(E.tmp, "nothing-here", &err), 0);
        assert_null(err);
        assert_true(us_container_cleanup_bundle(E.tmp, "../x", &err) < 0);
        err = us_error_free(err);
}

static void joined_namespaces_like_a_pod(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run sandbox;
        struct spec_opts so = {.id = "sandbox", .args = "[\"sleep\",\"100\"]", .hostname = "pod-1"};
        create_container(&so, &sandbox);
        start_container(&sandbox);

        char ns[1024];
        int p = (int)sandbox.pid;
        snprintf(ns, sizeof(ns),
                 "[{\"type\":\"pid\",\"path\":\"/proc/%d/ns/pid\"},"
                 "{\"type\":\"ipc\",\"path\":\"/proc/%d/ns/ipc\"},"
                 "{\"type\":\"uts\",\"path\":\"/proc/%d/ns/uts\"},"
                 "{\"type\":\"network\",\"path\":\"/proc/%d/ns/net\"},{\"type\":\"mount\"}]",
                 p, p, p, p);
        struct spec_opts o = {.id = "member",
                              .args = "[\"sh\",\"-c\",\"cat /proc/1/cmdline; echo; hostname\"]",
                              .hostname = "pod-1",
                              .namespaces = ns};
        char out[512];
        struct run run;
        create_container(&o, &run);
        /* init went through an intermediate that setns'd into the pid ns. */
        assert_true(run.pid != sandbox.pid);
        start_container(&run);
        size_t n = read_all(run.out, out, sizeof(out), 5000);
        int status = wait_exit(run.pid, 5000);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        for (size_t i = 0; i < n; i++)
                if (!out[i])
                        out[i] = ' ';
        assert_string_equal(out, "sleep 100 \npod-1\n");
        destroy_container(&run);
        destroy_container(&sandbox);
}

#define USERNS_MAPS                                                                                \
        ",\"uidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}],"                 \
        "\"gidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}]"

static void user_namespace(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[512];
        struct spec_opts o = {
                .id = "userns",
                .args = "[\"sh\",\"-c\",\"id -u; cat /proc/self/uid_map; ls -ln /bin/busybox; "
                        "cat /dev/null && echo devnull-ok\"]",
                .namespaces = "[{\"type\":\"user\"},{\"type\":\"pid\"},{\"type\":\"ipc\"},"
                              "{\"type\":\"uts\"},{\"type\":\"mount\"},{\"type\":\"network\"}]",
                .linux_extra = USERNS_MAPS};
        int status = run_to_exit(&o, out, sizeof(out));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(strncmp(out, "0\n", 2), 0);
        assert_non_null(strstr(out, "100000"));
        assert_non_null(strstr(out, "65534")); /* host root is unmapped */
        assert_non_null(strstr(out, "devnull-ok"));
}

static void user_namespace_with_joined_netns(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run sandbox;
        struct spec_opts so = {.id = "netsandbox", .args = "[\"sleep\",\"100\"]"};
        create_container(&so, &sandbox);
        start_container(&sandbox);
        char ns[1024];
        snprintf(ns, sizeof(ns),
                 "[{\"type\":\"user\"},{\"type\":\"pid\"},{\"type\":\"mount\"},{\"type\":\"ipc\"},{"
                 "\"type\":\"uts\"},"
                 "{\"type\":\"network\",\"path\":\"/proc/%d/ns/net\"}]",
                 (int)sandbox.pid);
        char want[64], out[512];
        snprintf(want, sizeof(want), "net:[");
        struct spec_opts o = {.id = "usernet",
                              .args = "[\"sh\",\"-c\",\"id -u; echo $$; ls /sys/class/net\"]",
                              .namespaces = ns,
                              .linux_extra = USERNS_MAPS};
        int status = run_to_exit(&o, out, sizeof(out));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(strncmp(out, "0\n1\n", 4), 0);
        assert_non_null(strstr(out, "lo"));
        destroy_container(&sandbox);
}

static bool file_contains(const char *path, const char *needle)
{
        char buf[4096];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return false;
        buf[n] = 0;
        return strstr(buf, needle) != NULL;
}

static void hooks(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char top[2048];
        snprintf(top, sizeof(top),
                 ",\"hooks\":{"
                 "\"createRuntime\":[{\"path\":\"/bin/sh\",\"args\":[\"sh\",\"-c\",\"cat > "
                 "%s/create-runtime\"]}],"
                 "\"createContainer\":[{\"path\":\"/bin/sh\",\"args\":[\"sh\",\"-c\",\"cat > "
                 "%s/create-container\"]}],"
                 "\"startContainer\":[{\"path\":\"/bin/sh\",\"args\":[\"sh\",\"-c\",\"cat > "
                 "/tmp/start-container\"]}],"
                 "\"poststart\":[{\"path\":\"/bin/sh\",\"args\":[\"sh\",\"-c\",\"cat > "
                 "%s/poststart\"]}],"
                 "\"poststop\":[{\"path\":\"/bin/sh\",\"args\":[\"sh\",\"-c\",\"cat > "
                 "%s/poststop\"],\"timeout\":5}]}",
                 E.tmp, E.tmp, E.tmp, E.tmp);
        char out[256];
        struct spec_opts o = {.id = "hooks", .args = "[\"true\"]", .top_extra = top};
        int status = run_to_exit(&o, out, sizeof(out));
        assert_true(WIFEXITED(status));
        char p[256];
        snprintf(p, sizeof(p), "%s/create-runtime", E.tmp);
        assert_true(file_contains(p, "\"status\":\"creating\""));
        assert_true(file_contains(p, "\"id\":\"hooks\""));
        assert_true(file_contains(p, "\"pid\":"));
        snprintf(p, sizeof(p), "%s/create-container", E.tmp);
        assert_true(file_contains(p, "\"id\":\"hooks\""));
        snprintf(p, sizeof(p), "%s/tmp/start-container", E.rootfs);
        assert_true(file_contains(p, "\"status\":\"created\""));
        snprintf(p, sizeof(p), "%s/poststart", E.tmp);
        assert_true(file_contains(p, "\"status\":\"running\""));
        snprintf(p, sizeof(p), "%s/poststop", E.tmp);
        assert_true(file_contains(p, "\"status\":\"stopped\""));
}

static void failing_hook_fails_create(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct spec_opts o = {.id = "badhook",
                              .args = "[\"true\"]",
                              .top_extra = ",\"hooks\":{\"createRuntime\":[{\"path\":\"/bin/sh\","
                                           "\"args\":[\"sh\",\"-c\",\"echo nope >&2; exit "
                                           "3\"]}]}"};
        struct us_container_config cfg = {
                .id = o.id, .bundle = E.tmp, .rootfs = E.rootfs, .spec = make_spec(&o)};
        cfg.stdio = (struct us_stdio){-1, -1, -1};
        struct us_container *c = NULL;
        struct us_error *err = NULL;
        assert_true(us_container_create(&cfg, &c, NULL, &err) < 0);
        assert_string_equal(us_error_text(err), "create container badhook: createRuntime hook: "
                                                "hook /bin/sh exited with 3: nope");
        err = us_error_free(err);
        us_oci_spec_free(cfg.spec);
        assert_false(cgroup_dir_exists("pids", "badhook"));
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static void seccomp_filter(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {
                .id = "seccomp",
                .args = "[\"sh\",\"-c\",\"mkdir /tmp/x 2>/dev/null || echo denied; echo ok\"]",
                .linux_extra = ",\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\","
                               "\"syscalls\":[{\"names\":[\"mkdir\",\"mkdirat\"],"
                               "\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":1}]}"};
        run_to_exit(&o, out, sizeof(out));
        assert_string_equal(out, "denied\nok\n");
}

static void sysctls(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[256];
        struct spec_opts o = {.id = "sysctl",
                              .args = "[\"cat\",\"/proc/sys/net/ipv4/ip_forward\"]",
                              .linux_extra = ",\"sysctl\":{\"net.ipv4.ip_forward\":\"1\"}"};
        run_to_exit(&o, out, sizeof(out));
        assert_string_equal(out, "1\n");

        struct spec_opts bad = {.id = "badsysctl",
                                .args = "[\"true\"]",
                                .linux_extra = ",\"sysctl\":{\"kernel.panic\":\"1\"}"};
        struct us_container_config cfg = {
                .id = bad.id, .bundle = E.tmp, .rootfs = E.rootfs, .spec = make_spec(&bad)};
        cfg.stdio = (struct us_stdio){-1, -1, -1};
        struct us_container *c = NULL;
        struct us_error *err = NULL;
        assert_true(us_container_create(&cfg, &c, NULL, &err) < 0);
        assert_non_null(strstr(us_error_text(err), "sysctl kernel.panic is not namespaced"));
        err = us_error_free(err);
        us_oci_spec_free(cfg.spec);
}

static void exec_with_terminal(void **state)
{
        (void)state;
        REQUIRE_ENV();
        struct run run;
        struct spec_opts o = {.id = "exectty", .args = "[\"sleep\",\"100\"]"};
        create_container(&o, &run);
        start_container(&run);
        struct us_oci_process *proc = NULL;
        struct us_error *err = NULL;
        const char *pj = "{\"terminal\":true,\"consoleSize\":{\"height\":33,\"width\":111},"
                         "\"args\":[\"sh\",\"-c\",\"tty; stty size\"],\"env\":[\"PATH=/bin\"],"
                         "\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}}";
        if (us_oci_process_parse(pj, strlen(pj), &proc, &err) < 0)
                fail_msg("parse process: %s", us_error_text(err));
        struct us_stdio io = {-1, -1, -1};
        pid_t pid = 0;
        int pty = -1;
        if (us_container_exec(run.c, proc, &io, &pid, &pty, &err) < 0)
                fail_msg("exec: %s", us_error_text(err));
        us_oci_process_free(proc);
        assert_true(pty >= 0);
        char out[256];
        read_all(pty, out, sizeof(out), 5000);
        us_close(pty);
        int status = wait_exit(pid, 5000);
        assert_true(WIFEXITED(status));
        assert_non_null(strstr(out, "/dev/pts/"));
        assert_non_null(strstr(out, "33 111"));
        destroy_container(&run);
}

static void cgroup_mount(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[1024];
        struct spec_opts o = {
                .id = "cgmount",
                .args = "[\"sh\",\"-c\",\"cat /sys/fs/cgroup/pids/pids.max; ls /sys/fs/cgroup\"]",
                .resources = "{\"pids\":{\"limit\":7}}",
                .extra_mounts = ",{\"destination\":\"/sys/fs/cgroup\",\"type\":\"cgroup\","
                                "\"source\":\"cgroup\",\"options\":[\"nosuid\",\"noexec\","
                                "\"nodev\",\"relatime\",\"ro\"]}"};
        int status = run_to_exit(&o, out, sizeof(out));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(strncmp(out, "7\n", 2), 0);
        assert_non_null(strstr(out, "memory"));
}

/* A new cgroup namespace is rooted at the container's own cgroup, as runc
 * does: inside, every hierarchy's path is "/". */
static void cgroup_namespace_root(void **state)
{
        (void)state;
        REQUIRE_ENV();
        char out[1024];
        struct spec_opts o = {.id = "cgns",
                              .args = "[\"cat\",\"/proc/self/cgroup\"]",
                              .namespaces = "[{\"type\":\"pid\"},{\"type\":\"ipc\"},"
                                            "{\"type\":\"uts\"},{\"type\":\"mount\"},"
                                            "{\"type\":\"network\"},{\"type\":\"cgroup\"}]"};
        int status = run_to_exit(&o, out, sizeof(out));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_true(out[0] != '\0');
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
                const char *path = strrchr(line, ':');
                if (!path || strcmp(path, ":/") != 0)
                        fail_msg("in the container's cgroup namespace: %s", line);
        }
}

/* engine_clone with a cgroup fd: the child is born in that cgroup2
 * directory (this host's unified hierarchy stands in for a pure v2 one). */
static void clone_into_cgroup(void **state)
{
        (void)state;
        REQUIRE_ENV();
        const char *const mounts[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
        char dir[256] = "";
        for (size_t i = 0; i < US_ELEMENTSOF(mounts) && !dir[0]; i++) {
                char probe[256];
                snprintf(probe, sizeof(probe), "%s/cgroup.procs", mounts[i]);
                if (access(probe, F_OK) == 0)
                        snprintf(dir, sizeof(dir), "%s/unishim-test-clone-%d", mounts[i],
                                 (int)getpid());
        }
        if (!dir[0])
                unit_skip("no cgroup2 mount (/sys/fs/cgroup/unified or /sys/fs/cgroup)");
        assert_int_equal(mkdir(dir, 0755), 0);
        int cgfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(cgfd >= 0);
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        bool in_cgroup = false;
        pid_t pid = engine_clone(0, cgfd, &in_cgroup);
        if (pid == 0) {
                char c;
                close(p[1]);
                (void)!read(p[0], &c, 1);
                _exit(0);
        }
        assert_true(pid > 0);
        close(cgfd);
        char path[64], cg[4096] = "";
        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        size_t n = fread(cg, 1, sizeof(cg) - 1, f);
        cg[n] = '\0';
        fclose(f);
        close(p[1]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        close(p[0]);
        assert_int_equal(rmdir(dir), 0);
        if (!in_cgroup)
                unit_skip("clone3 CLONE_INTO_CGROUP unavailable here");
        char want[128];
        snprintf(want, sizeof(want), "0::/unishim-test-clone-%d\n", (int)getpid());
        if (!strstr(cg, want))
                fail_msg("child's /proc/pid/cgroup lacks %s: %s", want, cg);
}

int main(void)
{
        snprintf(cgroup_prefix, sizeof(cgroup_prefix), "/unishim-test-%d", (int)getpid());
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(echo_hello),
                cmocka_unit_test(exit_code),
                cmocka_unit_test(hostname_in_uts_ns),
                cmocka_unit_test(readonly_root),
                cmocka_unit_test(masked_and_readonly_paths),
                cmocka_unit_test(dropped_caps),
                cmocka_unit_test(user_and_groups),
                cmocka_unit_test(env_and_cwd),
                cmocka_unit_test(exec_not_found),
                cmocka_unit_test(create_failure_leaves_nothing),
                cmocka_unit_test(pids_limit),
                cmocka_unit_test(exec_sees_same_pid_ns),
                cmocka_unit_test(pause_resume_kill),
                cmocka_unit_test(terminal_mode),
                cmocka_unit_test(destroy_unstarted),
                cmocka_unit_test(cleanup_bundle_missing_is_ok),
                cmocka_unit_test(joined_namespaces_like_a_pod),
                cmocka_unit_test(cgroup_namespace_root),
                cmocka_unit_test(clone_into_cgroup),
                cmocka_unit_test(user_namespace),
                cmocka_unit_test(user_namespace_with_joined_netns),
                cmocka_unit_test(hooks),
                cmocka_unit_test(failing_hook_fails_create),
                cmocka_unit_test(seccomp_filter),
                cmocka_unit_test(sysctls),
                cmocka_unit_test(exec_with_terminal),
                cmocka_unit_test(cgroup_mount),
        };
        return unit_exit(unit_run_group_tests(tests, group_setup, group_teardown));
}
