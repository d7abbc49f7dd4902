/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A vm pod's disk (disk.h): found in the image by fd, bound read-only,
 * checked and overlaid by qemu-img running as the pod's QEMU uid.
 */
#include "disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/loop.h"

/* qemu-img on a hostile image: its output is bounded, and so is its time
 * (a crafted qcow2 can make it work; the pod's create waits meanwhile, the
 * shim's loop does not). */
#define QEMU_IMG_OUT_MAX     (256u << 10)
#define QEMU_IMG_ERR_MAX     2048u
#define QEMU_IMG_DEADLINE_MS 60000

static bool has_suffix(const char *name, const char *suffix)
{
        size_t n = strlen(name), s = strlen(suffix);
        return n > s && strcmp(name + n - s, suffix) == 0;
}

static bool disk_name(const char *name)
{
        return has_suffix(name, ".qcow2") || has_suffix(name, ".img") || has_suffix(name, ".raw");
}

/* The disk file (O_PATH), a regular file inside the image. */
static int open_disk_file(int root, const char *path, int *ret_fd, struct us_error **err)
{
        int fd = us_openat_in_root(root, path, O_PATH);
        if (fd < 0)
                return us_errorf(err, -fd, "the image's disk /%s", path);
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                us_close(fd);
                return us_error_msg(err, EINVAL, "the image's disk /%s is not a regular file",
                                    path);
        }
        *ret_fd = fd;
        return 0;
}

/* The one *.qcow2, *.img or *.raw under /disk/ (KubeVirt's containerDisk). */
static int find_disk(int root, char *name, size_t size, int *ret_fd, struct us_error **err)
{
        int dfd = us_openat_in_root(root, VM_DISK_DIR, O_RDONLY | O_DIRECTORY);
        if (dfd < 0)
                return us_errorf(err, -dfd,
                                 "the image has no /" VM_DISK_DIR "/ directory: a vm pod's image "
                                 "carries its disk as /" VM_DISK_DIR
                                 "/<name>.qcow2, .img or .raw (or names it with the "
                                 "unishim.io/disk-path annotation)");
        DIR *d = fdopendir(dfd);
        if (!d) {
                us_close(dfd);
                return us_errorf(err, errno, "read the image's /" VM_DISK_DIR "/");
        }
        char first[256] = "";
        size_t n = 0;
        int r = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                if (!disk_name(e->d_name))
                        continue;
                if (n++ == 0) {
                        snprintf(first, sizeof(first), "%s", e->d_name);
                        continue;
                }
                r = us_error_msg(err, EINVAL,
                                 "the image has more than one disk under /" VM_DISK_DIR
                                 "/ (%s, %s): name the one to boot with the "
                                 "unishim.io/disk-path annotation",
                                 first, e->d_name);
                break;
        }
        closedir(d);
        if (r < 0)
                return r;
        if (n == 0)
                return us_error_msg(err, ENOENT,
                                    "the image has no disk under /" VM_DISK_DIR
                                    "/ (a *.qcow2, *.img or *.raw file)");
        snprintf(name, size, VM_DISK_DIR "/%s", first);
        return open_disk_file(root, name, ret_fd, err);
}

