/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The sandbox VM launcher: QEMU microvm (+ virtiofsd helpers) as direct
 * children of the caller, controlled over QMP. Nothing is daemonized and
 * nothing goes through a shell.
 *
 * Process ownership: the caller (the shim, a subreaper) reaps children with
 * waitpid(-1) and MUST pass every reaped pid to vmm_vm_child_exited(). The
 * functions documented as "waits" below reap this VM's own pids themselves
 * (waitpid on those specific pids only, never -1), and record that, so no
 * pid is waited for twice.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

struct us_cgroup;
struct us_loop;

/* The console log's cap when vmm_vm_config.console_log_max is 0: console.log
 * + console.log.1 hold at most this many bytes, and at least the newest half
 * of it. 1 MiB keeps a whole debug boot (~1.5 KiB with unishim.debug=1, ~100
 * KiB with loglevel=8 initcall_debug) and at least the last ~6000 lines of
 * anything chattier, for 1 MiB of the host's /run per pod. */
#define VMM_CONSOLE_LOG_DEFAULT (1u << 20)
/* qemu.log and each virtiofsd-N.log: the same capped writer, fixed cap. A
 * guest can make both grow (QEMU's error_report() of device errors it
 * provokes, virtiofsd's log of malformed FUSE requests); normally they hold
 * a few lines. */
#define VMM_HELPER_LOG_MAX (1u << 20)

enum vmm_accel {
        VMM_ACCEL_AUTO, /* KVM if the CPU has vmx/svm and /dev/kvm opens, else TCG */
        VMM_ACCEL_KVM,
        VMM_ACCEL_TCG,
};

enum vmm_share_type {
        VMM_SHARE_VIRTIOFS, /* one virtiofsd per share; needs a shared memfd backend */
        VMM_SHARE_9P,       /* in QEMU; guest kernel needs 9p + 9pnet_virtio */
};

struct vmm_share {
        const char *tag;      /* mount tag: [A-Za-z0-9._-], 1..36 chars */
        const char *host_dir; /* absolute */
        bool readonly;        /* 9p: enforced by QEMU. virtiofs (virtiofsd 7.2 has no
                               * read-only mode): the guest must mount it ro. */
};

#define VMM_DEFAULT_QEMU "/usr/bin/qemu-system-x86_64"

/* VM templates (docs/vmm.md, "VM templates"): a guest saved by migration
 * with its RAM left in a file, and clones restored from it with that file
 * mapped copy-on-write. Both roles have the same device layout
 * (VMM_TEMPLATE_LAYOUT): no virtio-fs (unmigratable in QEMU 7.2), a
 * balloon for free page reporting (a clone's QEMU runs under
 * vmm_qemu_clone_filter, so a discard drops the clone's private copies
 * and never touches the template's file), and a virtio-rng-device. */
enum vmm_template_role {
        VMM_TEMPLATE_NONE,   /* a cold boot, RAM as usual */
        VMM_TEMPLATE_SOURCE, /* RAM shared in memory_fd: vmm_vm_template_save() */
        VMM_TEMPLATE_CLONE,  /* RAM private on memory_fd, -incoming defer, -S:
                              * vmm_vm_template_restore() */
};

