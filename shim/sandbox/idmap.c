/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "idmap.h"

_Static_assert((unsigned long long)SANDBOX_IDMAP_BASE +
                               (unsigned long long)SANDBOX_IDMAP_SLOTS * SANDBOX_IDMAP_SIZE <=
                       0x80000000ull,
               "every range is below 2^31");

void sandbox_idmap_init(struct sandbox_idmap *m)
{
        *m = (struct sandbox_idmap){.lock_fd = -1, .userns_fd = -1};
}

uid_t sandbox_idmap_slot_base(unsigned slot)
{
        return (uid_t)(SANDBOX_IDMAP_BASE + slot * SANDBOX_IDMAP_SIZE);
}

int sandbox_idmap_slot_parse(const char *text, size_t len, unsigned *ret, struct us_error **err)
{
        unsigned v = 0;
        size_t i = 0;
        for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
                v = v * 10 + (unsigned)(text[i] - '0');
                if (v >= SANDBOX_IDMAP_SLOTS)
                        return us_error_msg(err, EINVAL, "uid slot is not below %u",
                                            SANDBOX_IDMAP_SLOTS);
        }
        if (i == 0 || (i + 1 < len) || (i + 1 == len && text[i] != '\n') ||
            (i > 1 && text[0] == '0'))
                return us_error_msg(err, EINVAL, "uid slot is not a decimal number");
        *ret = v;
        return 0;
}

static int open_dir(const char *dir, bool create, struct us_error **err)
{
        if (create) {
                int r = us_mkdir_p(dir, 0700, err);
                if (r < 0)
                        return r;
        }
        int fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open %s", dir);
        return fd;
}

/* Locks dir_fd/name, created if missing. 1: locked, and still the file of
 * that name (not one unlinked by its last holder meanwhile); 0: someone
 * holds it. */