/* Binds the file fd read-only at dir_fd/VM_DISK_BASE, by fd throughout. */
static int bind_base(int fd, int dir_fd, struct us_error **err)
{
        _cleanup_close_ int target = openat(
                dir_fd, VM_DISK_BASE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (target < 0)
                return us_errorf(err, errno, "create the disk's mount point");
        _cleanup_close_ int tree =
                open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        if (tree < 0)
                return us_errorf(err, errno, "clone the image's disk");
        /* Private: nothing mounted over the image on the host follows it. */
        enum us_mount_step step;
        int r = us_mount_attach(tree, false,
                                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                        MOUNT_ATTR_NOEXEC,
                                MS_PRIVATE, dir_fd, VM_DISK_BASE, &step);
        if (r < 0 && step == US_MOUNT_STEP_ATTRS)
                return us_errorf(err, -r, "make the image's disk read-only");
        if (r < 0)
                return us_errorf(err, -r, "mount the image's disk");
        return 0;
}

int vm_disk_release(int dir_fd, struct us_error **err)
{
        /* A file mount point: umount2 by path below our own dir_fd. */
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d/" VM_DISK_BASE, dir_fd);
        if (umount2(path, UMOUNT_NOFOLLOW | MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                return us_errorf(err, errno, "unmount the image's disk");
        return 0;
}

/* Appends what fd has to buf (cap bytes kept, the rest read and dropped).
 * 0 at EOF, 1 for more, -errno. */
static int read_some(int fd, char *buf, size_t cap, size_t *len)
{
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 1 : -errno;
        if (n == 0)
                return 0;
        size_t keep = *len < cap ? cap - *len : 0;
        if (keep > (size_t)n)
                keep = (size_t)n;
        memcpy(buf + *len, tmp, keep);
        *len += keep;
        return 1;
}

/* ---- qemu-img, a child the loop never waits for ---- */

struct vm_disk_prep {
        struct us_loop *loop;
        vm_disk_done_fn done;
        void *userdata;
        int dir_fd;
        uid_t uid;
        gid_t gid;
        char base[4096], overlay[4096];
        struct vm_disk disk;
        bool creating; /* the second run: the overlay */
        /* The running qemu-img. */
        pid_t pid;
        int out_fd, err_fd;
        struct us_loop_source *out_src, *err_src, *deadline;
        char *out;
        size_t out_len;
        char errbuf[QEMU_IMG_ERR_MAX + 1];
        size_t err_len;
        bool timed_out;
};

static void output_close(int *fd, struct us_loop_source **src)
{
        *src = us_loop_source_remove(*src);
        *fd = us_close(*fd);
}

/* Stops reading qemu-img's output, after taking what is there. */
static void outputs_close(struct vm_disk_prep *p)
{
        while (p->out_fd >= 0 && read_some(p->out_fd, p->out, QEMU_IMG_OUT_MAX, &p->out_len) > 0)
                ;
        while (p->err_fd >= 0 && read_some(p->err_fd, p->errbuf, QEMU_IMG_ERR_MAX, &p->err_len) > 0)
                ;
        output_close(&p->out_fd, &p->out_src);
        output_close(&p->err_fd, &p->err_src);
}

static void output_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        struct vm_disk_prep *p = userdata;
        (void)src;
        (void)events;
        bool out = fd == p->out_fd;
        int r = out ? read_some(fd, p->out, QEMU_IMG_OUT_MAX, &p->out_len)
                    : read_some(fd, p->errbuf, QEMU_IMG_ERR_MAX, &p->err_len);
        if (r > 0)
                return;
        /* EOF or a broken pipe: its end comes with the exit. */
        if (out)
                output_close(&p->out_fd, &p->out_src);
        else
                output_close(&p->err_fd, &p->err_src);
}

static void deadline_passed(struct us_loop_source *src, void *userdata)
{
        struct vm_disk_prep *p = userdata;
        (void)src;
        p->deadline = NULL;
        p->timed_out = true;
        /* Its exit, reaped as any, ends the run. */
        (void)kill(p->pid, SIGKILL);
}

/* Starts qemu-img argv as uid:gid without privileges (no capability, no
 * supplementary group, no_new_privs), within QEMU_IMG_DEADLINE_MS. */
static int qemu_img_start(struct vm_disk_prep *p, char *const argv[], struct us_error **err)
{
        int out[2], errp[2];
        if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0)
                return us_errorf(err, errno, "pipe");
        if (pipe2(errp, O_CLOEXEC | O_NONBLOCK) < 0) {
                us_close(out[0]);
                us_close(out[1]);
                return us_errorf(err, errno, "pipe");
        }
        p->out_len = p->err_len = 0;
        p->timed_out = false;
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                us_close(out[0]);
                us_close(out[1]);
                us_close(errp[0]);
                us_close(errp[1]);
                return us_errorf(err, e, "fork qemu-img");
        }
        if (pid == 0) {
                /* (async-signal-safe calls only: the shim may have threads) */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 ||
                    dup2(errp[1], 2) < 0 || setgroups(0, NULL) < 0 ||
                    setresgid(p->gid, p->gid, p->gid) < 0 ||
                    setresuid(p->uid, p->uid, p->uid) < 0 ||
                    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        _exit(126);
                /* The pipes were made non-blocking for us, not for it. */
                (void)fcntl(1, F_SETFL, 0);
                (void)fcntl(2, F_SETFL, 0);
                execv(argv[0], argv);
                _exit(127);
        }
        us_close(out[1]);
        us_close(errp[1]);
        p->pid = pid;
        p->out_fd = out[0];
        p->err_fd = errp[0];
        int r = us_loop_add_fd(p->loop, p->out_fd, EPOLLIN, output_ready, p, &p->out_src, err);
        if (r >= 0)
                r = us_loop_add_fd(p->loop, p->err_fd, EPOLLIN, output_ready, p, &p->err_src, err);
        if (r >= 0)
                r = us_loop_add_timer(p->loop, QEMU_IMG_DEADLINE_MS, deadline_passed, p,
                                      &p->deadline, err);
        if (r < 0) {
                /* Reaped by the caller as any child; p is not waiting for it. */
                (void)kill(pid, SIGKILL);
                p->pid = 0;
                outputs_close(p);
                p->deadline = us_loop_source_remove(p->deadline);
        }
        return r;
}