struct vmm_vm_config {
        const char *id;               /* for messages */
        const char *state_dir;        /* exists, private: sockets and logs go here */
        const char *qemu_binary;      /* NULL: VMM_DEFAULT_QEMU */
        const char *virtiofsd_binary; /* NULL: /usr/lib/qemu/virtiofsd */
        const char *kernel;           /* uncompressed vmlinux (PVH boot) */
        const char *initrd;           /* may be NULL */
        const char *cmdline_extra;    /* appended to the kernel command line, may be NULL */
        unsigned vcpus;               /* 0: 1 */
        unsigned memory_mib;          /* 0: 256 */
        enum vmm_accel accel;
        unsigned tcg_tb_size_mib; /* 0: 32 */
        enum vmm_share_type share_type;
        const struct vmm_share *shares;
        size_t n_shares;
        /* Required: the names of the two virtio-serial ports the guest
         * finds by name (1..64 of [A-Za-z0-9._-]), served on the sockets
         * that vmm_vm_port_connect reaches (VMM_PORT_AGENT: [0],
         * VMM_PORT_EVENTS: [1]). The names are the guest's contract, not
         * the VMM's (the sandbox kind's: proto/agent/agent-contract.h). */
        const char *serial_ports[2];
        int tap_fd;               /* -1: no network; else passed as -netdev tap,fd=N (not taken) */
        const char *mac;          /* NULL: QEMU picks one */
        struct us_cgroup *cgroup; /* QEMU and helpers enter it before exec; may be NULL */
        /* Required. The VM's logs are drained on it: QEMU writes the serial
         * console (and QEMU and virtiofsd their stderr) into pipes whose read
         * ends are watched here and copied into capped files in state_dir
         * (vmm/logpipe.h). The loop must outlive the VM (vmm_vm_free first). */
        struct us_loop *loop;
        /* Bytes of <state_dir>/console.log + console.log.1 at most (the newest
         * output is kept); 0: VMM_CONSOLE_LOG_DEFAULT; at least
         * VMM_LOGPIPE_MIN_CAP (4096). */
        size_t console_log_max;
        /* 0: QEMU runs as the caller. Else its uid and gid from exec on (set
         * in the child, before exec, after everything it is handed is
         * open: it needs no privilege of its own), with no supplementary
         * group but kvm's under KVM and no capability. virtiofsd stays the
         * caller's: it serves files of every owner, in its own sandbox. */
        uid_t qemu_uid;
        gid_t qemu_gid;
        /* QEMU runs in a private root of its own (vmm/jail.h): needs root
         * and a QEMU under /usr. 9p shares are bound into it at fixed
         * names (VMM_JAIL_SHARE_FMT), so QEMU's argv does not name them. */
        bool private_root;
        /* virtiofsd runs as root of this user namespace (an fd of it, only
         * read during vmm_vm_start) rather than as the caller: on the host
         * it has the uid and gid that ns 0 maps to and no capability
         * outside the namespace. It sees a share in a mount namespace of its
         * own where a recursive clone of host_dir is attached over
         * VMM_VIRTIOFSD_SHARE_AT (the path to host_dir need not be open to
         * it); what the share holds must be idmapped into the namespace for
         * files to keep their owners. */
        bool virtiofsd_userns;
        int virtiofsd_userns_fd;
        /* QEMU runs as root of this user namespace (an fd of it, only read
         * during vmm_vm_start) rather than as qemu_uid, which must then be
         * 0: on the host it has the uid and gid that ns 0 maps to, in the
         * namespace only the capabilities vmm_qemu_capabilities() names,
         * and no_new_privs. For 9p shares, which QEMU serves itself: with
         * security_model=passthrough the guest's owners and modes are the
         * files' own, so what the shares hold must be idmapped into the
         * namespace (as for virtiofsd_userns). */
        bool qemu_userns;
        int qemu_userns_fd;
        /* VMM_TEMPLATE_NONE unless templating. With a role, memory_fd (> 2,
         * not taken, inherited by QEMU and mapped as /proc/self/fd/N) is the
         * guest RAM: memory_mib large, a file or a memfd. A SOURCE maps it
         * shared (the guest writes it), a CLONE private (its writes are its
         * own). QEMU 7.2 opens it read-write even for a CLONE: its seals or
         * mode must protect it. Not with private_root (its root has no
         * /proc), nor with virtio-fs shares. */
        enum vmm_template_role template_role;
        int memory_fd;
};

/* The capabilities (a mask of 1 << CAP_*) QEMU keeps in its user
 * namespace with qemu_userns: with 9p shares what its 9p server needs to
 * serve files of every owner as the guest asks (read and write any of them,
 * create them with the guest's owner, set their modes and times, keep
 * setuid bits the guest sets), none otherwise. 0 without qemu_userns (QEMU
 * then has none at all). Pure. */
uint64_t vmm_qemu_capabilities(const struct vmm_vm_config *cfg);

/* The seccomp program a VMM_TEMPLATE_CLONE's QEMU is started under: its
 * fallocate(PUNCH_HOLE | KEEP_SIZE) returns 0 and does nothing, so that
 * QEMU's discard of a page the guest reported free goes on to
 * madvise(MADV_DONTNEED) on its private mapping instead of failing on the
 * template's sealed file (vmm/qemu.c). Static; never NULL. */
struct sock_fprog;
const struct sock_fprog *vmm_qemu_clone_filter(void);

/* Where a virtiofsd in a user namespace finds its share. */
#define VMM_VIRTIOFSD_SHARE_AT "/mnt"

/* --- Accelerator choice ------------------------------------------------- */

/* True if a /proc/cpuinfo text lists the vmx or svm flag. Pure. */
bool vmm_accel_cpuinfo_has_virt(const char *cpuinfo, size_t len);

/* Decides the accelerator for `want`. cpuinfo_path / kvm_path: NULL for
 * /proc/cpuinfo and /dev/kvm (tests pass fakes). Returns 0, *ret (KVM or TCG)
 * and *ret_reason (owned by the caller, never NULL: why; for AUTO falling
 * back to TCG it is the warning the caller should log). KVM explicitly
 * wanted but unusable is an error (-ENODEV). */
