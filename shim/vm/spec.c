/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What of the VM's container spec a vm pod's guest gets (spec.h).
 */
#include "spec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/cleanup.h"
#include "policy/policy.h"

enum mount_kind {
        MOUNT_VOLUME,  /* the pod author's: the guest cannot see it */
        MOUNT_KERNEL,  /* a kernel file system: the guest has its own */
        MOUNT_GIVEN,   /* what it holds reaches the guest through cloud-init */
        MOUNT_IGNORED, /* every container has it; the guest does without */
};

/* path equals want, but for trailing slashes. */
static bool path_is(const char *path, const char *want)
{
        size_t n = strlen(want);
        if (strncmp(path, want, n) != 0)
                return false;
        return strspn(path + n, "/") == strlen(path + n);
}

static bool is_bind(const struct us_oci_mount *m)
{
        if (m->type && strcmp(m->type, "bind") == 0)
                return true;
        if (m->type && strcmp(m->type, "none") != 0)
                return false;
        for (char **o = m->options; o && *o; o++)
                if (strcmp(*o, "bind") == 0 || strcmp(*o, "rbind") == 0)
                        return true;
        return false;
}

/* Where containerd's default spec and its CRI put the kernel's file
 * systems (a bind there is a volume, though). */
static const char *const kernel_mounts[] = {
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/run",
};

/* containerd's CRI binds its sandbox's shm at every container's /dev/shm:
 * .../sandboxes/<sandbox id>/shm. */
static bool is_sandbox_shm(const struct us_oci_spec *spec, const struct us_oci_mount *m)
{
        const char *id = us_oci_spec_annotation(spec, CRI_SANDBOX_ID);
        if (!id || !*id || !m->source || !path_is(m->destination, "/dev/shm"))
                return false;
        char tail[256];
        if (snprintf(tail, sizeof(tail), "/sandboxes/%s/shm", id) >= (int)sizeof(tail))
                return false;
        size_t n = strlen(m->source), t = strlen(tail);
        return n >= t && strcmp(m->source + n - t, tail) == 0;
}

/* The kubelet's termination message file: bound from
 * <kubelet root>/pods/<pod uid>/containers/<container name>/<file> at the
 * container's terminationMessagePath (/dev/termination-log unless the pod
 * says otherwise). */
static bool is_termination_log(const struct us_oci_spec *spec, const struct us_oci_mount *m)
{
        const char *want = us_oci_spec_annotation(spec, VM_SPEC_TERMINATION_MESSAGE_PATH);
        if (path_is(m->destination, "/dev/termination-log") ||
            (want && *want && path_is(m->destination, want)))
                return true;
        const char *uid = us_oci_spec_annotation(spec, CRI_SANDBOX_UID);
        const char *name = us_oci_spec_annotation(spec, CRI_CONTAINER_NAME);
        if (!uid || !*uid || !name || !*name || !m->source)
                return false;
        char dir[512];
        if (snprintf(dir, sizeof(dir), "/pods/%s/containers/%s/", uid, name) >= (int)sizeof(dir))
                return false;
        const char *at = strstr(m->source, dir);
        if (!at)
                return false;
        const char *file = at + strlen(dir);
        return *file && !strchr(file, '/');
}

static enum mount_kind kind_of(const struct us_oci_spec *spec, const struct us_oci_mount *m)
{
        bool bind = is_bind(m);
        for (size_t i = 0; i < US_ELEMENTSOF(kernel_mounts); i++)
                if (path_is(m->destination, kernel_mounts[i]))
                        return !bind || is_sandbox_shm(spec, m) ? MOUNT_KERNEL : MOUNT_VOLUME;
        if (path_is(m->destination, "/etc/hostname") || path_is(m->destination, "/etc/resolv.conf"))
                return MOUNT_GIVEN;
        if (path_is(m->destination, "/etc/hosts") ||
            path_is(m->destination, VM_SPEC_SERVICE_ACCOUNT_DIR) || is_termination_log(spec, m))
                return MOUNT_IGNORED;
        return MOUNT_VOLUME;
}

int vm_spec_check_mounts(const struct us_oci_spec *spec, struct us_error **err)
{
        for (size_t i = 0; i < spec->n_mounts; i++) {
                const struct us_oci_mount *m = &spec->mounts[i];
                if (kind_of(spec, m) != MOUNT_VOLUME)
                        continue;
                bool bind = is_bind(m);
                return us_error_msg(err, ENOTSUP,
                                    "the mount at %s (%s %s) cannot reach the guest: a vm pod's "
                                    "VM boots its own disk and sees no volume of its container; "
                                    "configure the guest through cloud-init "
                                    "(unishim.io/cloud-init-user-data), docs/vm.md",
                                    m->destination, bind ? "from" : "a file system of type",
                                    bind ? (m->source ? m->source : "?")
                                         : (m->type ? m->type : "?"));
        }
        return 0;
}

/* Appends to buf (size bytes, NUL-terminated at *len) what fits. */
__attribute__((format(printf, 4, 5))) static void add(char *buf, size_t size, size_t *len,
                                                      const char *fmt, ...)
{
        if (*len + 1 >= size)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf + *len, size - *len, fmt, ap);
        va_end(ap);
        if (n > 0)
                *len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

size_t vm_spec_note(const struct us_oci_spec *spec, char *buf, size_t size)
{
        size_t len = 0, n_args = 0, n_env = 0;
        const struct us_oci_process *p = spec->process;
        while (p && p->args && p->args[n_args])
                n_args++;
        while (p && p->env && p->env[n_env])
                n_env++;
        buf[0] = '\0';
        /* The command's name only: its args, like the env's values, may be
         * secrets, and the log is read by more people than the pod spec. */
        add(buf, size, &len,
            "unishim: this container is a VM booted from its image's disk: its command (%.64s) "
            "and %zu args, its env (%zu variables)",
            n_args ? p->args[0] : "none", n_args ? n_args - 1 : 0, n_env);
        const char *sep = " and its mounts ";
        for (size_t i = 0; i < spec->n_mounts; i++) {
                if (kind_of(spec, &spec->mounts[i]) != MOUNT_IGNORED)
                        continue;
                add(buf, size, &len, "%s%s", sep, spec->mounts[i].destination);
                sep = ", ";
        }
        add(buf, size, &len,
            " are not run, set or seen in the guest: configure it through cloud-init, "
            "docs/vm.md\n");
        if (len == 0 || buf[len - 1] != '\n') { /* cut: the line still ends */
                len = len + 1 < size ? len : size - 2;
                buf[len++] = '\n';
                buf[len] = '\0';
        }
        return len;
}
