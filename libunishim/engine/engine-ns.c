/* SPDX-License-Identifier: Apache-2.0 */
/* Namespaces: which to create with clone/unshare, which to join by setns,
 * and user namespace id maps. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* setns order: user first (gives the capabilities in the joined user ns
 * needed for the others), mnt last (its root replaces ours). */
static const int ns_order[] = {CLONE_NEWUSER, CLONE_NEWIPC,  CLONE_NEWUTS,    CLONE_NEWNET,
                               CLONE_NEWPID,  CLONE_NEWTIME, CLONE_NEWCGROUP, CLONE_NEWNS};

const char *engine_ns_name(int type)
{
        switch (type) {
        case CLONE_NEWUSER:
                return "user";
        case CLONE_NEWIPC:
                return "ipc";
        case CLONE_NEWUTS:
                return "uts";
        case CLONE_NEWNET:
                return "net";
        case CLONE_NEWPID:
                return "pid";
        case CLONE_NEWTIME:
                return "time";
        case CLONE_NEWCGROUP:
                return "cgroup";
        case CLONE_NEWNS:
                return "mnt";
        default:
                return "unknown";
        }
}

void engine_ns_plan_close(struct engine_ns_plan *plan)
{
        for (size_t i = 0; i < plan->n_join; i++)
                plan->join[i].fd = us_close(plan->join[i].fd);
        plan->n_join = 0;
}

int engine_ns_plan_from_spec(const struct us_oci_spec *spec, struct engine_ns_plan *plan,
                             struct us_error **err)
{
        const struct us_oci_linux *l = &spec->linux_;
        int create = 0;
        struct engine_ns_plan p = {0};

        for (size_t k = 0; k < US_ELEMENTSOF(ns_order); k++) {
                int type = ns_order[k];
                const struct us_oci_namespace *found = NULL;
                for (size_t i = 0; i < l->n_namespaces; i++) {
                        if (l->namespaces[i].type != type)
                                continue;
                        if (found) {
                                engine_ns_plan_close(&p);
                                return us_error_msg(err, EINVAL, "duplicate %s namespace",
                                                    engine_ns_name(type));
                        }
                        found = &l->namespaces[i];
                }
                if (!found)
                        continue;
                if (!found->path || !*found->path) {
                        create |= type;
                        continue;
                }
                int fd = open(found->path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        int r = us_errorf(err, errno, "open %s namespace %s", engine_ns_name(type),
                                          found->path);
                        engine_ns_plan_close(&p);
                        return r;
                }
                p.join[p.n_join].type = type;
                p.join[p.n_join].fd = fd;
                p.n_join++;
        }
        for (size_t i = 0; i < l->n_namespaces; i++) {
                bool known = false;
                for (size_t k = 0; k < US_ELEMENTSOF(ns_order); k++)
                        known |= l->namespaces[i].type == ns_order[k];
                if (!known) {
                        engine_ns_plan_close(&p);
                        return us_error_msg(err, EINVAL, "unknown namespace type %#x",
                                            (unsigned)l->namespaces[i].type);
                }
        }

        bool join_user = false, join_pid = false;
        for (size_t i = 0; i < p.n_join; i++) {
                join_user |= p.join[i].type == CLONE_NEWUSER;
                join_pid |= p.join[i].type == CLONE_NEWPID;
        }
        if ((create & CLONE_NEWUSER) && join_user) {
                engine_ns_plan_close(&p);
                return us_error_msg(err, EINVAL, "user namespace both created and joined");
        }

        /* Creating everything with clone() is the fast path: no extra
         * process. Joined namespaces are entered with setns() in the child.
         * That fails when a new user ns is created together with joined
         * namespaces owned by our user ns (no capabilities there any more),
         * or when a user ns is joined (the new namespaces must be owned by
         * it): then join first and unshare() afterwards. */
        if (join_user || ((create & CLONE_NEWUSER) && p.n_join > 0)) {
                p.clone_flags = 0;
                p.unshare_flags = create;
        } else {
                p.clone_flags = create;
                p.unshare_flags = 0;
        }
        /* A new cgroup namespace is rooted where its creator is: only once
         * the child is in the container's cgroup (after "go"), as runc. */
        if (p.clone_flags & CLONE_NEWCGROUP) {
                p.clone_flags &= ~CLONE_NEWCGROUP;
                p.unshare_flags |= CLONE_NEWCGROUP;
        }
        p.need_fork = join_pid || (p.unshare_flags & (CLONE_NEWPID | CLONE_NEWTIME));
        p.new_userns = create & CLONE_NEWUSER;
        *plan = p;
        return 0;
}

int engine_ns_join(const struct engine_ns_plan *plan, struct us_error **err)
{
        for (size_t i = 0; i < plan->n_join; i++) {
                if (setns(plan->join[i].fd, plan->join[i].type) < 0)
                        return us_errorf(err, errno, "join %s namespace",
                                         engine_ns_name(plan->join[i].type));
        }
        return 0;
}

static int format_map(const struct us_oci_id_mapping *m, size_t n, char **ret)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -errno;
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%u %u %u\n", m[i].container_id, m[i].host_id, m[i].size);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

static int write_proc_file(pid_t pid, const char *name, const char *data, struct us_error **err)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open %s", path);
        size_t len = strlen(data);
        ssize_t n = write(fd, data, len);
        if (n < 0)
                return us_errorf(err, errno, "write %s", path);
        if ((size_t)n != len)
                return us_error_msg(err, EIO, "write %s: short write", path);
        return 0;
}

int engine_write_id_maps(pid_t pid, const struct us_oci_spec *spec, struct us_error **err)
{
        const struct us_oci_linux *l = &spec->linux_;
        _cleanup_free_ char *uids = NULL;
        _cleanup_free_ char *gids = NULL;
        int r;

        if (l->n_uid_mappings == 0 || l->n_gid_mappings == 0)
                return us_error_msg(err, EINVAL,
                                    "a new user namespace needs uidMappings and gidMappings");
        if ((r = format_map(l->uid_mappings, l->n_uid_mappings, &uids)) < 0 ||
            (r = format_map(l->gid_mappings, l->n_gid_mappings, &gids)) < 0)
                return us_errorf(err, r, "format id maps");
        /* "setgroups deny" is only required when an unprivileged writer maps
         * gids; as root it would needlessly break additionalGids. */
        if (geteuid() != 0 && (r = write_proc_file(pid, "setgroups", "deny", err)) < 0)
                return r;
        if ((r = write_proc_file(pid, "uid_map", uids, err)) < 0)
                return r;
        return write_proc_file(pid, "gid_map", gids, err);
}