int vmm_accel_decide(enum vmm_accel want, const char *cpuinfo_path, const char *kvm_path,
                     enum vmm_accel *ret, char **ret_reason, struct us_error **err);

const char *vmm_accel_name(enum vmm_accel a);

/* The host TSC frequency in kHz from a /proc/cpuinfo text ("cpu MHz" of the
 * first CPU), or 0 if absent/implausible. Pure. Under TCG the guest reads the
 * host's TSC, and a loaded host makes the guest's PIT calibration fail, after
 * which a stock kernel hangs before init; the kernel's tsc_early_khz= avoids
 * that. */
unsigned vmm_host_tsc_khz(const char *cpuinfo, size_t len);
/* Same, reading /proc/cpuinfo; 0 on any failure. */
unsigned vmm_host_tsc_khz_read(void);

/* Reads a whole small file (a /proc text: at most 4 MiB, else -E2BIG),
 * never blocking on a fifo. Returns 0, *ret (caller frees; not
 * NUL-terminated) and *ret_len. */
int vmm_read_bounded(const char *path, char **ret, size_t *ret_len, struct us_error **err);

/* --- QEMU command line (pure) ------------------------------------------- */

/* What vmm_vm_start() prepared before building the command line. */
struct vmm_qemu_runtime {
        enum vmm_accel accel; /* KVM or TCG (decided) */
        int qmp_fd;           /* listening unix socket QEMU serves QMP on */
        int agent_fd;         /* listening unix socket for cfg->serial_ports[0] */
        int events_fd;        /* listening unix socket for cfg->serial_ports[1] */
        const int *fs_fds;    /* virtiofs: n_shares sockets connected to virtiofsd */
        int console_fd;       /* write end of the console pipe (> 2), passed as an fd set */
        unsigned tsc_khz;     /* TCG: passed as tsc_early_khz= (0: not) */
        bool private_root;    /* the kernel, initrd and 9p shares at their paths in it */
};

/* Builds QEMU's argv (NULL-terminated; argv[0] is the binary). Pure: no I/O.
 * Validates the config (tags, sizes, MAC, paths) and escapes QemuOpts values.
 * Returns 0 and *ret (free with us_strv_free), or -EINVAL with *err. */
int vmm_qemu_argv(const struct vmm_vm_config *cfg, const struct vmm_qemu_runtime *rt, char ***ret,
                  struct us_error **err);

/* argv for virtiofsd serving `share` on the listening socket `fd`. Pure. */
int vmm_virtiofsd_argv(const struct vmm_vm_config *cfg, const struct vmm_share *share, int fd,
                       char ***ret, struct us_error **err);

/* --- VM lifecycle -------------------------------------------------------- */

struct vmm_vm;

/* Spawns virtiofsd(s) (virtio-fs shares), then QEMU, connects QMP and returns
 * once QEMU runs the guest. cfg and its strings need only live for the call;
 * cfg->loop must outlive the VM (it drains the logs, see vmm_vm_config).
 * On any failure nothing is left behind: the processes started here are
 * killed and reaped (waitpid on their pids) and the sockets removed; *err
 * then carries QEMU's exit status and the tail of its stderr log
 * (<state_dir>/qemu.log). *ret is owned by the caller (vmm_vm_free). */
int vmm_vm_start(const struct vmm_vm_config *cfg, struct vmm_vm **ret, struct us_error **err);

/* The VM's two virtio-serial ports (their names: cfg->serial_ports), which
 * the guest agent serves alike. */
enum vmm_agent_port {
        VMM_PORT_AGENT,  /* serial_ports[0], <state_dir>/agent.sock */
        VMM_PORT_EVENTS, /* serial_ports[1], <state_dir>/events.sock */
};

/* A new connected stream fd (O_CLOEXEC, owned by the caller) to one of the
 * agent's virtio-serial ports. Connecting succeeds as soon as QEMU runs; data
 * flows once the agent opens its port. One connection per port at a time:
 * QEMU serves a single client per chardev (a second one waits in the listen
 * backlog until the first closes). */
int vmm_vm_port_connect(struct vmm_vm *vm, enum vmm_agent_port port, int *ret_fd,
                        struct us_error **err);

/* vmm_vm_port_connect(vm, VMM_PORT_AGENT, ...). */
int vmm_vm_agent_connect(struct vmm_vm *vm, int *ret_fd, struct us_error **err);

/* Path of the agent socket (owned by vm). */
const char *vmm_vm_agent_socket(const struct vmm_vm *vm);

/* The accelerator vmm_vm_start() chose, and why (owned by vm). When
 * VMM_ACCEL_AUTO fell back to TCG the reason is a warning the caller logs. */
