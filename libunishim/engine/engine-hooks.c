/* SPDX-License-Identifier: Apache-2.0 */
/* OCI hooks: run with the state JSON on stdin, bounded by their timeout. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/loop.h"

#define HOOK_OUTPUT_MAX 2048

bool engine_hooks_any(const struct us_oci_hook_list *l)
{
        return l && l->n_hooks > 0;
}

static void json_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                switch (*p) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                default:
                        if (*p < 0x20)
                                fprintf(f, "\\u%04x", *p);
                        else
                                fputc(*p, f);
                }
        }
        fputc('"', f);
}

char *engine_state_json(const char *id, const char *status, pid_t pid, const char *bundle,
                        const struct us_oci_spec *spec)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        fputs("{\"ociVersion\":", f);
        json_string(f, spec && spec->oci_version ? spec->oci_version : "1.0.2");
        fputs(",\"id\":", f);
        json_string(f, id);
        fputs(",\"status\":", f);
        json_string(f, status);
        if (pid > 0)
                fprintf(f, ",\"pid\":%d", (int)pid);
        fputs(",\"bundle\":", f);
        json_string(f, bundle ? bundle : "");
        if (spec && spec->n_annotations > 0) {
                fputs(",\"annotations\":{", f);
                for (size_t i = 0; i < spec->n_annotations; i++) {
                        if (i)
                                fputc(',', f);
                        json_string(f, spec->annotations[i].key);
                        fputc(':', f);
                        json_string(f,
                                    spec->annotations[i].value ? spec->annotations[i].value : "");
                }
                fputc('}', f);
        }
        fputc('}', f);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static int run_hook(const struct us_oci_hook *h, const char *state, struct us_error **err)
{
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pipe");
        if (pipe2(out, O_CLOEXEC) < 0) {
                int r = us_errorf(err, errno, "pipe");
                us_close(in[0]);
                us_close(in[1]);
                return r;
        }
        pid_t pid = fork();
        if (pid < 0) {
                int r = us_errorf(err, errno, "fork");
                us_close(in[0]);
                us_close(in[1]);
                us_close(out[0]);
                us_close(out[1]);
                return r;
        }
        if (pid == 0) {
                if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
                        _exit(126);
                char *argv_default[] = {h->path, NULL};
                char *env_default[] = {NULL};
                engine_child_reset_signals();
                execve(h->path, h->args && h->args[0] ? h->args : argv_default,
                       h->env ? h->env : env_default);
                dprintf(2, "exec %s: %s", h->path, strerror(errno));
                _exit(127);
        }
        us_close(in[0]);
        us_close(out[1]);
        _cleanup_close_ int win = in[1];
        _cleanup_close_ int rout = out[0];
        _cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

        /* The state is small; a hook that does not read stdin must not block
         * us, so write what fits without blocking. */
        (void)fcntl(win, F_SETFL, O_NONBLOCK);
        (void)!write(win, state, strlen(state));
        win = us_close(win);
        (void)fcntl(rout, F_SETFL, O_NONBLOCK);

        char output[HOOK_OUTPUT_MAX];
        size_t olen = 0;
        long long deadline = h->has_timeout && h->timeout > 0
                                     ? us_monotonic_ms() + (long long)h->timeout * 1000
                                     : -1;
        bool timed_out = false, exited = false;
        while (!exited) {
                struct pollfd pfd[2] = {{.fd = rout, .events = POLLIN},
                                        {.fd = pidfd, .events = POLLIN}};
                int timeout = -1;
                if (deadline >= 0) {
                        long long left = deadline - us_monotonic_ms();
                        if (left <= 0) {
                                timed_out = true;
                                break;
                        }
                        timeout = (int)left;
                }
                int n = poll(pfd, pidfd >= 0 ? 2 : 1, timeout);
                if (n < 0 && errno != EINTR)
                        break;
                if (n <= 0)
                        continue;
                if (pfd[0].revents) {
                        char tmp[512];
                        ssize_t k = read(rout, tmp, sizeof(tmp));
                        if (k > 0) {
                                size_t c = (size_t)k;
                                if (c > sizeof(output) - 1 - olen)
                                        c = sizeof(output) - 1 - olen;
                                memcpy(output + olen, tmp, c);
                                olen += c;
                        } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                                if (pidfd < 0)
                                        break; /* EOF: wait below */
                                rout = us_close(rout);
                        }
                }
                if (pidfd >= 0 && pfd[1].revents)
                        exited = true;
                if (rout < 0 && pidfd < 0)
                        break;
        }
        if (timed_out)
                (void)kill(pid, SIGKILL);
        int status = engine_wait_pid(pid);
        if (rout >= 0) {
                ssize_t k;
                while (olen < sizeof(output) - 1 &&
                       (k = read(rout, output + olen, sizeof(output) - 1 - olen)) > 0)
                        olen += (size_t)k;
        }
        output[olen] = 0;
        while (olen > 0 && (output[olen - 1] == '\n' || output[olen - 1] == ' '))
                output[--olen] = 0;
        if (timed_out)
                return us_error_msg(err, ETIMEDOUT, "hook %s timed out after %ds", h->path,
                                    h->timeout);
        if (status < 0)
                return us_errorf(err, -status, "wait for hook %s", h->path);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (WIFSIGNALED(status))
                return us_error_msg(err, ECANCELED, "hook %s killed by signal %d%s%s", h->path,
                                    WTERMSIG(status), olen ? ": " : "", output);
        return us_error_msg(err, ECANCELED, "hook %s exited with %d%s%s", h->path,
                            WEXITSTATUS(status), olen ? ": " : "", output);
}

int engine_hooks_run(const struct us_oci_hook_list *l, const char *kind, const char *state_json,
                     struct us_error **err)
{
        if (!l)
                return 0;
        for (size_t i = 0; i < l->n_hooks; i++) {
                int r = run_hook(&l->hooks[i], state_json ? state_json : "{}", err);
                if (r < 0)
                        return us_error_wrap(err, r, "%s hook", kind);
        }
        return 0;
}
