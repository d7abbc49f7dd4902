/* SPDX-License-Identifier: Apache-2.0 */
/* A container's rootfs on a 9p share: an overlay in the guest over it, its
 * writes in a tmpfs of the container's own. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"

#define RW_DIR     "rw"
#define UPPER_DIR  RW_DIR "/upper"
#define WORK_DIR   RW_DIR "/work"
#define ROOTFS_DIR "rootfs"

/* The longest data mount(2) copies (a page). */
#define OPTIONS_MAX 4096

bool agent_rootfs_wants_overlay(const char *fstype)
{
        return !strcmp(fstype, "9p");
}

/* The mount id of fd, from its fdinfo. */
static int fd_mount_id(int fd, int *ret_id, struct us_error **err)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return us_errorf(err, errno, "open %s", path);
        char line[256];
        while (fgets(line, sizeof(line), f)) {
                int id;
                if (sscanf(line, "mnt_id: %d", &id) == 1) {
                        *ret_id = id;
                        return 0;
                }
        }
        return us_error_msg(err, ENOENT, "%s has no mnt_id", path);
}

int agent_path_fstype(const char *path, char **ret_fstype, struct us_error **err)
{
        /* Not statfs: 9p answers with the type of the server's filesystem. */
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open %s", path);
        int id;
        int r = fd_mount_id(fd, &id, err);
        if (r < 0)
                return r;
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return us_errorf(err, errno, "open /proc/self/mountinfo");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                int lid;
                if (sscanf(line, "%d ", &lid) != 1 || lid != id)
                        continue;
                /* "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER" */
                const char *sep = strstr(line, " - ");
                size_t n = sep ? strcspn(sep + 3, " \n") : 0;
                if (n == 0)
                        return us_error_msg(err, EINVAL, "mount %d of %s: no type in mountinfo", id,
                                            path);
                char *type = strndup(sep + 3, n);
                if (!type)
                        return us_errorf(err, ENOMEM, "mount type of %s", path);
                *ret_fstype = type;
                return 0;
        }
        return us_error_msg(err, ENOENT, "mount %d of %s is not in mountinfo", id, path);
}

int agent_overlay_options(const char *lower, const char *upper, const char *work, char *buf,
                          size_t size, struct us_error **err)
{
        const char *const keys[] = {"lowerdir=", ",upperdir=", ",workdir="};
        const char *const paths[] = {lower, upper, work};
        size_t n = 0;
        for (size_t i = 0; i < US_ELEMENTSOF(keys); i++) {
                for (const char *k = keys[i]; *k; k++) {
                        if (n + 1 >= size)
                                goto too_long;
                        buf[n++] = *k;
                }
                /* overlay splits its options at ',' and lowerdir at ':', and
                 * takes '\' as the escape of either (and of itself). */
                for (const char *p = paths[i]; *p; p++) {
                        bool esc = *p == ',' || *p == ':' || *p == '\\';
                        if (n + 1 + esc >= size)
                                goto too_long;
                        if (esc)
                                buf[n++] = '\\';
                        buf[n++] = *p;
                }
        }
        buf[n] = '\0';
        return 0;
too_long:
        return us_error_msg(err, ENAMETOOLONG, "overlay options for lower %s are too long", lower);
}

/* Each step ignores what is already undone, so this also clears a half-made
 * setup, and goes on after a failed step. MNT_DETACH: a mount namespace
 * still holding the overlay (a process of the container not reaped yet)
 * keeps its view; the memory goes with the last user. */
int agent_rootfs_overlay_remove(const char *dir, struct us_error **err)
{
        const char *const mounts[] = {ROOTFS_DIR, RW_DIR};
        int r = 0;
        for (size_t i = 0; i < US_ELEMENTSOF(mounts); i++) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, mounts[i]) < 0) {
                        r = r < 0 ? r : us_errorf(err, ENOMEM, "overlay of %s", dir);
                        continue;
                }
                if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
                    errno != ENOENT && r == 0)
                        r = us_errorf(err, errno, "unmount %s", path);
                /* Under the tmpfs, upper and work went with its unmount. */
                if (rmdir(path) < 0 && errno != ENOENT && r == 0)
                        r = us_errorf(err, errno, "remove %s", path);
        }
        return r;
}

static int overlay_mount(const char *lower, const char *dir, char **ret_rootfs,
                         struct us_error **err)
{
        _cleanup_free_ char *rw = NULL, *upper = NULL, *work = NULL, *rootfs = NULL;
        if (asprintf(&rw, "%s/" RW_DIR, dir) < 0 || asprintf(&upper, "%s/" UPPER_DIR, dir) < 0 ||
            asprintf(&work, "%s/" WORK_DIR, dir) < 0 ||
            asprintf(&rootfs, "%s/" ROOTFS_DIR, dir) < 0)
                return us_errorf(err, ENOMEM, "overlay of %s", lower);
        char options[OPTIONS_MAX];
        int r = agent_overlay_options(lower, upper, work, options, sizeof(options), err);
        if (r < 0)
                return r;
        struct stat st;
        if (stat(lower, &st) < 0)
                return us_errorf(err, errno, "stat %s", lower);
        if (!S_ISDIR(st.st_mode))
                return us_error_msg(err, ENOTDIR, "%s is not a directory", lower);
        if (mkdir(rw, 0700) < 0)
                return us_errorf(err, errno, "mkdir %s", rw);
        /* A tmpfs per container: its writes are freed at once with it, and
         * its pages are charged to the writer's memory cgroup, so the
         * container's memory limit bounds them. */
        if (mount("tmpfs", rw, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0)
                return us_errorf(err, errno, "mount tmpfs on %s", rw);
        /* The merged root is the upper dir's: the image's owner and mode. */
        if (mkdir(upper, 0700) < 0 || chown(upper, st.st_uid, st.st_gid) < 0 ||
            chmod(upper, st.st_mode & 07777) < 0)
                return us_errorf(err, errno, "make %s", upper);
        if (mkdir(work, 0700) < 0)
                return us_errorf(err, errno, "mkdir %s", work);
        if (mkdir(rootfs, 0755) < 0)
                return us_errorf(err, errno, "mkdir %s", rootfs);
        if (mount("overlay", rootfs, "overlay", 0, options) < 0)
                return us_errorf(err, errno, "mount overlay on %s (lower %s)", rootfs, lower);
        *ret_rootfs = TAKE_PTR(rootfs);
        return 0;
}

int agent_rootfs_overlay(const char *lower, const char *dir, char **ret_rootfs,
                         struct us_error **err)
{
        int r = overlay_mount(lower, dir, ret_rootfs, err);
        if (r < 0)
                (void)agent_rootfs_overlay_remove(dir, NULL);
        return r;
}

int agent_rootfs_prepare(const char *rootfs, const char *dir, char **ret_rootfs,
                         struct us_error **err)
{
        _cleanup_free_ char *fstype = NULL;
        int r = agent_path_fstype(rootfs, &fstype, err);
        if (r < 0)
                return r;
        if (!agent_rootfs_wants_overlay(fstype)) {
                *ret_rootfs = NULL;
                return 0;
        }
        return agent_rootfs_overlay(rootfs, dir, ret_rootfs, err);
}