/* How the run that exited with status went: 0 with its stdout in p->out
 * (NUL-terminated), or qemu-img's own stderr as the message. */
static int qemu_img_result(struct vm_disk_prep *p, const char *verb, int status,
                           struct us_error **err)
{
        if (p->timed_out)
                return us_error_msg(err, ETIMEDOUT, "qemu-img %s took more than %d s", verb,
                                    QEMU_IMG_DEADLINE_MS / 1000);
        char *ebuf = p->errbuf;
        size_t elen = p->err_len;
        ebuf[elen] = '\0';
        /* qemu-img's message is about the pod's file: one line, printable. */
        for (size_t i = 0; i < elen; i++)
                if ((unsigned char)ebuf[i] < 0x20 || ebuf[i] == 0x7f)
                        ebuf[i] = ' ';
        while (elen > 0 && ebuf[elen - 1] == ' ')
                ebuf[--elen] = '\0';
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (WIFEXITED(status) && WEXITSTATUS(status) >= 126)
                        return us_error_msg(err, ENOEXEC, "cannot run %s as uid %u (exit %d)",
                                            VM_DISK_QEMU_IMG, (unsigned)p->uid,
                                            WEXITSTATUS(status));
                return us_error_msg(err, EINVAL, "qemu-img %s: %s", verb, elen ? ebuf : "failed");
        }
        p->out[p->out_len] = '\0';
        return 0;
}

static yajl_val field(yajl_val o, const char *a, const char *b, const char *c)
{
        const char *path[] = {a, b, c, NULL};
        return yajl_tree_get(o, path, yajl_t_any);
}

/* What qemu-img info says of the base, checked. */
static int check_info(const char *json, const char *name, struct vm_disk *d, struct us_error **err)
{
        char ebuf[128];
        yajl_val o = yajl_tree_parse(json, ebuf, sizeof(ebuf));
        if (!o || !YAJL_IS_OBJECT(o)) {
                yajl_tree_free(o);
                return us_error_msg(err, EPROTO, "qemu-img info on /%s: unreadable output", name);
        }
        int r = 0;
        yajl_val fmt = field(o, "format", NULL, NULL);
        yajl_val vsize = field(o, "virtual-size", NULL, NULL);
        const char *f = YAJL_IS_STRING(fmt) ? YAJL_GET_STRING(fmt) : "";
        if (strcmp(f, "qcow2") != 0 && strcmp(f, "raw") != 0)
                r = us_error_msg(err, EINVAL,
                                 "the image's disk /%s is in format \"%.32s\": a vm pod boots "
                                 "qcow2 or raw",
                                 name, f);
        else if (field(o, "backing-filename", NULL, NULL) ||
                 field(o, "full-backing-filename", NULL, NULL))
                r = us_error_msg(err, EPERM,
                                 "the image's disk /%s names a backing file: a vm pod's disk "
                                 "must be self-contained (qemu-img convert it)",
                                 name);
        else if (field(o, "format-specific", "data", "data-file"))
                r = us_error_msg(err, EPERM,
                                 "the image's disk /%s names an external data file: a vm "
                                 "pod's disk must be self-contained",
                                 name);
        else if (YAJL_IS_TRUE(field(o, "encrypted", NULL, NULL)))
                r = us_error_msg(err, EPERM, "the image's disk /%s is encrypted", name);
        else if (!YAJL_IS_INTEGER(vsize) || YAJL_GET_INTEGER(vsize) <= 0)
                r = us_error_msg(err, EPROTO, "qemu-img info on /%s: no virtual size", name);
        if (r == 0) {
                snprintf(d->format, sizeof(d->format), "%s", f);
                d->virtual_size = (uint64_t)YAJL_GET_INTEGER(vsize);
        }
        yajl_tree_free(o);
        return r;
}

/* What is left of a failed preparation: nothing mounted, no files. */
static void undo(int dir_fd)
{
        (void)vm_disk_release(dir_fd, NULL);
        (void)unlinkat(dir_fd, VM_DISK_BASE, 0);
        (void)unlinkat(dir_fd, VM_DISK_OVERLAY, 0);
}

