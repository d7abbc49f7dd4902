/* SPDX-License-Identifier: Apache-2.0 */
/* The container process's own setup: rlimits, oom_score_adj, user, groups,
 * capabilities, umask, no_new_privs, AppArmor, seccomp, stdio, execve. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "seccomp-filter.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

int engine_read_cap_last_cap(void)
{
        char buf[16] = {0};
        _cleanup_close_ int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
                return CAP_LAST_CAP;
        int v = atoi(buf);
        return v > 0 && v < 64 ? v : CAP_LAST_CAP;
}

bool engine_apparmor_enabled(void)
{
        char c = 0;
        _cleanup_close_ int fd =
                open("/sys/module/apparmor/parameters/enabled", O_RDONLY | O_CLOEXEC);
        return fd >= 0 && read(fd, &c, 1) == 1 && c == 'Y';
}

int engine_set_rlimits(const struct us_oci_process *p, struct us_error **err)
{
        for (size_t i = 0; i < p->n_rlimits; i++) {
                struct rlimit rl = {.rlim_cur = p->rlimits[i].soft, .rlim_max = p->rlimits[i].hard};
                if (setrlimit(p->rlimits[i].resource, &rl) < 0)
                        return us_errorf(err, errno, "set rlimit %d to %llu/%llu",
                                         p->rlimits[i].resource,
                                         (unsigned long long)p->rlimits[i].soft,
                                         (unsigned long long)p->rlimits[i].hard);
        }
        return 0;
}

int engine_set_oom_score_adj(const struct us_oci_process *p, struct us_error **err)
{
        if (!p->has_oom_score_adj)
                return 0;
        char buf[16];
        int len = snprintf(buf, sizeof(buf), "%d", p->oom_score_adj);
        _cleanup_close_ int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open /proc/self/oom_score_adj");
        if (write(fd, buf, (size_t)len) != len)
                return us_errorf(err, errno, "set oom_score_adj to %d", p->oom_score_adj);
        return 0;
}

static int set_apparmor(const struct engine_proc_opts *o, struct us_error **err)
{
        const char *profile = o->p->apparmor_profile;
        if (!profile || !*profile || !o->apparmor_enabled)
                return 0;
        _cleanup_free_ char *cmd = NULL;
        if (asprintf(&cmd, "exec %s", profile) < 0)
                return us_errorf(err, ENOMEM, "apparmor");
        int fd = open("/proc/self/attr/apparmor/exec", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                fd = open("/proc/self/attr/exec", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "set apparmor profile %s", profile);
        ssize_t n = write(fd, cmd, strlen(cmd));
        int saved = errno;
        us_close(fd);
        if (n < 0)
                return us_errorf(err, saved, "set apparmor profile %s", profile);
        return 0;
}

static int load_seccomp(const struct engine_proc_opts *o, struct us_error **err)
{
        if (!o->seccomp)
                return 0;
        int r = us_seccomp_load(o->seccomp, err);
        if (r < 0)
                return us_error_wrap(err, r, "load seccomp filter");
        return 0;
}

static int capset_sets(const struct us_oci_capabilities *c, uint64_t mask)
{
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct data[2];
        uint64_t eff = c->effective & mask, perm = c->permitted & mask, inh = c->inheritable & mask;
        data[0].effective = (uint32_t)eff;
        data[1].effective = (uint32_t)(eff >> 32);
        data[0].permitted = (uint32_t)perm;
        data[1].permitted = (uint32_t)(perm >> 32);
        data[0].inheritable = (uint32_t)inh;
        data[1].inheritable = (uint32_t)(inh >> 32);
        return (int)syscall(SYS_capset, &hdr, data);
}

static int set_user_and_caps(const struct engine_proc_opts *o, struct us_error **err)
{
        const struct us_oci_process *p = o->p;
        const struct us_oci_user *u = &p->user;
        uint64_t mask = o->cap_last_cap >= 63 ? ~0ULL : ((1ULL << (o->cap_last_cap + 1)) - 1);

        if (p->has_capabilities) {
                for (int cap = 0; cap <= o->cap_last_cap; cap++) {
                        if (p->capabilities.bounding & (1ULL << cap))
                                continue;
                        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                                return us_errorf(err, errno, "drop capability %d from bounding set",
                                                 cap);
                }
                /* Keep the permitted set across the uid change; the sets are
                 * set explicitly right after. */
                if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
                        return us_errorf(err, errno, "prctl(PR_SET_KEEPCAPS)");
        }

        gid_t groups[1024];
        size_t ngroups = u->n_additional_gids;
        if (ngroups > US_ELEMENTSOF(groups))
                return us_error_msg(err, EINVAL, "too many additionalGids (%zu)", ngroups);
        for (size_t i = 0; i < ngroups; i++)
                groups[i] = u->additional_gids[i];
        if (setgroups(ngroups, groups) < 0 && !(o->in_userns && errno == EPERM && ngroups == 0))
                return us_errorf(err, errno, "setgroups");
        if (setresgid(u->gid, u->gid, u->gid) < 0)
                return us_errorf(err, errno, "setresgid %u", u->gid);
        if (setresuid(u->uid, u->uid, u->uid) < 0)
                return us_errorf(err, errno, "setresuid %u", u->uid);

        if (p->has_capabilities) {
                if (capset_sets(&p->capabilities, mask) < 0)
                        return us_errorf(err, errno, "set capabilities");
                if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                        return us_errorf(err, errno, "prctl(PR_SET_KEEPCAPS)");
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                        return us_errorf(err, errno, "clear ambient capabilities");
                for (int cap = 0; cap <= o->cap_last_cap; cap++) {
                        if (!(p->capabilities.ambient & (1ULL << cap)))
                                continue;
                        /* Only possible for caps both permitted and
                         * inheritable; runc skips the others with a
                         * warning, and specs (runc spec's default) rely on
                         * it. */
                        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0 &&
                            errno != EPERM)
                                return us_errorf(err, errno, "raise ambient capability %d", cap);
                }
        }
        return 0;
}

