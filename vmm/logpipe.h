/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A capped log fed through a pipe: a child process (QEMU's serial console,
 * QEMU's or virtiofsd's stderr) writes into the pipe, and the host drains it
 * on its event loop into <dir>/<name>, never blocking. When <name> would
 * grow past cap/2 bytes it is renamed to <name>.1 (replacing the older one)
 * and a fresh <name> starts: at most `cap` bytes are ever on disk, and the
 * newest output (at least the last cap/2 bytes) is always kept; read
 * <name>.1 then <name> for it in order.
 *
 * Why: the guest controls what its console (and, through device errors,
 * QEMU's and virtiofsd's stderr) says, and the state dir lives on the host's
 * /run tmpfs. A plain file written by the child would let a guest fill /run.
 *
 * Files are opened relative to the directory fd (openat, O_NOFOLLOW,
 * O_CLOEXEC, mode 0600) under the fixed name the caller gives, never under a
 * path built from guest data. A write that fails (ENOSPC, ...) drops that
 * output and the draining goes on: the writer is never stalled by the disk.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct us_loop;
struct vmm_logpipe;

/* The smallest cap: two files of 2 KiB. */
#define VMM_LOGPIPE_MIN_CAP 4096u

/* Creates the pipe (both ends O_CLOEXEC | O_NONBLOCK) and <dir_fd>/<name>
 * (truncated; a stale <name>.1 is removed), and, if loop is not NULL,
 * watches the read end on it.
 *   dir_fd: the directory; dup'ed, the caller keeps its own.
 *   name:   a plain file name (no '/'), at most 64 bytes.
 *   cap:    bytes on disk at most, <name> and <name>.1 together
 *           (>= VMM_LOGPIPE_MIN_CAP).
 *   loop:   must outlive the logpipe (free the logpipe first).
 * Returns 0, *ret (owned by the caller: vmm_logpipe_free) and *ret_write_fd
 * (the write end, > 2, owned by the caller: hand it to the writer and close
 * it, or EOF never comes). -EINVAL for a bad name or cap, else the errno of
 * the failed call. */
int vmm_logpipe_new(struct us_loop *loop, int dir_fd, const char *name, size_t cap,
                    int *ret_write_fd, struct vmm_logpipe **ret, struct us_error **err);

/* Reads what the pipe holds now into the file, without blocking (what the
 * loop does on a wakeup, with a larger budget of 4 MiB: more than a pipe
 * holds, so a writer that has exited leaves nothing behind, while one that
 * still writes cannot keep the caller here). Call it once the writer has
 * exited, before reading the file. On EOF (every write end closed) the read
 * end is closed and the loop source removed. Returns true at EOF. NULL is
 * fine (returns true). */
bool vmm_logpipe_drain(struct vmm_logpipe *lp);

/* True once the writers are gone and everything was drained. */
bool vmm_logpipe_eof(const struct vmm_logpipe *lp);

/* Counters: bytes that reached the file, bytes dropped because a write or an
 * open failed, rotations done. */
uint64_t vmm_logpipe_written(const struct vmm_logpipe *lp);
uint64_t vmm_logpipe_dropped(const struct vmm_logpipe *lp);
uint64_t vmm_logpipe_rotations(const struct vmm_logpipe *lp);

/* The newest output, <name>.1 then <name>, at most size - 1 bytes, into buf
 * (NUL-terminated; the log may itself contain NULs). Returns the count. */
size_t vmm_logpipe_tail(const struct vmm_logpipe *lp, char *buf, size_t size);

/* Drains what the pipe holds now (vmm_logpipe_drain), stops watching it and
 * closes everything; the files stay. Accepts NULL; returns NULL. */
struct vmm_logpipe *vmm_logpipe_free(struct vmm_logpipe *lp);
