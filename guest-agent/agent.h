/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * unishim-agent: PID 1 of a sandbox VM. Serves unishim.agent.v1.Agent
 * (proto/agent/agent.proto) over ttrpc on the virtio-serial port
 * "unishim.agent" and runs the pod's containers with libunishim's engine.
 *
 * Everything that arrives from the host is hostile input: the validation
 * helpers below are pure functions (unit-tested and fuzzed); the handlers
 * (agent-service.c) call them before touching anything.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/engine.h"
#include "base/error.h"
#include "base/id.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"
#include "agent/agent-contract.h"
#include "agent/agent.pb-c.h"

#define AGENT_RUN_DIR          "/run/unishim"
#define AGENT_BUNDLE_DIR       AGENT_RUN_DIR "/bundles"
#define AGENT_MAX_ID           US_ID_MAX /* container and exec ids */
#define AGENT_MAX_CONTAINERS   256
#define AGENT_MAX_EXECS        256         /* per container, live or undrained */
#define AGENT_MAX_WAITERS      16          /* WaitProcess calls pending per process */
#define AGENT_STREAM_MAX       (1u << 20)  /* buffered bytes per output stream */
#define AGENT_READ_MAX         (64u << 10) /* ReadStream answer cap */
#define AGENT_STDIN_MAX        (1u << 20)  /* WriteStdin payload */
#define AGENT_OOM_QUEUE        64
#define AGENT_OOM_WAITERS      4
#define AGENT_MAX_STORAGES     16
#define AGENT_MAX_OPTIONS      32
#define AGENT_MAX_INTERFACES   16
#define AGENT_MAX_ADDRESSES    64 /* per interface */
#define AGENT_MAX_ROUTES       256
#define AGENT_MAX_PATH         4096
#define AGENT_MAX_SYSCTLS      128
#define AGENT_MAX_SYSCTL_NAME  255
#define AGENT_MAX_SYSCTL_VALUE 4096

/* ---- validation (agent-validate.c) ---- */

/* Container/exec ids: [A-Za-z0-9][A-Za-z0-9_.-]{0,254}. */
int agent_validate_id(const char *what, const char *id, struct us_error **err);
/* An absolute, normalized guest path strictly under AGENT_RUN_DIR: no "."/".."
 * or empty components, no trailing '/', at most AGENT_MAX_PATH bytes. */
int agent_validate_run_path(const char *what, const char *path, struct us_error **err);
/* Shared-fs tags and 9p/virtiofs sources: [A-Za-z0-9_.-]{1,36}. */
int agent_validate_tag(const char *tag, struct us_error **err);
/* "aa:bb:cc:dd:ee:ff" -> 6 bytes. */
int agent_parse_mac(const char *s, uint8_t mac[6], struct us_error **err);
/* Interface names: [A-Za-z0-9_.-]{1,15}, not "." or "..". */
int agent_validate_ifname(const char *name, struct us_error **err);
/* A pod-local dir (CreateContainerRequest local_dirs): a name of
 * [A-Za-z0-9_.-]{1,GUEST_MAX_LOCAL_DIR_NAME}, not "." or "..", and a mode
 * of permission bits only (<= 07777). */
int agent_validate_local_dir(const char *name, uint32_t mode, struct us_error **err);
/* RFC 1123 host name label: [A-Za-z0-9-.]{1,64}. */
int agent_validate_hostname(const char *name, struct us_error **err);
/* A pod sysctl the guest applies for all its containers: a name in the
 * pod's network or IPC namespace ("net.*", "fs.mqueue.*", the SysV IPC
 * limits), in dotted form without empty, "." or ".." parts, and a value of
 * at most AGENT_MAX_SYSCTL_VALUE printable bytes. */
int agent_validate_sysctl(const char *name, const char *value, struct us_error **err);
/* Parses address (family 4 or 6) into buf (4 or 16 bytes); *ret_family is
 * AF_INET or AF_INET6. prefix_len must fit the family (pass -1 to skip). */