int engine_process_prepare(const struct engine_proc_opts *o, struct us_error **err)
{
        const struct us_oci_process *p = o->p;
        int r;

        if ((r = set_apparmor(o, err)) < 0)
                return r;
        if (p->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return us_errorf(err, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
        /* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
         * while we still have it (as runc does). */
        if (!p->no_new_privileges && (r = load_seccomp(o, err)) < 0)
                return r;

        const char *cwd = p->cwd && *p->cwd ? p->cwd : "/";
        bool cwd_done = chdir(cwd) == 0;
        int cwd_errno = errno;
        if ((r = set_user_and_caps(o, err)) < 0)
                return r;
        /* A cwd only the container user may enter is entered after the
         * switch. */
        if (!cwd_done && chdir(cwd) < 0) {
                if (cwd_errno == ENOENT || errno == ENOENT)
                        return us_errorf(err, ENOENT, "chdir to cwd %s", cwd);
                return us_errorf(err, errno, "chdir to cwd %s", cwd);
        }
        umask(p->user.has_umask ? (mode_t)p->user.umask : 022);
        return 0;
}

static const char *env_get(char **env, const char *key)
{
        size_t klen = strlen(key);
        for (char **e = env; e && *e; e++)
                if (strncmp(*e, key, klen) == 0 && (*e)[klen] == '=')
                        return *e + klen + 1;
        return NULL;
}

/* Resolves args[0] through PATH of the process env, like runc (exec.LookPath
 * semantics: regular file with an execute bit). */
static int find_executable(const struct us_oci_process *p, char *buf, size_t size)
{
        const char *name = p->args[0];
        if (strchr(name, '/')) {
                if ((size_t)snprintf(buf, size, "%s", name) >= size)
                        return -ENAMETOOLONG;
                return 0;
        }
        const char *path = env_get(p->env, "PATH");
        if (!path)
                path = DEFAULT_PATH;
        int result = -ENOENT;
        for (const char *s = path;;) {
                const char *end = strchrnul(s, ':');
                size_t dlen = (size_t)(end - s);
                int n = dlen == 0 ? snprintf(buf, size, "./%s", name)
                                  : snprintf(buf, size, "%.*s/%s", (int)dlen, s, name);
                if (n > 0 && (size_t)n < size) {
                        struct stat st;
                        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
                                if (st.st_mode & 0111)
                                        return 0;
                                result = -EACCES;
                        }
                }
                if (!*end)
                        break;
                s = end + 1;
        }
        return result;
}

int engine_process_exec(const struct engine_proc_opts *o, struct us_error **err)
{
        const struct us_oci_process *p = o->p;
        char path[4096];
        int r;

        if (!p->args || !p->args[0])
                return us_error_msg(err, EINVAL, "process.args is empty");
        r = find_executable(p, path, sizeof(path));
        if (r < 0)
                return us_errorf(err, -r, "exec \"%s\"", p->args[0]);
        if (p->no_new_privileges && (r = load_seccomp(o, err)) < 0)
                return r;
        /* Nothing but 0/1/2 crosses into the user process. */
        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
                for (int fd = 3; fd < 65536; fd++) {
                        int fl = fcntl(fd, F_GETFD);
                        if (fl >= 0 && !(fl & FD_CLOEXEC))
                                (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
                }
        }
        char *empty_env[] = {NULL};
        execve(path, p->args, p->env ? p->env : empty_env);
        return us_errorf(err, errno, "exec \"%s\"", p->args[0]);
}

int engine_setup_stdio(const struct us_stdio *s, int devnull, struct us_error **err)
{
        int src[3] = {s ? s->in : -1, s ? s->out : -1, s ? s->err : -1};
        int tmp[3];
        /* Move the sources out of 0..2 first: they may overlap the targets. */
        for (int i = 0; i < 3; i++) {
                int from = src[i] >= 0 ? src[i] : devnull;
                if (from < 0)
                        return us_error_msg(err, EBADF, "no /dev/null for stdio");
                tmp[i] = fcntl(from, F_DUPFD_CLOEXEC, 3);
                if (tmp[i] < 0)
                        return us_errorf(err, errno, "dup stdio fd %d", from);
        }
        for (int i = 0; i < 3; i++) {
                if (dup2(tmp[i], i) < 0)
                        return us_errorf(err, errno, "dup2 onto fd %d", i);
                us_close(tmp[i]);
        }
        return 0;
}

void engine_child_reset_signals(void)
{
        /* Ignored signals stay ignored across execve: a caller that ignores
         * SIGPIPE must not pass that on to the container. */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void)signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

void engine_close_fds_except(const int *keep, size_t n)
{
        /* Close early what the child inherited from the caller (other
         * containers' stdio, sockets): close-on-exec alone would keep them
         * open until the user process starts. */
        unsigned int from = 3;
        for (;;) {
                unsigned int next = ~0U;
                for (size_t i = 0; i < n; i++)
                        if (keep[i] >= (int)from && (unsigned int)keep[i] < next)
                                next = (unsigned int)keep[i];
                if (next > from &&
                    syscall(SYS_close_range, from, next == ~0U ? ~0U : next - 1, 0) < 0)
                        return; /* old kernel: close-on-exec still applies */
                if (next == ~0U)
                        return;
                from = next + 1;
        }
}
