/* SPDX-License-Identifier: Apache-2.0 */
/* PID 1's mounts and the shared filesystems the host offers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "agent.h"
#include "cleanup.h"

int agent_mkdir_p(const char *path, mode_t mode, struct us_error **err)
{
        char buf[AGENT_MAX_PATH + 1];
        if (strnlen(path, sizeof(buf)) >= sizeof(buf))
                return us_error_msg(err, ENAMETOOLONG, "path too long");
        strcpy(buf, path);
        for (char *p = buf + 1;; p++) {
                if (*p == '/' || *p == '\0') {
                        char c = *p;
                        *p = '\0';
                        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                                return us_errorf(err, errno, "mkdir %s", buf);
                        *p = c;
                        if (!c)
                                break;
                }
        }
        return 0;
}

static const struct {
        const char *source, *target, *fstype;
        unsigned long flags;
        const char *data;
} early_mounts[] = {
        {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
        {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
        {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
        {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
         "newinstance,ptmxmode=0666,mode=620"},
        {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
        {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
        {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
        /* cgroup2 only: the engine handles a pure v2 root, and one hierarchy
         * is the least the guest kernel has to set up. favordynmods (Linux
         * 6.0+; retried without on older kernels): every container create
         * migrates a process and enables controllers, and without it each
         * of those waits for an RCU grace period, ~25 ms apiece under TCG
         * (docs/performance.md); the cost is a slower fork/exit path. */
        {"cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "favordynmods"},
};

int agent_mount_early(struct us_error **err)
{
        for (size_t i = 0; i < US_ELEMENTSOF(early_mounts); i++) {
                int r = agent_mkdir_p(early_mounts[i].target, 0755, err);
                if (r < 0)
                        return r;
                const char *data = early_mounts[i].data;
                int rc = mount(early_mounts[i].source, early_mounts[i].target,
                               early_mounts[i].fstype, early_mounts[i].flags, data);
                if (rc < 0 && errno == EINVAL && data && !strcmp(data, "favordynmods"))
                        rc = mount(early_mounts[i].source, early_mounts[i].target,
                                   early_mounts[i].fstype, early_mounts[i].flags, NULL);
                if (rc < 0 && errno != EBUSY)
                        return us_errorf(err, errno, "mount %s on %s", early_mounts[i].fstype,
                                         early_mounts[i].target);
        }
        (void)symlink("/proc/self/fd", "/dev/fd");
        (void)symlink("pts/ptmx", "/dev/ptmx");
        return agent_mkdir_p(AGENT_BUNDLE_DIR, 0700, err);
}

static const struct {
        const char *name;
        unsigned long flag;
} flag_options[] = {
        {"ro", MS_RDONLY}, {"nosuid", MS_NOSUID}, {"nodev", MS_NODEV}, {"noexec", MS_NOEXEC},
        {"rw", 0},
};

int agent_mount_storage(const Unishim__Agent__V1__Storage *st, struct us_error **err)
{
        unsigned long flags = 0;
        char data[AGENT_MAX_OPTIONS * 258 + 64] = "";
        size_t dlen = 0;
        bool has_trans = false;
        for (size_t i = 0; i < st->n_options; i++) {
                const char *o = st->options[i];
                bool is_flag = false;
                for (size_t j = 0; j < US_ELEMENTSOF(flag_options); j++)
                        if (!strcmp(o, flag_options[j].name)) {
                                flags |= flag_options[j].flag;
                                is_flag = true;
                        }
                if (is_flag)
                        continue;
                if (!strncmp(o, "trans=", 6))
                        has_trans = true;
                dlen += (size_t)snprintf(data + dlen, sizeof(data) - dlen, "%s%s", dlen ? "," : "",
                                         o);
        }
        if (!strcmp(st->fstype, "9p") && !has_trans)
                (void)snprintf(data + dlen, sizeof(data) - dlen,
                               "%strans=virtio,version=9p2000.L,msize=262144", dlen ? "," : "");
        int r = agent_mkdir_p(st->mount_point, 0755, err);
        if (r < 0)
                return r;
        if (mount(st->source, st->mount_point, st->fstype, flags, data[0] ? data : NULL) < 0)
                return us_errorf(err, errno, "mount %s %s on %s", st->fstype, st->source,
                                 st->mount_point);
        return 0;
}