int agent_parse_ip(uint32_t family, const char *address, int prefix_len, uint8_t buf[16],
                   int *ret_family, struct us_error **err);
/* "10.0.0.0/8", "fd00::/64"; empty = default route (prefix 0) of family. */
int agent_parse_cidr(uint32_t family, const char *cidr, uint8_t buf[16], unsigned *ret_prefix,
                     int *ret_family, struct us_error **err);

/* Decodes and validates one Agent request payload for method (the name after
 * the service, e.g. "CreateContainer"): protobuf, ids, paths, sizes, counts.
 * No side effects. Returns 0, -ENOSYS for an unknown method, or a negative
 * errno with *err. Used by the handlers' shared prologue and the fuzzer. */
int agent_request_check(const char *method, const uint8_t *payload, size_t len,
                        struct us_error **err);
/* The message type and the check of method's request: 0, or -ENOSYS for an
 * unknown method (nothing is written then). */
int agent_request_find(const char *method, const ProtobufCMessageDescriptor **ret_desc,
                       us_ttrpc_check_fn *ret_check);
/* Same, keeping the unpacked message: *ret is owned by the caller (free with
 * protobuf_c_message_free_unpacked(*ret, NULL)). */
int agent_request_decode(const char *method, const uint8_t *payload, size_t len,
                         ProtobufCMessage **ret, struct us_error **err);
/* A handler's request, unpacked and validated through the same table: the
 * message (owned by the caller), or NULL when call has been failed with
 * INVALID_ARGUMENT and the reason (call is freed then). */
void *agent_call_decode(struct us_ttrpc_call *call, const uint8_t *payload, size_t len);

/* ---- after a restore from a VM template (agent-restore.c) ---- */

#define AGENT_RESTORE_ENTROPY_MIN 32
#define AGENT_RESTORE_ENTROPY_MAX 512

/* The Restore method: reseeds the RNG, sets the clock, answers boot_id. */
void agent_h_restore(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud);

/* ---- output stream buffers (agent-stream.c) ---- */

/* A bounded byte queue filled from a non-blocking fd (pipe read end or pty
 * master). When full, the stream stops reading: the writer in the guest
 * blocks (back-pressure) until the host reads. */
struct agent_stream {
        int fd; /* owned; -1 once closed */
        uint8_t *buf;
        size_t head; /* first unread byte */
        size_t len;  /* bytes buffered from head */
        size_t cap;
        size_t max; /* AGENT_STREAM_MAX unless a test sets less */
        bool eof;   /* fd gave EOF (or EIO: pty slave closed); fd is closed */
        bool eof_reported;
        struct us_loop_source *src; /* NULL when not watched */
        bool paused;                /* full: watch removed until drained */
        struct us_ttrpc_call *waiter;
        uint32_t waiter_max;
        void (*on_change)(struct agent_stream *s, void *userdata);
        void *userdata;
};

/* fd may be -1: the stream is at EOF from the start. Takes fd. */
void agent_stream_init(struct agent_stream *s, int fd);
/* Reads from fd until EAGAIN, full or EOF. Returns bytes read (>= 0) or a
 * negative errno on a real error (the stream is then at EOF). */
ssize_t agent_stream_fill(struct agent_stream *s);
/* Copies up to max buffered bytes into *ret (malloc'ed; NULL when 0). */
int agent_stream_take(struct agent_stream *s, size_t max, uint8_t **ret, size_t *ret_len);
/* Data buffered or at EOF: a ReadStream can be answered now. */
bool agent_stream_ready(const struct agent_stream *s);
/* Watches fd in loop; on_change(s, userdata) runs after data or EOF arrive. */
int agent_stream_watch(struct agent_stream *s, struct us_loop *loop,
                       void (*on_change)(struct agent_stream *s, void *userdata), void *userdata,
                       struct us_error **err);