static int lock_slot(int dir_fd, const char *name, int *ret_fd, struct us_error **err)
{
        for (;;) {
                _cleanup_close_ int fd =
                        openat(dir_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return us_errorf(err, errno, "open uid slot %s", name);
                if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                        if (errno == EWOULDBLOCK)
                                return 0;
                        return us_errorf(err, errno, "lock uid slot %s", name);
                }
                struct stat held, named;
                if (fstat(fd, &held) < 0)
                        return us_errorf(err, errno, "stat uid slot %s", name);
                if (fstatat(dir_fd, name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
                    held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
                        *ret_fd = TAKE_FD(fd);
                        return 1;
                }
                /* Its holder removed it between our open and our lock. */
        }
}

int sandbox_idmap_userns(uid_t base, unsigned count, int *ret_fd, struct us_error **err)
{
        int ready[2], done[2];
        if (pipe2(ready, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pipe");
        if (pipe2(done, O_CLOEXEC) < 0) {
                int r = us_errorf(err, errno, "pipe");
                us_close(ready[0]);
                us_close(ready[1]);
                return r;
        }
        pid_t pid = fork();
        if (pid < 0) {
                int r = us_errorf(err, errno, "fork");
                us_close(ready[0]);
                us_close(ready[1]);
                us_close(done[0]);
                us_close(done[1]);
                return r;
        }
        if (pid == 0) {
                /* Only holds the namespace until the parent has its fd. */
                us_close(ready[0]);
                us_close(done[1]);
                char c = unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
                (void)!write(ready[1], &c, 1);
                while (read(done[0], &c, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        us_close(ready[1]);
        us_close(done[0]);
        int r = 0;
        char c = 'n';
        ssize_t n;
        while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR)
                ;
        us_close(ready[0]);
        if (n != 1 || c != 'y')
                r = us_error_msg(err, EPERM, "create a user namespace");
        char path[64], map[64];
        int fd = -1;
        snprintf(map, sizeof(map), "0 %u %u\n", (unsigned)base, count);
        static const char *const maps[] = {"uid_map", "gid_map"};
        for (size_t i = 0; r == 0 && i < US_ELEMENTSOF(maps); i++) {
                snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, maps[i]);
                _cleanup_close_ int mfd = open(path, O_WRONLY | O_CLOEXEC);
                if (mfd < 0 || write(mfd, map, strlen(map)) != (ssize_t)strlen(map))
                        r = us_errorf(err, errno, "write %s", path);
        }
        if (r == 0) {
                snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        r = us_errorf(err, errno, "open %s", path);
        }
        us_close(done[1]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        if (r < 0)
                return us_error_wrap(err, r, "user namespace for uids %u..%u", (unsigned)base,
                                     (unsigned)base + count - 1);
        *ret_fd = fd;
        return 0;
}

static int record_slot(const char *state_dir, unsigned slot, struct us_error **err)
{
        char path[PATH_MAX], text[16];
        if (snprintf(path, sizeof(path), "%s/%s", state_dir, SANDBOX_IDMAP_SLOT_FILE) >=
            (int)sizeof(path))
                return us_error_msg(err, ENAMETOOLONG, "state dir %s", state_dir);
        int len = snprintf(text, sizeof(text), "%u\n", slot);
        _cleanup_close_ int fd =
                open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || us_write_all(fd, text, (size_t)len) < 0)
                return us_errorf(err, errno, "write %s", path);
        return 0;
}

int sandbox_idmap_acquire(struct sandbox_idmap *m, const char *dir, const char *state_dir,
                          struct us_error **err)
{
        sandbox_idmap_init(m);
        if (!dir)
                dir = SANDBOX_IDMAP_DIR;
        _cleanup_close_ int dfd = open_dir(dir, true, err);
        if (dfd < 0)
                return dfd;
        int lock_fd = -1, r = 0;
        unsigned slot = 0;
        for (; slot < SANDBOX_IDMAP_SLOTS; slot++) {
                char name[16];
                snprintf(name, sizeof(name), "%u", slot);
                r = lock_slot(dfd, name, &lock_fd, err);
                if (r != 0)
                        break;
        }
        if (r < 0)
                return r;
        if (slot == SANDBOX_IDMAP_SLOTS)
                return us_error_msg(err, EAGAIN, "all %u uid ranges are in use",
                                    SANDBOX_IDMAP_SLOTS);
        m->slot = slot;
        m->base = sandbox_idmap_slot_base(slot);
        m->lock_fd = lock_fd;
        r = sandbox_idmap_userns(m->base, SANDBOX_IDMAP_SIZE, &m->userns_fd, err);
        if (r >= 0 && state_dir)
                r = record_slot(state_dir, slot, err);
        if (r < 0) {
                sandbox_idmap_release(m, dir);
                return r;
        }
        return 0;
}

void sandbox_idmap_release(struct sandbox_idmap *m, const char *dir)
{
        m->userns_fd = us_close(m->userns_fd);
        if (m->lock_fd < 0)
                return;
        /* Removed while locked: a pod that opened it meanwhile sees that its
         * lock is on a file no longer named so, and opens it again. */
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%u", dir ? dir : SANDBOX_IDMAP_DIR, m->slot);
        (void)unlink(path);
        m->lock_fd = us_close(m->lock_fd);
}

int sandbox_idmap_cleanup_dead(const char *dir, const char *state_dir, struct us_error **err)
{
        if (!dir)
                dir = SANDBOX_IDMAP_DIR;
        char path[PATH_MAX], text[16];
        if (snprintf(path, sizeof(path), "%s/%s", state_dir, SANDBOX_IDMAP_SLOT_FILE) >=
            (int)sizeof(path))
                return us_error_msg(err, ENAMETOOLONG, "state dir %s", state_dir);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : us_errorf(err, errno, "open %s", path);
        ssize_t n = read(fd, text, sizeof(text));
        if (n < 0)
                return us_errorf(err, errno, "read %s", path);
        struct sandbox_idmap m;
        sandbox_idmap_init(&m);
        int r = sandbox_idmap_slot_parse(text, (size_t)n, &m.slot, err);
        if (r < 0)
                return us_error_wrap(err, r, "%s", path);
        _cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? 0 : us_errorf(err, errno, "open %s", dir);
        char name[16];
        snprintf(name, sizeof(name), "%u", m.slot);
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0; /* given back already */
        r = lock_slot(dfd, name, &m.lock_fd, err);
        if (r <= 0)
                return r; /* another pod's now: it removes it */
        sandbox_idmap_release(&m, dir);
        return 0;
}
