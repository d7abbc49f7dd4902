/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Internals of the container engine (engine-*.c). Not installed, not used
 * outside libunishim except by tests/unit/test-engine.c.
 *
 * Process model of us_container_create():
 *
 *   caller ──clone(CLONE_NEW*)──> child ──(fork, only to enter a pid ns
 *                                          created by unshare or joined by
 *                                          setns)──> init
 *
 * Parent and child talk over one SOCK_SEQPACKET socketpair (both ends
 * SOCK_CLOEXEC). The child end closes on the user process's execve, so the
 * parent reading EOF after "start" means the exec succeeded; an ENGINE_MSG_ERROR
 * carries the child's us_error text instead.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "signal-hold.h"

enum engine_msg_type {
        ENGINE_MSG_GO = 1,  /* parent -> child: proceed (cgroup entered, pid known) */
        ENGINE_MSG_ACK,     /* parent -> child: request done; text = state JSON for hooks */
        ENGINE_MSG_START,   /* parent -> child: execve the user process */
        ENGINE_MSG_ERROR,   /* child -> parent: code = errno, text = message */
        ENGINE_MSG_USERMAP, /* child -> parent: write uid_map/gid_map of the sender */
        ENGINE_MSG_PID,     /* intermediate -> parent: value = pid of the forked process */
        ENGINE_MSG_HOOKS,   /* child -> parent: run createRuntime hooks, reply ACK */
        ENGINE_MSG_PTY,     /* child -> parent: pty master attached (SCM_RIGHTS) */
        ENGINE_MSG_READY,   /* child -> parent: created, waiting for START */
};

#define ENGINE_MSG_TEXT_MAX 65536

struct engine_msg {
        uint32_t type;
        int32_t code;
        int64_t value;
        char text[ENGINE_MSG_TEXT_MAX]; /* NUL-terminated (possibly truncated) */
};

/* engine-sync.c */
int engine_send(int fd, enum engine_msg_type type, int code, int64_t value, const char *text,
                int pass_fd);
/* Returns 1 with *m filled (and *ret_fd set to a received fd or -1 when
 * ret_fd), 0 on EOF, negative errno on error. m is large: heap-allocate. */
int engine_recv(int fd, struct engine_msg *m, int *ret_fd);
/* Waits for one message of the given type (or EOF / error). Returns 0 on the
 * expected message, -EPIPE on EOF, negative errno otherwise. */
int engine_expect(int fd, enum engine_msg_type type, struct engine_msg *m);
/* In a child: sends err (or strerror(-r)) to the parent and _exit(127)s. */
_Noreturn void engine_child_fail(int sync_fd, int r, struct us_error **errp);

/* Namespaces resolved from the spec (or from a running init for exec). */
#define ENGINE_MAX_NS 8
struct engine_ns {
        int type; /* CLONE_NEW* */
        int fd;   /* >= 0: join by setns */
};

struct engine_ns_plan {
        struct engine_ns join[ENGINE_MAX_NS]; /* in setns order: user first, mnt last */
        size_t n_join;
        int clone_flags;   /* passed to clone */
        int unshare_flags; /* unshare()d in the child after joining */
        bool need_fork;    /* a pid (or time) ns only applies to children */
        bool new_userns;   /* ENGINE_MSG_USERMAP round trip needed */
};

/* Everything the container's init needs, prepared by the parent. */
struct engine_init_ctx {
        const struct us_container_config *cfg;
        const struct us_oci_spec *spec;
        struct us_cgroup *cg;
        struct engine_ns_plan ns;
        int sync_fd;
        bool apparmor_enabled;
        int cap_last_cap;
        bool has_ipc_ns, has_net_ns, has_uts_ns; /* new or joined */
        bool in_userns;                          /* new or joined */
};

/* engine-init.c: runs in the cloned child. Never returns. */
_Noreturn void engine_init_main(struct engine_init_ctx *ctx);