/* Re-arms reading after a take freed space. */
void agent_stream_resume(struct agent_stream *s, struct us_loop *loop);
/* Answers the pending ReadStream, if any, when ready. */
void agent_stream_answer(struct agent_stream *s, struct us_loop *loop);
/* Fails the waiter, removes the watch, closes fd, frees the buffer. */
void agent_stream_release(struct agent_stream *s);

/* ---- stdin of a process (agent-stdin.c) ---- */

/* What the host writes into a process's stdin (its pipe, or the pty
 * master), never blocking the loop: a write the process does not take at
 * once waits (its bytes copied) until the fd is writable, and CloseStdin
 * closes the fd only after every byte accepted before it went in. */
struct agent_stdin;

/* A waiting write is over: r 0 when all of its len bytes went in, or a
 * negative errno (-ECANCELED: the process was released first). */
typedef void (*agent_stdin_done_fn)(struct agent_stdin *s, int r, size_t len, void *userdata);

struct agent_stdin {
        int fd;   /* owned, non-blocking; -1 once closed */
        bool pty; /* a terminal: its EOF is ^D, written after the data */
        bool closing;
        uint8_t *buf; /* accepted, not yet written */
        size_t len, off;
        size_t write_len;           /* the waiting write's length (done's len) */
        struct us_loop_source *src; /* EPOLLOUT while bytes wait */
        agent_stdin_done_fn done;   /* the waiting write's */
        void *userdata;
};

/* fd may be -1 (no stdin). Takes fd. */
void agent_stdin_init(struct agent_stdin *s, int fd, bool pty);
/* Writes data into the process. 1: all of it went in at once. 0: the rest
 * waits for the process to read; done(s, r, len, userdata) runs from the
 * loop once it all went in or failed. Negative errno at once: -EBADF stdin
 * is closed (or closing), -EBUSY a write waits already, else the write's
 * own error (the fd is then closed). */
int agent_stdin_write(struct agent_stdin *s, struct us_loop *loop, const uint8_t *data, size_t len,
                      agent_stdin_done_fn done, void *userdata);
/* Closes stdin once everything accepted before went in (after ^D for a
 * terminal). */
void agent_stdin_close(struct agent_stdin *s, struct us_loop *loop);
/* The process is gone: closes the fd, a waiting write gets -ECANCELED. */
void agent_stdin_release(struct agent_stdin *s);

/* ---- network (agent-net.c) ---- */

/* Sets lo up. */
int agent_net_lo_up(struct us_error **err);
/* Applies an UpdateNetworkRequest (already validated). */
int agent_net_update(const Unishim__Agent__V1__UpdateNetworkRequest *req, struct us_error **err);

/* ---- mounts (agent-mount.c) ---- */

/* PID 1, first of all: leaves the initramfs (the kernel's rootfs, which
 * pivot_root cannot move, so containers could only get an escapable
 * MS_MOVE + chroot) for a read-only tmpfs holding the mount points of
 * agent_mount_early, moved onto / and chrooted into as switch_root(8) does.
 * The engine's pivot_root then works for every container. *ret_initramfs is
 * an fd of the initramfs root, owned by the caller: load the modules through
 * it, then agent_free_initramfs(). On failure the root is unchanged or
 * half-switched: the caller must not run containers (PID 1 powers off). */
int agent_leave_initramfs(int *ret_initramfs, struct us_error **err);
/* Removes everything in the initramfs (fd from agent_leave_initramfs; stays
 * the caller's), as switch_root(8) does, so its memory goes back to the
 * guest; files still open or mapped (the running agent) go when they are
 * closed. *ret_freed: bytes freed now, as the initramfs's statfs counts
 * them (0 where it counts nothing: ramfs). */
int agent_free_initramfs(int initramfs, uint64_t *ret_freed, struct us_error **err);
/* The early mounts of PID 1: /proc, /sys, /dev, /dev/pts, /dev/shm, /run,
 * /sys/fs/cgroup (cgroup2), /tmp. */
