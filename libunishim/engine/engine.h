/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The namespaced container engine: runs an OCI bundle as a container on this
 * kernel. Used by the shim for container-kind pods and by the guest agent
 * inside sandbox VMs.
 *
 * Process model: the caller (the shim) is a child subreaper and owns reaping:
 * it calls waitpid(-1) when SIGCHLD arrives and matches pids itself. The
 * engine only waits for helper processes it forks and whose pids it knows.
 * The container's init and exec'd processes may be grandchildren of the
 * caller (forked by an intermediate to enter pid namespaces) and are reaped
 * by the caller as subreaper.
 *
 * Nothing here logs; all failures come back as negative errno + us_error.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup/cgroup.h"
#include "base/error.h"
#include "oci/oci-spec.h"

struct us_container;

/* File descriptors to place on 0/1/2 of a container process. -1 means
 * /dev/null. Not owned: the engine duplicates them. */
struct us_stdio {
        int in;
        int out;
        int err;
};

struct us_container_config {
        const char *id;           /* container id, [A-Za-z0-9_.-]{1,255} style */
        const char *bundle;       /* absolute path of the bundle directory */
        const char *rootfs;       /* absolute host path of the rootfs (already mounted) */
        struct us_oci_spec *spec; /* moved into the container on success */
        /* The config.json text spec was parsed from (VM kinds hand it on to
         * their guest: the validated bytes, not a second read of the file);
         * NULL when the caller has none. */
        const char *spec_json;
        size_t spec_json_len;
        struct us_stdio stdio;   /* used when !spec->process->terminal */
        const char *cgroup_root; /* cgroupfs mount root; NULL = "/sys/fs/cgroup" */
        /* The caller's event loop, for us_container_kill to hold a signal
         * that init would lose (signal-hold.h); NULL: every signal is sent
         * as it is (a caller that holds them itself). Not owned: it must
         * outlive the container. */
        struct us_loop *loop;
};

/*
 * Creates the container up to the OCI "created" state: the init process
 * exists in its (new or joined) namespaces and cgroup, with mounts, devices,
 * masked/readonly paths, sysctls, hostname and rootfs pivoted, and waits to
 * execve the user process. createRuntime/createContainer hooks have run.
 * With process.terminal, *ret_pty_master is the pty master (owned by the
 * caller) whose slave is the process's stdio; else -1.
 * On failure nothing is left behind (process killed and reaped, cgroup
 * removed, fds closed) and cfg->spec still belongs to the caller.
 *
 * Details the caller can rely on:
 * - The cgroup is linux.cgroupsPath, or "/unishim/<id>" when unset, under
 *   cfg->cgroup_root.
 * - The spec needs a mount namespace (new or joined by path).
 * - Error texts read from the outside in, e.g.
 *   "create container t1: mount proc on /proc: Operation not permitted".
 * - The pid ns joined by path (a pod's sandbox) or created after joining a
 *   user ns goes through an intermediate process that the engine reaps;
 *   init is then the caller's grandchild and is reparented to it.
 * - All helper processes (hooks, intermediates) are waited for by pid,
 *   synchronously, inside these calls; the caller's waitpid(-1) must not
 *   run concurrently (single-threaded event loop).
 */
int us_container_create(const struct us_container_config *cfg, struct us_container **ret,
                        int *ret_pty_master, struct us_error **err);

/* The init pid as seen from the caller's pid namespace. */
pid_t us_container_pid(const struct us_container *c);
const struct us_oci_spec *us_container_spec(const struct us_container *c);
struct us_cgroup *us_container_cgroup(struct us_container *c);

/* Lets init execve the user process (startContainer hooks run in the
 * container first; poststart hooks after). An execve failure (no such
 * binary) is reported here as an error naming the binary, and the process
 * exits. Returns when execve has happened (or failed): init's exit (127 on
 * failure) is the caller's to reap. A failing poststart hook is ignored
 * (the spec asks for a warning only; the library does not log). */
int us_container_start(struct us_container *c, struct us_error **err);

/* Runs process p in the running container's namespaces and cgroup, with the
 * container's seccomp/caps/apparmor unless p says otherwise. Returns the pid
 * and, with p->terminal, a pty master (owned by the caller); else
 * *ret_pty_master is -1. Returns after the process has exec'd; an exec
 * failure is an error and its process is already reaped. The pid's exit is
 * the caller's to reap. Do not exec into a paused container: the new
 * process would be frozen before it execs. */
int us_container_exec(struct us_container *c, const struct us_oci_process *p,
                      const struct us_stdio *stdio, pid_t *ret_pid, int *ret_pty_master,
                      struct us_error **err);

/* Signals init, or with all every process in the container's cgroup.
 * With a loop in the config, a signal to the started init that the kernel
 * would drop (init is PID 1 of its PID namespace and has not set its
 * handler yet) is held and sent from the loop once it has
 * (us_signal_send): 0 then means held. */
int us_container_kill(struct us_container *c, int sig, bool all, struct us_error **err);

int us_container_pause(struct us_container *c, struct us_error **err);
int us_container_resume(struct us_container *c, struct us_error **err);
int us_container_update(struct us_container *c, const struct us_oci_resources *res,
                        struct us_error **err);

/* Does ahead of time, in an idle moment of the caller, the work the first
 * container create under cgroup_parent would otherwise do itself: creates
 * cgroup_parent with every controller enabled for its children, and (on
 * cgroup v2) loads the device program of CRI's default rules into the
 * process's cache. Creates behave the same with or without it. cgroup_root
 * NULL means "/sys/fs/cgroup". Returns 0 or a negative errno with *err set. */
int us_container_prewarm(const char *cgroup_root, const char *cgroup_parent, struct us_error **err);

/* To be called after init has been reaped: kills what is left in the
 * cgroup, runs poststop hooks, removes the cgroup. Idempotent. */
int us_container_destroy(struct us_container *c, struct us_error **err);
struct us_container *us_container_free(struct us_container *c);

/* Cleanup for `containerd-shim-unishim-v2 delete` after a dead shim: loads
 * <bundle>/config.json, kills everything in the container's cgroup and
 * removes it. Missing pieces are not errors. */
int us_container_cleanup_bundle(const char *bundle, const char *id, struct us_error **err);