/* engine-mount.c: in the child, in its mount namespace. */
int engine_rootfs_prepare(struct engine_init_ctx *ctx, struct us_error **err);
int engine_rootfs_pivot(const char *rootfs, struct us_error **err);
int engine_rootfs_finalize(struct engine_init_ctx *ctx, struct us_error **err);

/* engine-process.c */
struct engine_proc_opts {
        const struct us_oci_process *p;
        const struct us_oci_seccomp *seccomp;
        bool apparmor_enabled;
        int cap_last_cap;
        bool in_userns;
};
int engine_read_cap_last_cap(void);
bool engine_apparmor_enabled(void);
int engine_set_rlimits(const struct us_oci_process *p, struct us_error **err);
int engine_set_oom_score_adj(const struct us_oci_process *p, struct us_error **err);
/* apparmor, nnp, seccomp (if !nnp), user + caps, cwd, umask. */
int engine_process_prepare(const struct engine_proc_opts *o, struct us_error **err);
/* seccomp (if nnp), cloexec on all fds > 2, execve. Returns only on failure. */
int engine_process_exec(const struct engine_proc_opts *o, struct us_error **err);
/* In a child: default signal dispositions, empty mask. */
void engine_child_reset_signals(void);
/* In a child: closes every fd >= 3 not in keep. */
void engine_close_fds_except(const int *keep, size_t n);
/* stdio: dup the given fds (or /dev/null, opened before) onto 0/1/2. */
int engine_setup_stdio(const struct us_stdio *s, int devnull, struct us_error **err);

/* engine-pty.c: in the child, in the container's mount ns. Creates a pty in
 * the container's devpts, makes its slave the controlling terminal and 0/1/2,
 * sends the master to the parent. */
int engine_pty_setup(int sync_fd, const struct us_oci_process *p, struct us_error **err);
/* In the parent: receives an fd passed with ENGINE_MSG_PTY. */

/* engine-hooks.c */
int engine_hooks_run(const struct us_oci_hook_list *l, const char *kind, const char *state_json,
                     struct us_error **err);
bool engine_hooks_any(const struct us_oci_hook_list *l);
char *engine_state_json(const char *id, const char *status, pid_t pid, const char *bundle,
                        const struct us_oci_spec *spec);

/* engine-ns.c */
int engine_ns_plan_from_spec(const struct us_oci_spec *spec, struct engine_ns_plan *plan,
                             struct us_error **err);
void engine_ns_plan_close(struct engine_ns_plan *plan);
/* In a child: setns into every plan->join entry. */
int engine_ns_join(const struct engine_ns_plan *plan, struct us_error **err);
const char *engine_ns_name(int type);
int engine_write_id_maps(pid_t pid, const struct us_oci_spec *spec, struct us_error **err);

/* Waits for a known child (EINTR-safe). Returns its wait status or -errno. */
int engine_wait_pid(pid_t pid);
/* Raw clone without a new stack: fork semantics plus namespace flags. With
 * cgroup_fd >= 0 (us_cgroup_clone_fd) the child starts in that cgroup
 * (clone3 CLONE_INTO_CGROUP, Linux 5.7+) and *ret_in_cgroup says so in the
 * parent; where clone3 fails (older kernel, a seccomp filter hiding it) it
 * is a plain clone, *ret_in_cgroup false, and the caller enters the cgroup
 * as before. */
pid_t engine_clone(int flags, int cgroup_fd, bool *ret_in_cgroup);

struct us_container {
        char *id;
        char *bundle;
        char *rootfs;
        struct us_oci_spec *spec;
        struct us_cgroup *cg;
        pid_t pid;
        int sync_fd; /* until start */
        bool started;
        bool destroyed;
        bool apparmor_enabled;
        int cap_last_cap;
        struct us_loop *loop;       /* the config's: NULL, signals go as they are */
        struct us_signal_hold hold; /* what init would lose before its handler */
};