int agent_mount_early(struct us_error **err);
/* Mounts one validated storage. */
int agent_mount_storage(const Unishim__Agent__V1__Storage *st, struct us_error **err);
/* Makes the validated pod-local dir name in the directory base_fd (the
 * agent's: GUEST_POD_LOCAL_DIR) with uid, gid and mode, unless a directory
 * of that name is there already (another container of the pod made it:
 * left as it is). Anything else of that name is an error. */
int agent_local_dir_make(int base_fd, const char *name, uint32_t mode, uint32_t uid, uint32_t gid,
                         struct us_error **err);

/* ---- a container's rootfs on a 9p share (agent-overlay.c) ---- */

/* QEMU's 9p server (7.2 with the fix of CVE-2023-2861) cannot make a fifo
 * or a socket, so a rootfs on 9p is run through an overlay in the guest:
 * lower the 9p rootfs, upper and work in a tmpfs of the container's own.
 * The container's rootfs writes live in guest memory then, not in the
 * host's snapshot (docs/vmm.md, "The 9p share as built"). */

/* Whether a rootfs on a filesystem of type fstype (as mounted: "9p",
 * "virtiofs") gets the overlay: 9p only (virtio-fs makes fifos and sockets
 * itself). */
bool agent_rootfs_wants_overlay(const char *fstype);
/* The type of the mount path is on, from /proc/self/mountinfo (statfs will
 * not do: 9p answers with the type of the host's filesystem). *ret_fstype
 * is malloc'ed, the caller's. */
int agent_path_fstype(const char *path, char **ret_fstype, struct us_error **err);
/* overlay's mount options for the three absolute paths into buf (size
 * bytes, NUL included), each ',', ':' and '\' escaped. -ENAMETOOLONG when
 * they do not fit. */
int agent_overlay_options(const char *lower, const char *upper, const char *work, char *buf,
                          size_t size, struct us_error **err);
/* Mounts the overlay of lower under dir (an existing directory private to
 * the agent, the container's bundle dir): a tmpfs on dir/rw holding upper
 * and work, the overlay on dir/rootfs, whose path goes to *ret_rootfs
 * (malloc'ed, the caller's). On failure nothing of it is left under dir. */
int agent_rootfs_overlay(const char *lower, const char *dir, char **ret_rootfs,
                         struct us_error **err);
/* For a rootfs the host sent: agent_rootfs_overlay when it is on 9p, else
 * *ret_rootfs = NULL (run rootfs as it is) and nothing is made. */
int agent_rootfs_prepare(const char *rootfs, const char *dir, char **ret_rootfs,
                         struct us_error **err);
/* Unmounts (detached) and removes what agent_rootfs_overlay made under dir,
 * its writes with it; what is not there is skipped: 0 for a dir without
 * it. */
int agent_rootfs_overlay_remove(const char *dir, struct us_error **err);

/* ---- the pod's shared PID namespace (agent-pidns.c) ---- */

/* Starts the init of a new PID namespace for the pod's containers to join
 * (/proc/PID/ns/pid): a child of the caller, confined (empty root, no
 * capabilities, uid nobody) before this returns; it reaps orphans until
 * SIGKILL. *ret_pid: the caller reaps it. */
int agent_pidns_spawn(pid_t *ret_pid, struct us_error **err);

/* ---- the service (agent-service.c) ---- */

struct agent;

struct agent_options {
        bool debug;
        const char *cgroup_root; /* NULL = /sys/fs/cgroup */
};

int agent_new(struct us_loop *loop, const struct agent_options *opts, struct agent **ret,
              struct us_error **err);
struct agent *agent_free(struct agent *a);
/* Serves a connected fd (the virtio-serial port). */
int agent_serve_fd(struct agent *a, int fd, struct us_error **err);
/* The same, with on_close(userdata) when the host side of fd goes away. */
int agent_serve_fd_notify(struct agent *a, int fd, void (*on_close)(void *userdata), void *userdata,
                          struct us_error **err);
/* Reaps every exited child (call on SIGCHLD). */
void agent_reap(struct agent *a);
/* Kills and removes every container (Shutdown). */
void agent_kill_all(struct agent *a);
