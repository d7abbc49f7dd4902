/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Filesystem helpers for the shim, the engine and the guest agent.
 *
 * The *_at helpers are for trees that someone else can write while we work
 * on them (a VM pod's share, which the guest writes through virtio-fs): they
 * go by file descriptor, never follow a symlink, and never cross into a
 * mount, so a rename or a symlink planted at the wrong moment can make them
 * fail, never make them touch a file outside the tree.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* mkdir -p: creates path and its missing parents with mode. Existing
 * directories are fine. */
int us_mkdir_p(const char *path, mode_t mode, struct us_error **err);

/* openat2() of path beneath dir_fd that fails (ELOOP, EXDEV) rather than
 * follow a symlink, a magic link, ".." out of dir_fd or a mount crossing.
 * flags get O_CLOEXEC; mode is used with O_CREAT only. Returns the fd or a
 * negative errno (no message: callers name what they opened). */
int us_openat_beneath(int dir_fd, const char *path, int flags, mode_t mode);

/* openat2() of path as if dir_fd were "/": symlinks and ".." resolve
 * inside it (a container's rootfs: nothing in the image leads out of it),
 * magic links are refused. Leading '/' are skipped; "" is dir_fd itself.
 * flags get O_CLOEXEC. Returns the fd or a negative errno. */
int us_openat_in_root(int dir_fd, const char *path, int flags);

/* Removes dir_fd/name (one path component) and, if it is a directory,
 * everything below it: iteratively (any depth, a bounded number of fds),
 * without following a symlink (a symlink is unlinked, not its target) and
 * without crossing into a mount point (a mount point and the directories
 * above it are left in place, and the call fails with -EBUSY naming it).
 * Callers unmount what they mounted first. A tree changed under the walk
 * (a directory moved away) ends it with -ESTALE; what was removed stays
 * removed. A missing name is success. */
int us_rm_tree_at(int dir_fd, const char *name, struct us_error **err);

/* Which step of us_mount_attach() failed, for the caller's message. */
enum us_mount_step {
        US_MOUNT_STEP_ATTRS, /* mount_setattr(): attributes or propagation */
        US_MOUNT_STEP_MOVE,  /* move_mount(): attaching the tree */
};

/* Sets attr_set (MOUNT_ATTR_*) and propagation on tree, a detached tree from
 * open_tree(OPEN_TREE_CLONE): on every mount of it when recursive, else on
 * its top mount only; then attaches it at dir_fd/name (an existing mount
 * point). propagation is MS_PRIVATE, MS_SLAVE or MS_SHARED, never left out:
 * a clone of a shared mount is a peer of its source until told otherwise,
 * so mounts would travel between the host and the tree. tree stays the
 * caller's. Returns 0, or a negative errno (-EINVAL for another
 * propagation, before anything is done) with *ret_step (optional) saying
 * which step failed; no message: the caller names what it attaches. */
int us_mount_attach(int tree, bool recursive, uint64_t attr_set, uint64_t propagation, int dir_fd,
                    const char *name, enum us_mount_step *ret_step);

/* Writes all len bytes of buf to fd (a blocking fd), retrying short writes
 * and EINTR. 0 or -errno. */
int us_write_all(int fd, const void *buf, size_t len);

/* Writes as much of buf as a non-blocking fd takes now, retrying EINTR:
 * the bytes written (less than len when it would block), or -errno. A
 * socket is sent to with MSG_NOSIGNAL: a gone peer is -EPIPE, not SIGPIPE. */
ssize_t us_write_some(int fd, const void *buf, size_t len, bool is_socket);

/* The most fds one us_sendmsg_fds / us_recvmsg_fds passes. */
#define US_FDS_MAX 4

struct iovec;

/* sendmsg() of iov with n_fds (<= US_FDS_MAX; 0: none) fds as SCM_RIGHTS,
 * MSG_NOSIGNAL added to flags, EINTR retried. The bytes sent, or -errno
 * (-EINVAL for too many fds). */
ssize_t us_sendmsg_fds(int sock, const struct iovec *iov, size_t n_iov, const int *fds,
                       size_t n_fds, int flags);

/* recvmsg() into iov, MSG_CMSG_CLOEXEC added to flags, EINTR retried. The
 * first max_fds (<= US_FDS_MAX) fds that came go to fds (*ret_n_fds of
 * them), any more are closed. The bytes received (0: EOF), or -errno with
 * no fd left open. */
ssize_t us_recvmsg_fds(int sock, struct iovec *iov, size_t n_iov, int *fds, size_t max_fds,
                       size_t *ret_n_fds, int flags);