enum vmm_accel vmm_vm_accel(const struct vmm_vm *vm);
const char *vmm_vm_accel_reason(const struct vmm_vm *vm);

/* QEMU's pid (still valid after it exited, until vmm_vm_free). */
pid_t vmm_vm_pid(const struct vmm_vm *vm);

/* The caller reaped `pid` with `wait_status`. Returns true if it was QEMU or
 * one of its helpers (recorded; the VM is no longer running when QEMU exited).
 * What the process left in its log pipes is drained into the files before
 * this returns, so console.log is complete when QEMU's exit is reported. */
bool vmm_vm_child_exited(struct vmm_vm *vm, pid_t pid, int wait_status);

/* For a caller that reaps no other child while it waits on QEMU (a
 * template build): reaps QEMU if it exited (vmm_vm_child_exited) without
 * waiting. Returns vmm_vm_running. */
bool vmm_vm_reap_qemu(struct vmm_vm *vm);

/* True until QEMU's exit is known (reported or reaped here). */
bool vmm_vm_running(const struct vmm_vm *vm);

/* QEMU's wait status once it exited (-1 before). */
int vmm_vm_exit_status(const struct vmm_vm *vm);

/* The newest console output (console.log.1 then console.log), at most
 * size - 1 bytes, NUL-terminated; returns the count (0 if none). For a
 * caller that logs why a VM died: after a rotation console.log alone may
 * hold only a few bytes. */
size_t vmm_vm_console_tail(const struct vmm_vm *vm, char *buf, size_t size);

/* QMP stop / cont: freeze / thaw all vCPUs. */
int vmm_vm_pause(struct vmm_vm *vm, struct us_error **err);
int vmm_vm_resume(struct vmm_vm *vm, struct us_error **err);

/* Raw QMP for anything else (see vmm/qmp.h; reply owned by the caller). */
struct vmm_qmp_msg;
int vmm_vm_qmp(struct vmm_vm *vm, const char *command, const char *arguments_json,
               struct vmm_qmp_msg **ret_reply, struct us_error **err);

/* --- Templates ----------------------------------------------------------- */

/* How a save or a restore ended: r is 0, or a negative errno and err says
 * what failed (QEMU's own message where it gave one; err is freed after the
 * call). Called once, from the loop; the callback may quit or free vm. */
typedef void (*vmm_vm_migration_fn)(struct vmm_vm *vm, int r, const struct us_error *err,
                                    void *userdata);

/* Saves a VMM_TEMPLATE_SOURCE VM (its agent ready, nothing pod-specific
 * set): QMP stop, x-ignore-shared (its RAM stays in memory_fd, which must
 * outlive the VM), then migrate to state_fd (a file open for writing, not
 * taken: QEMU gets its own copy over the monitor). Returns once the
 * migration runs; `done` reports its end from the loop, which this never
 * blocks for more than a QMP command. After a success the guest stays
 * stopped: the caller quits the VM. The RAM file holds the template once
 * QEMU is gone (its shared mapping is the file's pages). */
int vmm_vm_template_save(struct vmm_vm *vm, int state_fd, vmm_vm_migration_fn done, void *userdata,
                         struct us_error **err);

/* Restores a VMM_TEMPLATE_CLONE VM (started from the template's RAM file
 * as memory_fd) from the template's state_fd (open for reading, not taken):
 * x-ignore-shared, migrate-incoming; once QEMU loaded the state, cont, and
 * then `done`. A state QEMU cannot load ends QEMU (7.2 exits on a failed
 * incoming migration): `done` then gets its exit status and its message. */
int vmm_vm_template_restore(struct vmm_vm *vm, int state_fd, vmm_vm_migration_fn done,
                            void *userdata, struct us_error **err);

/* Orderly stop: QMP quit, waits up to 3 s for QEMU, then SIGKILL; stops the
 * helpers. Waits: on return every process of this VM is reaped (see
 * vmm_vm_destroy for the one exception) and the sockets are gone. */
int vmm_vm_quit(struct vmm_vm *vm, struct us_error **err);

/* Immediate stop: SIGKILL to QEMU and helpers. Waits (bounded, 5 s) for
 * their exit by pid and removes the sockets. Idempotent. Returns -ETIMEDOUT
 * if a process would not die (it is then still recorded as not reaped, and
 * the caller's later waitpid(-1) report goes to vmm_vm_child_exited). */
int vmm_vm_destroy(struct vmm_vm *vm, struct us_error **err);

/* Frees the handle. If processes still run it destroys them first (SIGKILL
 * + bounded wait). Accepts NULL; returns NULL. vmm_vm_destroy, vmm_vm_quit
 * and this drop a pending save or restore without calling its `done`. */
struct vmm_vm *vmm_vm_free(struct vmm_vm *vm);