static void prep_end(struct vm_disk_prep *p, int r, struct us_error *err)
{
        if (r < 0)
                undo(p->dir_fd);
        vm_disk_done_fn done = p->done;
        void *userdata = p->userdata;
        struct vm_disk disk = p->disk;
        vm_disk_prep_free(p);
        done(userdata, r, err, r < 0 ? NULL : &disk);
}

/* The overlay: -u with the size, so the base is not opened again, and its
 * format is the one checked, not what its header says later. */
static int start_create(struct vm_disk_prep *p, struct us_error **err)
{
        char size[32];
        snprintf(size, sizeof(size), "%" PRIu64, p->disk.virtual_size);
        char *const create[] = {(char *)VM_DISK_QEMU_IMG,
                                (char *)"create",
                                (char *)"-q",
                                (char *)"-f",
                                (char *)"qcow2",
                                (char *)"-u",
                                (char *)"-F",
                                p->disk.format,
                                (char *)"-b",
                                p->base,
                                p->overlay,
                                size,
                                NULL};
        p->creating = true;
        return qemu_img_start(p, create, err);
}

bool vm_disk_prep_child_exited(struct vm_disk_prep *p, pid_t pid, int status)
{
        if (!p || p->pid <= 0 || pid != p->pid)
                return false;
        p->pid = 0;
        p->deadline = us_loop_source_remove(p->deadline);
        outputs_close(p);
        struct us_error *err = NULL;
        int r;
        if (!p->creating) {
                r = qemu_img_result(p, "info", status, &err);
                if (r < 0)
                        us_error_wrap(&err, r, "the image's disk /%s", p->disk.name);
                else
                        r = check_info(p->out, p->disk.name, &p->disk, &err);
                if (r >= 0)
                        r = start_create(p, &err);
                if (r >= 0)
                        return true; /* the overlay's run is next */
        } else {
                r = qemu_img_result(p, "create", status, &err);
                if (r < 0)
                        us_error_wrap(&err, r, "the pod's overlay on /%s", p->disk.name);
        }
        prep_end(p, r, err);
        return true;
}

struct vm_disk_prep *vm_disk_prep_free(struct vm_disk_prep *p)
{
        if (!p)
                return NULL;
        if (p->pid > 0)
                (void)kill(p->pid, SIGKILL);
        p->deadline = us_loop_source_remove(p->deadline);
        outputs_close(p);
        free(p->out);
        free(p);
        return NULL;
}

int vm_disk_prepare(struct us_loop *loop, const char *rootfs, const char *path, int dir_fd,
                    const char *dir_path, uid_t uid, gid_t gid, vm_disk_done_fn done,
                    void *userdata, struct vm_disk_prep **ret, struct us_error **err)
{
        _cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return us_errorf(err, errno, "open the container's rootfs %s", rootfs);
        struct vm_disk_prep *p = calloc(1, sizeof(*p));
        char *out = malloc(QEMU_IMG_OUT_MAX + 1);
        if (!p || !out) {
                free(p);
                free(out);
                return us_errorf(err, ENOMEM, "prepare the disk");
        }
        *p = (struct vm_disk_prep){.loop = loop,
                                   .done = done,
                                   .userdata = userdata,
                                   .dir_fd = dir_fd,
                                   .uid = uid,
                                   .gid = gid,
                                   .out = out,
                                   .out_fd = -1,
                                   .err_fd = -1};
        _cleanup_close_ int fd = -1;
        int r;
        if (path) {
                snprintf(p->disk.name, sizeof(p->disk.name), "%s", path);
                r = open_disk_file(root, path, &fd, err);
        } else {
                r = find_disk(root, p->disk.name, sizeof(p->disk.name), &fd, err);
        }
        if (r < 0) {
                vm_disk_prep_free(p);
                return r;
        }
        snprintf(p->base, sizeof(p->base), "%s/" VM_DISK_BASE, dir_path);
        snprintf(p->overlay, sizeof(p->overlay), "%s/" VM_DISK_OVERLAY, dir_path);
        /* -U: the base is never written, so no lock is needed to read it. */
        char *const info[] = {(char *)VM_DISK_QEMU_IMG,
                              (char *)"info",
                              (char *)"-U",
                              (char *)"--output=json",
                              (char *)"--",
                              p->base,
                              NULL};
        r = bind_base(fd, dir_fd, err);
        if (r >= 0)
                r = qemu_img_start(p, info, err);
        if (r < 0) {
                undo(dir_fd);
                vm_disk_prep_free(p);
                return r;
        }
        *ret = p;
        return 0;
}
