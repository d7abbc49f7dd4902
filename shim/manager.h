/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The two short-lived commands containerd runs: `start` (find or launch the
 * serving shim of the task's group and print its address) and `delete`
 * (clean up after a shim that died).
 */

#include "base/error.h"
#include "shim.h"

/* Where containerd 1.6 looks for shim sockets (hard-coded there). */
#define SHIM_SOCKET_DIR "/run/containerd/s"

/* Computes "/run/containerd/s/<sha256(address/namespace/group)>" into buf. */
int shim_socket_path(const char *address, const char *namespace, const char *group, char *buf,
                     size_t size, struct us_error **err);

/* `start`: prints the address on stdout. In the forked serving child it
 * returns 1 with *ret_listen_fd set (the caller then serves); in the parent
 * it returns 0 after printing. */
int shim_manager_start(const struct shim_args *args, int *ret_listen_fd, char **ret_socket_path,
                       struct us_error **err);

/* `delete`: writes a DeleteResponse to stdout. containerd runs it whenever
 * a task's connection closes, also after a normal Delete: the backends'
 * cleanup (shim_backends_cleanup_dead) runs for the pod's own task, and
 * for another only when the pod's shim no longer listens. */
int shim_manager_delete(const struct shim_args *args, struct us_error **err);
