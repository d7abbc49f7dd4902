/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vm kind: the pod's workload is a full VM booted from a disk image
 * carried in a container image (KubeVirt's containerDisk), run by the
 * node's libvirtd (docs/vm.md, docs/design-decisions.md "The vm kind: where
 * libvirt runs").
 *
 * Per pod (one shim): what every VM kind's pod has on the host (vmpod.h),
 * a libvirt connection that lives as long as the shim (the domain is
 * AUTODESTROY: a shim that dies takes its VM with it), and at most one VM.
 *
 * Tasks:
 * - the CRI sandbox task holds the pod: its state, network and cgroup, no
 *   process of its own (its pid is the shim's); killing it ends the pod;
 * - the VM: the container whose image holds the disk. Its pid is QEMU's,
 *   its stdout the serial console, its exit the domain's end: 0 when the
 *   guest powered off, 137 when it was destroyed (SIGKILL) or QEMU was
 *   OOM-killed at the pod's memory limit (told as a TaskOOM first), 255
 *   when it crashed or QEMU failed; its command, env and mounts are not
 *   the guest's (spec.h);
 * - a container without a CRI sandbox (ctr run) is both.
 * The pod's mesh sidecars run on the host (shim/sidecar.h); any other
 * container is refused.
 *
 * Everything the guest can say reaches the host through two sockets the
 * shim listens on, connected by QEMU (running as the pod's own uid): the
 * serial console, copied to the container's stdout without ever blocking
 * the loop, and the qemu-guest-agent port.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libvirt/libvirt.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim/backend.h"
#include "cgroup/cgroup.h"
#include "base/cleanup.h"
#include "vmm/cloudinit.h"
#include "vmm/domain.h"
#include "base/fs-util.h"
#include "vmm/libvirt.h"
#include "base/log.h"
#include "netplumb/netplumb.h"
#include "policy/policy.h"
#include "vmm/qga.h"
#include "vmm/qemu.h"
#include "base/sha256.h"
#include "vmm/syntax.h"
#include "disk.h"
#include "spec.h"
#include "shim/vmpod.h"

#define VM_DIR            "vm" /* in the pod's state dir: QEMU's files */
#define VM_SEED           "seed.iso"
#define VM_CONSOLE_SOCKET "console.sock"
#define VM_AGENT_SOCKET   "agent.sock"
#define VM_DEFAULT_GROUP  "libvirt-qemu"
#define VM_LIBVIRT_LOG    "/var/log/libvirt/qemu"
#define CONSOLE_BUF       65536

/* Exit statuses of the VM's task (docs/vm.md). */
#define VM_EXIT_POWEROFF  0u
#define VM_EXIT_DESTROYED (128u + SIGKILL)
#define VM_EXIT_OOM       (128u + SIGKILL) /* as a container the kernel OOM-kills */
#define VM_EXIT_FAILED    255u

struct vm_pod;

struct vm_task {
        struct vm_task *next;
        struct vm_pod *pod;
        void *cookie;
        char *id;
        bool is_pod; /* holds the pod: the CRI sandbox, or a task without one */
        bool is_vm;  /* the VM */
        bool exited;
        struct us_oci_spec *spec;
};

/* One byte stream, QEMU's end → a sink fd, never blocking. */
struct vm_pump {
        int from;
        struct us_loop_source *from_src;
        int to; /* -1: discard */
        struct us_loop_source *to_src;
        uint8_t *buf;
        size_t len, off;
};

struct vm_pod {
        struct vmpod vmpod;
        void (*process_exited)(void *cookie, const char *exec_id, uint32_t status);
        void (*oom)(void *cookie);
        const struct policy_config *config;
        char *namespace; /* containerd's */
        struct vmm_libvirt *lv;
        struct vm_task *tasks;

        /* The VM, while it exists. */
        struct vm_task *vm;
        struct vmm_libvirt_domain *dom;
        char domain[VMM_DOMAIN_NAME_MAX + 1];
        char host_tap[IFNAMSIZ];
        char libvirt_netns[64]; /* libvirtd's, where it opens the tap */
        bool host_tap_made;
        int dir_fd; /* VM_DIR */
        char *dir;
        bool disk_mounted;
        struct vm_disk_prep *disk_prep;  /* while qemu-img runs */
        struct vm_create *disk_prep_for; /* the create it answers */
        pid_t qemu_pid;
        uid_t uid;
        gid_t gid;
        int console_listen, agent_listen;
        struct us_loop_source *agent_listen_src;
        struct vmm_qga *qga; /* the guest's qemu-guest-agent, for exec */
        struct vm_exec *execs;
        struct vm_pump console;
        bool destroyed; /* by us: SIGKILL or the pod's end */
        bool crashed;
        bool vm_ended;
        /* The pod cgroup's count of OOM kills before QEMU's life: one more
         * at its end was QEMU's. */
        uint64_t oom_kills;
};

static void pod_teardown(struct vm_pod *pod);

/* ---- names the pod's host objects get, also for `shim delete` ---- */

static const char *pod_name_of(const struct us_oci_spec *spec, const char *pod_id)
{
        const char *name = us_oci_spec_annotation(spec, CRI_SANDBOX_NAME);
        return name && *name ? name : pod_id;
}

/* A tap in the host's namespace, libvirt's to open by name: "usvm" + 11
 * hex digits of the pod's identity. */
static void host_tap_name(const char *namespace, const char *pod_id, char buf[static IFNAMSIZ])
{
        char key[512], hex[65];
        snprintf(key, sizeof(key), "%s/%s", namespace, pod_id);
        us_sha256_hex(key, strlen(key), hex);
        snprintf(buf, IFNAMSIZ, "usvm%.11s", hex);
}

/* ---- the console: QEMU's serial port → the task's stdout ---- */

static void pump_stop(struct vm_pump *p)
{
        p->from_src = us_loop_source_remove(p->from_src);
        p->to_src = us_loop_source_remove(p->to_src);
        p->from = us_close(p->from);
        p->to = us_close(p->to);
        free(p->buf);
        p->buf = NULL;
        p->len = p->off = 0;
}

static void pump_from(struct us_loop_source *src, int fd, uint32_t events, void *userdata);

/* Writes what is pending; false when the sink is full (then it waits for
 * EPOLLOUT and the source is not read meanwhile: back-pressure on the
 * guest's console, never on the loop). */
static bool pump_flush(struct vm_pump *p)
{
        ssize_t n =
                p->to < 0 ? -EPIPE : us_write_some(p->to, p->buf + p->off, p->len - p->off, false);
        if (n >= 0 && (p->off += (size_t)n) < p->len)
                return false;
        if (n < 0) { /* no reader (any more): the rest is discarded */
                p->to_src = us_loop_source_remove(p->to_src);
                p->to = us_close(p->to);
        }
        p->len = p->off = 0;
        return true;
}

static void pump_to(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        (void)events;
        struct vm_pump *p = userdata;
        if (!pump_flush(p))
                return;
        p->to_src = us_loop_source_remove(p->to_src);
        if (p->from >= 0)
                (void)us_loop_source_set_events(p->from_src, EPOLLIN, NULL);
}

static void pump_from(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)events;
        struct vm_pump *p = userdata;
        ssize_t n = read(fd, p->buf, CONSOLE_BUF);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (n <= 0) { /* QEMU closed its end: the VM is gone or going */
                p->from_src = us_loop_source_remove(p->from_src);
                p->from = us_close(p->from);
                return;
        }
        p->len = (size_t)n;
        p->off = 0;
        if (pump_flush(p))
                return;
        struct us_error *err = NULL;
        if (us_loop_source_set_events(src, 0, &err) < 0 ||
            us_loop_add_fd(us_loop_source_loop(src), p->to, EPOLLOUT, pump_to, p, &p->to_src,
                           &err) < 0) {
                /* Cannot wait for the reader: drop the sink, keep the guest
                 * going. */
                us_log_warn("vm console: %s", us_error_text(err));
                p->to = us_close(p->to);
                p->len = p->off = 0;
                (void)us_loop_source_set_events(src, EPOLLIN, NULL);
        }
        us_error_free(err);
}

static int pump_start(struct us_loop *loop, struct vm_pump *p, int from, int to,
                      struct us_error **err)
{
        p->from = from;
        p->to = to;
        if (to >= 0) {
                int fl = fcntl(to, F_GETFL);
                if (fl < 0 || fcntl(to, F_SETFL, fl | O_NONBLOCK) < 0)
                        return us_errorf(err, errno, "console sink");
        }
        if (!(p->buf = malloc(CONSOLE_BUF)))
                return us_errorf(err, ENOMEM, "console buffer");
        return us_loop_add_fd(loop, from, EPOLLIN, pump_from, p, &p->from_src, err);
}

/* ---- sockets QEMU connects to ---- */

static int listen_at(int dir_fd, const char *dir, const char *name, uid_t uid, gid_t gid, int *ret,
                     struct us_error **err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, name) >=
            (int)sizeof(sa.sun_path))
                return us_error_msg(err, ENAMETOOLONG, "socket path %s/%s is too long", dir, name);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return us_errorf(err, errno, "socket");
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return us_errorf(err, errno, "bind %s", sa.sun_path);
        /* Only QEMU's uid may connect (and the dir is its, 0700). */
        if (fchownat(dir_fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            fchmodat(dir_fd, name, 0600, 0) < 0)
                return us_errorf(err, errno, "give %s to QEMU", sa.sun_path);
        if (listen(fd, 4) < 0)
                return us_errorf(err, errno, "listen on %s", sa.sun_path);
        *ret = TAKE_FD(fd);
        return 0;
}

/* The next connection on fd that comes from QEMU (uid, and pid once
 * known); others (libvirtd reaching for the agent port) are closed.
 * -EAGAIN when none is waiting. */
static int accept_qemu(struct vm_pod *pod, int fd, pid_t *ret_pid)
{
        for (;;) {
                int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0)
                        return errno == EINTR ? accept_qemu(pod, fd, ret_pid) : -errno;
                struct ucred cred;
                socklen_t len = sizeof(cred);
                if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                    cred.uid == pod->uid && (pod->qemu_pid == 0 || cred.pid == pod->qemu_pid)) {
                        if (ret_pid)
                                *ret_pid = cred.pid;
                        return c;
                }
                us_close(c);
        }
}

static void agent_connected(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct vm_pod *pod = userdata;
        int c = accept_qemu(pod, fd, NULL);
        if (c < 0)
                return;
        /* QEMU connects once; a second connection from it replaces the
         * first (a reconnect). */
        struct us_error *err = NULL;
        if (vmm_qga_attach(pod->qga, c, &err) < 0)
                us_log_warn("pod %s: the guest agent's channel: %s", pod->vmpod.id,
                            us_error_text(err));
        us_error_free(err);
}

/* ---- exec: through the guest's qemu-guest-agent ---- */

/* A call of the guest agent takes at most this long; an exec as a whole
 * runs as long as its process does (kubectl exec of a long command). */
#define VM_AGENT_CALL_MS 30000u
#define VM_EXEC_MAX_MS   (24u * 3600u * 1000u)

/* One output stream of an exec, written to its FIFO without blocking. */
struct vm_sink {
        struct vm_exec *e;
        int fd;
        struct us_loop_source *src;
        uint8_t *buf;
        size_t len, off;
};

struct vm_exec {
        struct vm_exec *next;
        struct vm_pod *pod;
        void *cookie; /* the task's */
        char *exec_id;
        struct vmm_qga_call *call;
        struct vm_sink out, err;
        uint32_t status;
        bool finished; /* the process ended; reported once the sinks are done */
};

static void exec_free(struct vm_exec *e)
{
        for (struct vm_exec **pp = &e->pod->execs; *pp; pp = &(*pp)->next) {
                if (*pp == e) {
                        *pp = e->next;
                        break;
                }
        }
        vmm_qga_cancel(e->call);
        struct vm_sink *sinks[] = {&e->out, &e->err};
        for (size_t i = 0; i < 2; i++) {
                sinks[i]->src = us_loop_source_remove(sinks[i]->src);
                sinks[i]->fd = us_close(sinks[i]->fd);
                free(sinks[i]->buf);
        }
        free(e->exec_id);
        free(e);
}

/* Reports the exit once both outputs are written (containerd reads them
 * to the end before it trusts an exit). */
static void exec_maybe_done(struct vm_exec *e)
{
        if (!e->finished || e->out.fd >= 0 || e->err.fd >= 0)
                return;
        struct vm_pod *pod = e->pod;
        void *cookie = e->cookie;
        char *id = TAKE_PTR(e->exec_id);
        uint32_t status = e->status;
        exec_free(e);
        pod->process_exited(cookie, id, status);
        free(id);
}

static void sink_write(struct us_loop_source *src, int fd, uint32_t events, void *userdata);

/* Writes what it can; closes the FIFO when all is written or its reader is
 * gone. */
static void sink_flush(struct vm_sink *s)
{
        ssize_t n =
                s->fd < 0 ? -EBADF : us_write_some(s->fd, s->buf + s->off, s->len - s->off, false);
        if (n >= 0 && (s->off += (size_t)n) < s->len &&
            (s->src || us_loop_add_fd(s->e->pod->vmpod.loop, s->fd, EPOLLOUT, sink_write, s,
                                      &s->src, NULL) == 0))
                return; /* the rest when the FIFO has room; if it cannot be
                         * waited for, what is left is lost */
        s->src = us_loop_source_remove(s->src);
        s->fd = us_close(s->fd);
}

static void sink_write(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        (void)events;
        struct vm_sink *s = userdata;
        sink_flush(s);
        if (s->fd < 0)
                exec_maybe_done(s->e);
}

static void sink_start(struct vm_sink *s, const uint8_t *data, size_t len, const char *text)
{
        size_t tlen = text ? strlen(text) : 0;
        if (s->fd >= 0 && len + tlen > 0 && (s->buf = malloc(len + tlen))) {
                if (len)
                        memcpy(s->buf, data, len);
                if (tlen)
                        memcpy(s->buf + len, text, tlen);
                s->len = len + tlen;
        }
        sink_flush(s);
}

/* The exec ended: its status, output, and what goes to stderr besides the
 * process's own (why it could not run). */
static void exec_end_with(struct vm_exec *e, uint32_t status, const uint8_t *out, size_t out_len,
                          const uint8_t *err, size_t err_len, const char *why)
{
        e->call = NULL;
        e->status = status;
        e->finished = true;
        char line[640] = "";
        if (why)
                snprintf(line, sizeof(line), "unishim: %s\n", why);
        sink_start(&e->out, out, out_len, NULL);
        sink_start(&e->err, err, err_len, why ? line : NULL);
        exec_maybe_done(e);
}

static void exec_end(struct vm_exec *e, uint32_t status, const char *why)
{
        exec_end_with(e, status, NULL, 0, NULL, 0, why);
}

/* The VM is gone: the exec ends now, with what could be written at once. */
static void exec_abort(struct vm_exec *e)
{
        if (!e->finished)
                exec_end(e, 255, "the VM is gone");
        else
                exec_maybe_done(e);
        /* Still here: a FIFO was full. Nothing more is waited for. */
        for (struct vm_exec *o = e->pod->execs; o; o = o->next) {
                if (o != e)
                        continue;
                struct vm_sink *sinks[] = {&e->out, &e->err};
                for (size_t i = 0; i < 2; i++) {
                        sinks[i]->src = us_loop_source_remove(sinks[i]->src);
                        sinks[i]->fd = us_close(sinks[i]->fd);
                }
                exec_maybe_done(e);
                break;
        }
}

static void exec_done(void *userdata, int r, const struct vmm_qga_exec_result *res,
                      const struct us_error *err)
{
        struct vm_exec *e = userdata;
        if (r == 0 && res) {
                uint32_t status =
                        res->signalled ? 128u + (uint32_t)res->code : (uint32_t)res->code & 0xffu;
                exec_end_with(e, status, res->out, res->out_len, res->err, res->err_len,
                              res->out_truncated || res->err_truncated
                                      ? "the output was cut at the guest agent's limit"
                                      : NULL);
                return;
        }
        char why[600];
        if (r == -ETIMEDOUT)
                snprintf(why, sizeof(why),
                         "the guest's qemu-guest-agent did not answer in time (is it installed "
                         "and running in the guest?)");
        else
                snprintf(why, sizeof(why), "exec through the guest's qemu-guest-agent: %s",
                         err ? us_error_text(err) : strerror(-r));
        /* A command the guest could not start exits 127, as in a shell. */
        exec_end(e, r == -EIO ? 127 : 255, why);
}

static int vm_exec(void *impl, const char *exec_id, const struct us_oci_process *p,
                   const char *json, size_t json_len, const struct us_stdio *stdio, pid_t *ret_pid,
                   int *ret_pty, struct shim_op *op, struct us_error **err)
{
        (void)json;
        (void)json_len;
        (void)op; /* started at once: the agent tells only of the end */
        struct vm_task *t = impl;
        struct vm_pod *pod = t->pod;
        if (!t->is_vm || !pod->qga || pod->vm_ended)
                return us_error_msg(err, EINVAL, "container %s has no running VM to exec in",
                                    t->id);
        if (p->terminal)
                return us_error_msg(err, ENOTSUP,
                                    "exec in the VM of container %s: no terminal (-t): the "
                                    "guest's qemu-guest-agent runs commands without one",
                                    t->id);
        if (stdio->in >= 0)
                return us_error_msg(err, ENOTSUP,
                                    "exec in the VM of container %s: no stdin (-i): the "
                                    "guest's qemu-guest-agent gives its commands none",
                                    t->id);
        struct vm_exec *e = calloc(1, sizeof(*e));
        if (!e || !(e->exec_id = strdup(exec_id))) {
                free(e);
                return us_errorf(err, ENOMEM, "exec");
        }
        e->pod = pod;
        e->cookie = t->cookie;
        e->out = (struct vm_sink){.e = e, .fd = -1};
        e->err = (struct vm_sink){.e = e, .fd = -1};
        e->next = pod->execs;
        pod->execs = e;
        int r = 0;
        if ((stdio->out >= 0 && (e->out.fd = fcntl(stdio->out, F_DUPFD_CLOEXEC, 3)) < 0) ||
            (stdio->err >= 0 && (e->err.fd = fcntl(stdio->err, F_DUPFD_CLOEXEC, 3)) < 0))
                r = us_errorf(err, errno, "exec stdio");
        for (int i = 0; r == 0 && i < 2; i++) {
                int fd = i ? e->err.fd : e->out.fd;
                int fl = fd < 0 ? 0 : fcntl(fd, F_GETFL);
                if (fd >= 0 && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
                        r = us_errorf(err, errno, "exec stdio");
        }
        size_t n_args = 0, n_env = 0;
        while (p->args && p->args[n_args])
                n_args++;
        while (p->env && p->env[n_env])
                n_env++;
        if (r == 0)
                r = vmm_qga_exec(pod->qga, p->args[0], (const char *const *)p->args + 1, n_args - 1,
                                 (const char *const *)p->env, n_env, VM_EXEC_MAX_MS, exec_done, e,
                                 &e->call, err);
        if (r < 0) {
                exec_free(e);
                return us_error_wrap(err, r, "exec in the VM of container %s", t->id);
        }
        *ret_pid = pod->qemu_pid;
        *ret_pty = -1;
        return 0;
}

/* ---- the VM's end ---- */

static uint32_t vm_exit_status(const struct vm_pod *pod, int detail)
{
        if (pod->crashed)
                return VM_EXIT_FAILED;
        if (pod->destroyed || detail == VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
                return VM_EXIT_DESTROYED;
        if (detail == VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)
                return VM_EXIT_POWEROFF;
        return VM_EXIT_FAILED;
}

/* Was QEMU killed by the memory cgroup's OOM killer (the pod over its
 * limit)? QEMU is alone in the pod's cgroup, and the kernel counts a kill
 * in the victim's own cgroup before it sends SIGKILL: by the time QEMU's
 * end is known, the count has grown. (The cgroup's OOM notification would
 * also fire for an OOM of the pod's parent cgroup that killed a sidecar,
 * and does not order itself before the exit.) */
static bool qemu_oom_killed(const struct vm_pod *pod)
{
        uint64_t n = 0;
        return !pod->destroyed && pod->vmpod.cgroup &&
               us_cgroup_oom_count(pod->vmpod.cgroup, &n, NULL) == 0 && n > pod->oom_kills;
}

static void vm_ended(struct vm_pod *pod, uint32_t status)
{
        if (pod->vm_ended)
                return;
        pod->vm_ended = true;
        struct vm_task *t = pod->vm;
        if (t && !t->exited) {
                t->exited = true;
                /* containerd's CRI reports OOMKilled for a container whose
                 * TaskOOM came before its exit. */
                if (status == VM_EXIT_FAILED && qemu_oom_killed(pod)) {
                        pod->oom(t->cookie);
                        status = VM_EXIT_OOM;
                }
                pod->process_exited(t->cookie, NULL, status);
        }
}

static void domain_event(void *userdata, int event, int detail)
{
        struct vm_pod *pod = userdata;
        if (event == VIR_DOMAIN_EVENT_CRASHED)
                pod->crashed = true;
        else if (event == VIR_DOMAIN_EVENT_STOPPED)
                vm_ended(pod, vm_exit_status(pod, detail));
}

static void libvirt_closed(void *userdata, int reason)
{
        struct vm_pod *pod = userdata;
        /* Every domain of the connection is gone with it (AUTODESTROY). */
        vm_ended(pod, VM_EXIT_FAILED);
        char why[96];
        snprintf(why, sizeof(why), "its connection to libvirtd closed (reason %d)", reason);
        vmpod_lost(&pod->vmpod, why);
}

/* libvirt's answer to an op. */
static void acted(void *userdata, int r, struct us_error *err)
{
        struct shim_op *op = userdata;
        if (op) {
                op->done(op, r, err);
                return;
        }
        if (r < 0)
                us_log_warn("%s", us_error_text(err));
        us_error_free(err);
}

static void disk_cancelled(struct us_loop_source *src, void *userdata);

/* Removes the VM and what it had on the host. Idempotent. */
static void vm_remove(struct vm_pod *pod)
{
        if (pod->dom) {
                if (!pod->vm_ended) {
                        pod->destroyed = true;
                        struct us_error *err = NULL;
                        /* (nobody waits: the connection's close would take
                         * it too) */
                        if (vmm_libvirt_act(pod->dom, VMM_LIBVIRT_DESTROY, acted, NULL, &err) < 0)
                                us_log_warn("pod %s: destroy domain %s: %s", pod->vmpod.id,
                                            pod->domain, us_error_text(err));
                        us_error_free(err);
                        vm_ended(pod, VM_EXIT_DESTROYED);
                }
                pod->dom = vmm_libvirt_domain_free(pod->dom);
        }
        if (pod->disk_prep) {
                /* Stopped, it answers nobody: its create hears of it from
                 * the loop, as it would have from the preparation. */
                pod->disk_prep = vm_disk_prep_free(pod->disk_prep);
                if (us_loop_add_timer(pod->vmpod.loop, 0, disk_cancelled, pod->disk_prep_for, NULL,
                                      NULL) < 0)
                        us_log_error("pod %s: no memory to end a create: it hangs", pod->vmpod.id);
        }
        pump_stop(&pod->console);
        pod->agent_listen_src = us_loop_source_remove(pod->agent_listen_src);
        pod->agent_listen = us_close(pod->agent_listen);
        pod->console_listen = us_close(pod->console_listen);
        while (pod->execs)
                exec_abort(pod->execs);
        pod->qga = vmm_qga_free(pod->qga);
        if (pod->host_tap_made) {
                /* Moved into the pod's netns (vmpod_teardown_host deletes it
                 * there), or still here. */
                (void)netplumb_host_tap_delete(pod->libvirt_netns, pod->host_tap, NULL);
                pod->host_tap_made = false;
        }
        if (pod->vmpod.wired) {
                (void)netplumb_vm_unwire(pod->vmpod.netns, NULL);
                pod->vmpod.wired = false;
        }
        if (pod->dir_fd >= 0) {
                if (pod->disk_mounted) {
                        struct us_error *err = NULL;
                        if (vm_disk_release(pod->dir_fd, &err) < 0)
                                us_log_warn("pod %s: %s", pod->vmpod.id, us_error_text(err));
                        us_error_free(err);
                        pod->disk_mounted = false;
                }
                static const char *const files[] = {VM_DISK_BASE, VM_DISK_OVERLAY, VM_SEED,
                                                    VM_CONSOLE_SOCKET, VM_AGENT_SOCKET};
                for (size_t i = 0; i < US_ELEMENTSOF(files); i++)
                        (void)unlinkat(pod->dir_fd, files[i], 0);
        }
        if (pod->domain[0]) {
                /* libvirt keeps each domain's log forever: it goes with
                 * the pod's VM. */
                char log[PATH_MAX];
                snprintf(log, sizeof(log), VM_LIBVIRT_LOG "/%s.log", pod->domain);
                (void)unlink(log);
        }
        pod->qemu_pid = 0;
        pod->vm = NULL;
}

/* ---- the pod ---- */

static void pod_teardown(struct vm_pod *pod)
{
        if (!vmpod_teardown_begin(&pod->vmpod))
                return;
        vm_remove(pod);
        pod->lv = vmm_libvirt_close(pod->lv);
        vmpod_teardown_host(&pod->vmpod);
        pod->dir_fd = us_close(pod->dir_fd);
        vmpod_teardown_state(&pod->vmpod);
        /* The pod's own task ends with it. */
        for (struct vm_task *t = pod->tasks; t; t = t->next) {
                if (t->is_pod && !t->exited) {
                        t->exited = true;
                        pod->process_exited(t->cookie, NULL, VM_EXIT_DESTROYED);
                }
        }
}

static void pod_teardown_cb(void *userdata)
{
        pod_teardown(userdata);
}

static void pod_free(void *impl)
{
        struct vm_pod *pod = impl;
        if (!pod)
                return;
        pod_teardown(pod);
        vmpod_fini(&pod->vmpod);
        free(pod->dir);
        free(pod->namespace);
        free(pod);
}

/* State dirs are 0700; QEMU (the pod's uid, not root) opens its files in
 * VM_DIR by path, so it must be able to pass through them (0711: no
 * listing). */
static int open_way_for_qemu(const char *state_dir, struct us_error **err)
{
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s", state_dir);
        for (;;) {
                if (chmod(path, 0711) < 0)
                        return us_errorf(err, errno, "chmod %s", path);
                if (strcmp(path, VMPOD_STATE_ROOT) == 0)
                        return 0;
                char *slash = strrchr(path, '/');
                if (!slash || slash == path)
                        return 0;
                *slash = '\0';
        }
}

/* opened(userdata, ...) says whether the pod's libvirt connection opened
 * (NULL: nobody waits; the calls after it fail if it did not). */
static int pod_start(const struct shim_backend_env *env, const struct shim_pod_decision *decision,
                     vmm_libvirt_done_fn opened, void *userdata, struct vm_pod **ret,
                     struct us_error **err)
{
        const struct us_container_config *cfg = &decision->container;
        struct vm_pod *pod = calloc(1, sizeof(*pod));
        if (!pod)
                return us_errorf(err, ENOMEM, "allocate pod");
        pod->process_exited = env->process_exited;
        pod->oom = env->oom;
        pod->config = decision->config;
        pod->dir_fd = pod->console_listen = pod->agent_listen = -1;
        pod->console.from = pod->console.to = -1;
        pod->uid = vmpod_qemu_uid();
        if (!(pod->namespace = strdup(env->namespace))) {
                free(pod);
                return us_errorf(err, ENOMEM, "allocate pod");
        }
        const char *group =
                pod->config->vm.qemu_group ? pod->config->vm.qemu_group : VM_DEFAULT_GROUP;
        int r = vmpod_start(&pod->vmpod, POLICY_ISOLATION_VM, env->loop, env->namespace, cfg->id,
                            cfg->spec, pod_teardown_cb, pod, NULL, NULL, err);
        if (r < 0)
                goto fail;
        struct group *g = getgrnam(group);
        if (!g) {
                r = us_error_msg(err, ENOENT,
                                 "no group %s on this host (vm.qemu_group: libvirt's QEMU group; "
                                 "is libvirt-daemon-system installed?)",
                                 group);
                goto fail;
        }
        pod->gid = g->gr_gid;
        r = open_way_for_qemu(pod->vmpod.state_dir, err);
        if (r < 0)
                goto fail;
        if (asprintf(&pod->dir, "%s/" VM_DIR, pod->vmpod.state_dir) < 0) {
                pod->dir = NULL;
                r = us_errorf(err, ENOMEM, "allocate pod");
                goto fail;
        }
        if (mkdir(pod->dir, 0700) < 0 || chown(pod->dir, pod->uid, pod->gid) < 0 ||
            (pod->dir_fd = open(pod->dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                r = us_errorf(err, errno, "create %s", pod->dir);
                goto fail;
        }
        r = vmm_libvirt_open(env->loop, pod->config->vm.libvirt_uri, libvirt_closed, pod, opened,
                             userdata, &pod->lv, err);
        if (r < 0)
                goto fail;
        *ret = pod;
        return 0;
fail:
        r = us_error_wrap(err, r, "start vm pod %s", cfg->id);
        pod_free(pod);
        return r;
}

/* ---- the VM ---- */

/* A create waiting for libvirt: a new pod's connection (its CRI sandbox
 * task), or the VM's domain. */
struct vm_create {
        struct shim_op *op;
        struct vm_task *t;
        void **pod_slot; /* the shim's: NULL again when a new pod fails */
        void **ret_impl;
        int *ret_pty;
        int console_out; /* the VM's stdout, for its console; -1: none */
        bool started_pod;
        struct policy_vm_size size;
        const char *user_data; /* in the task's spec */
};

static void domain_created(void *userdata, int r, struct us_error *err);
static void create_end(struct vm_create *c, int r, struct us_error *err);

/* The pod's nameservers and search domains, from the resolv.conf its
 * containers get (a file containerd wrote for the pod). */
struct dns {
        char buf[4096];
        const char *servers[VMM_CLOUDINIT_MAX_DNS];
        size_t n_servers;
        const char *search[VMM_CLOUDINIT_MAX_SEARCH];
        size_t n_search;
};

static void dns_of(const struct us_oci_spec *spec, struct dns *d)
{
        const char *src = NULL;
        for (size_t i = 0; i < spec->n_mounts; i++)
                if (strcmp(spec->mounts[i].destination, "/etc/resolv.conf") == 0)
                        src = spec->mounts[i].source;
        if (!src || src[0] != '/')
                return;
        _cleanup_close_ int fd = open(src, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, d->buf, sizeof(d->buf) - 1);
        if (n <= 0)
                return;
        d->buf[n] = '\0';
        char *save = NULL;
        for (char *line = strtok_r(d->buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *w = strtok(line, " \t");
                if (!w)
                        continue;
                if (strcmp(w, "nameserver") == 0) {
                        char *v = strtok(NULL, " \t");
                        if (v && d->n_servers < VMM_CLOUDINIT_MAX_DNS)
                                d->servers[d->n_servers++] = v;
                } else if (strcmp(w, "search") == 0) {
                        for (char *v = strtok(NULL, " \t");
                             v && d->n_search < VMM_CLOUDINIT_MAX_SEARCH; v = strtok(NULL, " \t"))
                                d->search[d->n_search++] = v;
                }
        }
}

/* net: what the guest's NIC gets (vmpod_net_plan); NULL: no NIC. */
static int write_seed(struct vm_pod *pod, const struct us_oci_spec *spec,
                      const struct netplumb_vm_net *net, const char *user_data,
                      struct us_error **err)
{
        struct vmm_cloudinit_net ci_net = {0};
        char mac[18], v4[64], v4gw[64], v6[64], v6gw[64];
        struct dns dns = {0};
        bool has_net = net != NULL;
        if (has_net) {
                vmpod_mac_text(net, mac);
                ci_net.mac = mac;
                ci_net.mtu = net->mtu;
                for (size_t i = 0; i < net->n_addrs; i++) {
                        const struct netplumb_addr *a = &net->addrs[i];
                        char text[INET6_ADDRSTRLEN];
                        inet_ntop(a->family, a->addr, text, sizeof(text));
                        if (a->family == AF_INET) {
                                snprintf(v4, sizeof(v4), "%s/%u", text, a->prefix);
                                ci_net.ipv4 = v4;
                        } else {
                                snprintf(v6, sizeof(v6), "%s/%u", text, a->prefix);
                                ci_net.ipv6 = v6;
                        }
                }
                for (size_t i = 0; i < net->n_routes; i++) {
                        const struct netplumb_route *rt = &net->routes[i];
                        if (!rt->has_gateway)
                                continue;
                        char *buf = rt->family == AF_INET ? v4gw : v6gw;
                        inet_ntop(rt->family, rt->gateway, buf, 64);
                        if (rt->family == AF_INET)
                                ci_net.ipv4_gateway = v4gw;
                        else
                                ci_net.ipv6_gateway = v6gw;
                }
                dns_of(spec, &dns);
                ci_net.nameservers = dns.servers;
                ci_net.n_nameservers = dns.n_servers;
                ci_net.search = dns.search;
                ci_net.n_search = dns.n_search;
        }
        const char *uid = us_oci_spec_annotation(spec, CRI_SANDBOX_UID);
        /* The pod's hostname; a pod without one (ctr run) is named after
         * its domain, which is a host name too. */
        const char *hostname =
                pod->vmpod.hostname && *pod->vmpod.hostname ? pod->vmpod.hostname : NULL;
        char fallback[64];
        if (!hostname) {
                snprintf(fallback, sizeof(fallback), "%.63s", pod->domain);
                for (char *c = fallback; *c; c++)
                        if (*c == '.' || *c == '_')
                                *c = '-';
                hostname = fallback;
        }
        const struct vmm_cloudinit ci = {
                .instance_id = uid && *uid ? uid : pod->vmpod.id,
                .hostname = hostname,
                .net = has_net ? &ci_net : NULL,
                .user_data = user_data,
                .user_data_len = user_data ? strlen(user_data) : 0,
        };
        int r = vmm_cloudinit_seed_write(&ci, pod->dir_fd, VM_SEED, err);
        if (r < 0)
                return us_error_wrap(err, r, "the guest's cloud-init seed");
        if (fchownat(pod->dir_fd, VM_SEED, pod->uid, pod->gid, AT_SYMLINK_NOFOLLOW) < 0)
                return us_errorf(err, errno, "give the seed to QEMU");
        return 0;
}

static bool accel_kvm(const struct policy_vm_config *vm)
{
        enum vmm_accel want = VMM_ACCEL_AUTO, got = VMM_ACCEL_TCG;
        if (vm->accel && strcmp(vm->accel, "kvm") == 0)
                want = VMM_ACCEL_KVM;
        else if (vm->accel && strcmp(vm->accel, "tcg") == 0)
                want = VMM_ACCEL_TCG;
        _cleanup_free_ char *reason = NULL;
        if (vmm_accel_decide(want, NULL, NULL, &got, &reason, NULL) < 0)
                return false;
        return got == VMM_ACCEL_KVM;
}

static void disk_ready(void *userdata, int r, struct us_error *err, const struct vm_disk *disk);

/* The VM's making starts: the disk checked and overlaid by qemu-img, then
 * (disk_ready) the rest. On failure vm_remove undoes it. */
static int vm_make(struct vm_pod *pod, const struct shim_pod_decision *decision,
                   struct vm_create *c, struct us_error **err)
{
        const struct us_container_config *cfg = &decision->container;
        const struct us_oci_spec *spec = cfg->spec;
        const char *disk_path = NULL;
        int r = policy_pod_vm_guest(pod->config, spec->annotations, spec->n_annotations, &disk_path,
                                    &c->user_data, err);
        if (r < 0)
                return r;
        r = vm_disk_prepare(pod->vmpod.loop, cfg->rootfs, disk_path, pod->dir_fd, pod->dir,
                            pod->uid, pod->gid, disk_ready, c, &pod->disk_prep, err);
        if (r < 0)
                return r;
        pod->disk_prep_for = c;
        pod->disk_mounted = true;
        return 0;
}

/* Everything of the VM from its disk up to asking libvirt for its domain,
 * paused: domain_created(c, ...) hears the answer. On failure vm_remove
 * undoes it. */
static int vm_make_domain(struct vm_pod *pod, struct vm_create *c, const struct vm_disk *disk,
                          struct us_error **err)
{
        const struct us_oci_spec *spec = c->t->spec;
        const char *user_data = c->user_data;
        int r;
        vmm_domain_name(pod_name_of(spec, pod->vmpod.id), pod->vmpod.id, pod->domain);
        /* The guest's network, known before its NIC is wired: for the seed
         * and the domain's MAC. */
        struct netplumb_vm_net net;
        char mac[18] = "";
        if (pod->vmpod.podnet) {
                r = vmpod_net_plan(&pod->vmpod, &net, err);
                if (r < 0)
                        return r;
                vmpod_mac_text(&net, mac);
        }
        r = write_seed(pod, spec, pod->vmpod.podnet ? &net : NULL, user_data, err);
        if (r < 0)
                return r;
        r = listen_at(pod->dir_fd, pod->dir, VM_CONSOLE_SOCKET, pod->uid, pod->gid,
                      &pod->console_listen, err);
        if (r >= 0)
                r = listen_at(pod->dir_fd, pod->dir, VM_AGENT_SOCKET, pod->uid, pod->gid,
                              &pod->agent_listen, err);
        if (r < 0)
                return r;

        if (pod->vmpod.podnet) {
                host_tap_name(pod->namespace, pod->vmpod.id, pod->host_tap);
                r = vmm_libvirt_daemon_netns(pod->config->vm.libvirt_uri, pod->libvirt_netns,
                                             sizeof(pod->libvirt_netns), err);
                if (r >= 0)
                        r = netplumb_host_tap_create(pod->libvirt_netns, pod->host_tap, err);
                if (r < 0)
                        return us_error_wrap(err, r, "the VM's tap");
                pod->host_tap_made = true;
        }

        char disk_file[PATH_MAX], base[PATH_MAX], seed[PATH_MAX], console[PATH_MAX],
                agent[PATH_MAX];
        snprintf(disk_file, sizeof(disk_file), "%s/" VM_DISK_OVERLAY, pod->dir);
        snprintf(base, sizeof(base), "%s/" VM_DISK_BASE, pod->dir);
        snprintf(seed, sizeof(seed), "%s/" VM_SEED, pod->dir);
        snprintf(console, sizeof(console), "%s/" VM_CONSOLE_SOCKET, pod->dir);
        snprintf(agent, sizeof(agent), "%s/" VM_AGENT_SOCKET, pod->dir);
        const char *uid = us_oci_spec_annotation(spec, CRI_SANDBOX_UID);
        const struct vmm_domain_config dc = {
                .name = pod->domain,
                .uuid = uid && vmm_uuid_valid(uid) ? uid : NULL,
                .kvm = accel_kvm(&pod->config->vm),
                .vcpus = c->size.vcpus,
                .memory_mib = c->size.memory_mib,
                .disk = disk_file,
                .backing = base,
                .backing_format = disk->format,
                .seed = seed,
                .tap = pod->host_tap_made ? pod->host_tap : NULL,
                .mac = pod->host_tap_made ? mac : NULL,
                .console_socket = console,
                .agent_socket = agent,
                .uid = pod->uid,
                .gid = pod->gid,
        };
        _cleanup_free_ char *xml = NULL;
        r = vmm_domain_xml(&dc, &xml, err);
        if (r < 0)
                return r;
        r = vmm_libvirt_create(pod->lv, xml, true, domain_event, pod, domain_created, c, &pod->dom,
                               err);
        if (r < 0)
                return us_error_wrap(err, r, "create domain %s", pod->domain);
        return 0;
}

/* The rest, once the domain exists: the VM in the pod's cgroup, wired into
 * its network, its console and agent served. On failure vm_remove undoes
 * it. */
static int vm_made(struct vm_pod *pod, int console_out /* taken */, struct us_error **err)
{
        int r;
        /* QEMU connected its console while it started: that connection's
         * peer is QEMU, whose pid libvirt's API does not give. */
        int c = accept_qemu(pod, pod->console_listen, &pod->qemu_pid);
        if (c < 0) {
                us_close(console_out);
                return us_error_msg(err, EPROTO,
                                    "QEMU of domain %s did not connect its console (%s)",
                                    pod->domain, strerror(-c));
        }
        r = pump_start(pod->vmpod.loop, &pod->console, c, console_out, err);
        if (r < 0)
                return r;
        /* Before the console's first byte (the loop has not read it yet):
         * what of the container the guest does not run, where kubectl logs
         * shows it. One short line into an empty pipe: written whole, or
         * (no reader) not at all. */
        char note[1024];
        size_t n = vm_spec_note(pod->vm->spec, note, sizeof(note));
        if (pod->console.to >= 0)
                (void)us_write_some(pod->console.to, note, n, false);
        r = vmm_qga_new(pod->vmpod.loop, VM_AGENT_CALL_MS, &pod->qga, err);
        if (r < 0)
                return r;
        r = us_loop_add_fd(pod->vmpod.loop, pod->agent_listen, EPOLLIN, agent_connected, pod,
                           &pod->agent_listen_src, err);
        if (r < 0)
                return r;
        agent_connected(NULL, pod->agent_listen, EPOLLIN, pod);

        /* The VM's host cost where the pod's limits apply. (A host without
         * a memory controller has no OOM kills to count.) */
        pod->oom_kills = 0;
        (void)us_cgroup_oom_count(pod->vmpod.cgroup, &pod->oom_kills, NULL);
        r = us_cgroup_enter(pod->vmpod.cgroup, pod->qemu_pid, err);
        if (r < 0)
                return us_error_wrap(err, r, "move QEMU (pid %d) into the pod's cgroup",
                                     (int)pod->qemu_pid);
        if (pod->host_tap_made) {
                /* (the same as planned above) */
                _cleanup_free_ struct netplumb_vm_net *wired = NULL;
                r = vmpod_wire(&pod->vmpod, pod->libvirt_netns, pod->host_tap, &wired, err);
                if (r < 0)
                        return r;
                pod->host_tap_made = false; /* in the pod's netns now, unwire's */
        }
        return 0;
}

/* ---- tasks ---- */

static void task_free(struct vm_task *t)
{
        if (!t)
                return;
        struct vm_pod *pod = t->pod;
        for (struct vm_task **pp = &pod->tasks; *pp; pp = &(*pp)->next) {
                if (*pp == t) {
                        *pp = t->next;
                        break;
                }
        }
        if (pod->vm == t)
                vm_remove(pod);
        us_oci_spec_free(t->spec);
        free(t->id);
        free(t);
}

static bool pod_has_vm_task(const struct vm_pod *pod)
{
        for (const struct vm_task *t = pod->tasks; t; t = t->next)
                if (t->is_pod)
                        return true;
        return false;
}

/* A failed create leaves nothing of its task, nor of a pod it started. */
static void create_undo(struct vm_create *c)
{
        struct vm_task *t = c->t;
        struct vm_pod *pod = t->pod;
        /* A task never created exits never: the VM it had goes without a
         * word to containerd. */
        t->exited = true;
        task_free(t);
        if (c->started_pod && !pod->tasks) {
                pod_free(pod);
                *c->pod_slot = NULL;
        }
        c->console_out = us_close(c->console_out);
}

/* Ends a create that returned -EINPROGRESS: the task is the service's on
 * success. */
static void create_end(struct vm_create *c, int r, struct us_error *err)
{
        struct vm_task *t = c->t;
        if (r >= 0) {
                *c->ret_impl = t;
                *c->ret_pty = -1;
        } else {
                us_error_wrap(&err, r, "container %s of vm pod %s", t->id, t->pod->vmpod.id);
                create_undo(c);
        }
        us_close(c->console_out);
        struct shim_op *op = c->op;
        free(c);
        if (op)
                op->done(op, r, err);
        else
                us_error_free(err);
}

static void pod_opened(void *userdata, int r, struct us_error *err)
{
        struct vm_create *c = userdata;
        struct vm_pod *pod = c->t->pod;
        if (r < 0) {
                const char *uri = pod->config->vm.libvirt_uri;
                us_error_wrap(&err, r,
                              "vm pods run on the node's libvirtd, which is not reachable at "
                              "%s (is libvirtd running?)",
                              uri ? uri : "qemu:///system");
        } else if (pod->vmpod.torn_down) {
                r = us_error_msg(&err, ECANCELED, "the pod was removed meanwhile");
        }
        create_end(c, r, err);
}

static void domain_created(void *userdata, int r, struct us_error *err)
{
        struct vm_create *c = userdata;
        struct vm_task *t = c->t;
        struct vm_pod *pod = t->pod;
        if (r >= 0 && pod->vm != t) {
                /* The pod ended meanwhile (its sandbox killed): vm_remove
                 * has queued the domain's destroy after its create. */
                r = us_error_msg(&err, ECANCELED, "the pod was removed meanwhile");
        } else if (r >= 0) {
                r = vm_made(pod, TAKE_FD(c->console_out), &err);
                if (r < 0)
                        vm_remove(pod);
        } else if (pod->vm == t) {
                us_error_wrap(&err, r, "create domain %s", pod->domain);
                vm_remove(pod);
        }
        create_end(c, r, err);
}

static void disk_ready(void *userdata, int r, struct us_error *err, const struct vm_disk *disk)
{
        struct vm_create *c = userdata;
        struct vm_task *t = c->t;
        struct vm_pod *pod = t->pod;
        pod->disk_prep = NULL; /* (it freed itself) */
        if (r >= 0 && pod->vm != t)
                r = us_error_msg(&err, ECANCELED, "the pod was removed meanwhile");
        else if (r >= 0)
                r = vm_make_domain(pod, c, disk, &err);
        if (r < 0 && pod->vm == t)
                vm_remove(pod);
        if (r < 0)
                create_end(c, r, err);
}

static void disk_cancelled(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct us_error *err = NULL;
        int r = us_error_msg(&err, ECANCELED, "the pod was removed meanwhile");
        disk_ready(userdata, r, err, NULL);
}

static int vm_create(const struct shim_backend_env *env, void *task_cookie,
                     const struct shim_pod_decision *decision, void **ret_impl, int *ret_pty,
                     struct shim_op *op, struct us_error **err)
{
        const struct us_container_config *cfg = &decision->container;
        struct vm_pod *pod = *env->pod;
        bool sandbox = vmpod_is_cri_sandbox(cfg->spec);
        if (pod && (sandbox || pod->vmpod.torn_down))
                return us_error_msg(err, EINVAL, "vm pod %s %s", pod->vmpod.id,
                                    sandbox ? "already has its sandbox" : "is gone");
        if (pod && pod->vm && pod->vm_ended) {
                /* The VM's container exited and the kubelet restarts it
                 * before it removes the old one: the old VM's host side
                 * goes now, its task stays for its status and logs. */
                vm_remove(pod);
        }
        if (pod && pod->vm)
                return us_error_msg(err, EINVAL,
                                    "container %s: a vm pod runs one VM (container %s); only its "
                                    "mesh sidecars may join it",
                                    cfg->id, pod->vm->id);
        /* Before anything is made for the VM: nothing to undo. */
        int r = sandbox ? 0 : vm_spec_check_mounts(cfg->spec, err);
        if (r < 0) {
                const char *pod_id = us_oci_spec_annotation(cfg->spec, CRI_SANDBOX_ID);
                return us_error_wrap(err, r, "container %s of vm pod %s", cfg->id,
                                     pod                 ? pod->vmpod.id
                                     : pod_id && *pod_id ? pod_id
                                                         : cfg->id);
        }
        struct vm_create *c = calloc(1, sizeof(*c));
        struct vm_task *t = calloc(1, sizeof(*t));
        if (!c || !t || !(t->id = strdup(cfg->id))) {
                free(c);
                free(t);
                return us_errorf(err, ENOMEM, "allocate task");
        }
        *c = (struct vm_create){.op = op,
                                .t = t,
                                .pod_slot = env->pod,
                                .ret_impl = ret_impl,
                                .ret_pty = ret_pty,
                                .console_out = -1,
                                .size = decision->size};
        if (!pod) {
                /* A new pod's CRI sandbox waits for its connection (nothing
                 * below can fail for it: c is the open's until it answers);
                 * a VM's create hears of a failed open itself. */
                r = pod_start(env, decision, sandbox ? pod_opened : NULL, c, &pod, err);
                if (r < 0) {
                        free(t->id);
                        free(t);
                        free(c);
                        return r;
                }
                *env->pod = pod;
                c->started_pod = true;
        }
        t->pod = pod;
        t->cookie = task_cookie;
        t->is_pod = c->started_pod;
        t->is_vm = !sandbox;
        t->next = pod->tasks;
        pod->tasks = t;
        if (t->is_vm) {
                pod->vm = t;
                pod->destroyed = pod->crashed = pod->vm_ended = false;
                t->spec = cfg->spec; /* (read once its disk is ready) */
                if (cfg->stdio.out >= 0 &&
                    (c->console_out = fcntl(cfg->stdio.out, F_DUPFD_CLOEXEC, 3)) < 0)
                        r = us_errorf(err, errno, "the container's stdout");
                else
                        r = vm_make(pod, decision, c, err);
                if (r < 0) {
                        r = us_error_wrap(err, r, "container %s of vm pod %s", cfg->id,
                                          pod->vmpod.id);
                        vm_remove(pod);
                        t->spec = NULL; /* still the caller's: it frees it */
                        create_undo(c);
                        free(c);
                        return r;
                }
        }
        /* The spec is ours from here, as the contract says. */
        t->spec = cfg->spec;
        /* The VM's create, or a new pod's connection, answers later. */
        if (t->is_vm || c->started_pod)
                return -EINPROGRESS;
        free(c);
        *ret_impl = t;
        *ret_pty = -1;
        return 0;
}

static pid_t vm_pid(void *impl)
{
        struct vm_task *t = impl;
        /* The sandbox task has no process: the shim stands for it. */
        return t->is_vm && t->pod->qemu_pid > 0 ? t->pod->qemu_pid : getpid();
}

static int vm_act(struct vm_pod *pod, enum vmm_libvirt_action action, struct shim_op *op,
                  struct us_error **err)
{
        int r = vmm_libvirt_act(pod->dom, action, acted, op, err);
        return r < 0 ? r : -EINPROGRESS;
}

/* Resumes (the VM's Start and Resume) or suspends (Pause) its domain; the
 * pod's own task has none. */
static int vm_set_running(void *impl, bool running, struct shim_op *op, struct us_error **err)
{
        struct vm_task *t = impl;
        if (!t->is_vm)
                return 0;
        if (!t->pod->dom || t->pod->vm_ended)
                return us_error_msg(err, ESRCH, "the VM of container %s is gone", t->id);
        return vm_act(t->pod, running ? VMM_LIBVIRT_RESUME : VMM_LIBVIRT_SUSPEND, op, err);
}

static int vm_start(void *impl, struct shim_op *op, struct us_error **err)
{
        return vm_set_running(impl, true, op, err);
}

static int vm_kill(void *impl, int sig, bool all, struct shim_op *op, struct us_error **err)
{
        (void)all;
        struct vm_task *t = impl;
        struct vm_pod *pod = t->pod;
        if (t->is_pod && !t->is_vm) {
                if (sig == 0)
                        return pod->vmpod.torn_down ? -ESRCH : 0;
                pod_teardown(pod); /* any deadly signal ends the pod */
                return 0;
        }
        if (!pod->dom || pod->vm_ended)
                return -ESRCH;
        if (sig == 0)
                return 0;
        /* (a paused guest has no one to press its power button: destroyed) */
        if (sig == SIGTERM || sig == SIGINT || sig == SIGPWR)
                return vm_act(pod, VMM_LIBVIRT_SHUTDOWN, op, err);
        if (sig != SIGKILL)
                return us_error_msg(err, EINVAL,
                                    "signal %d has no meaning for the VM of container %s: SIGTERM "
                                    "shuts it down (ACPI), SIGKILL destroys it",
                                    sig, t->id);
        pod->destroyed = true;
        return vm_act(pod, VMM_LIBVIRT_DESTROY, op, err);
}

static int vm_kill_exec(void *impl, const char *exec_id, pid_t pid, int sig, struct shim_op *op,
                        struct us_error **err)
{
        (void)impl;
        (void)exec_id;
        (void)pid;
        (void)sig;
        (void)op;
        (void)err;
        return -ESRCH;
}

static int vm_pause(void *impl, struct shim_op *op, struct us_error **err)
{
        return vm_set_running(impl, false, op, err);
}

static int vm_resume(void *impl, struct shim_op *op, struct us_error **err)
{
        return vm_set_running(impl, true, op, err);
}

static int vm_update(void *impl, const struct us_oci_resources *res, const char *json,
                     size_t json_len, struct shim_op *op, struct us_error **err)
{
        (void)impl;
        (void)res;
        (void)json;
        (void)json_len;
        (void)op;
        (void)err;
        return 0; /* the VM's size is fixed at boot */
}

typedef Io__Containerd__Cgroups__V1__BlkIOEntry BlkIOEntry;

/* A Stats of the VM: the pod's cgroup (QEMU's whole host cost: CPU,
 * memory), with libvirt's figures of the guest's disks as its blkio. */
struct vm_stats_call {
        struct shim_op *op;
        uint8_t **ret;
        size_t *ret_len;
        Io__Containerd__Cgroups__V1__Metrics *m;
};

static BlkIOEntry *blk_entry(const char *device, const char *op, uint64_t value)
{
        BlkIOEntry *e = malloc(sizeof(*e));
        if (!e)
                return NULL;
        io__containerd__cgroups__v1__blk_ioentry__init(e);
        e->value = value;
        if (!(e->device = strdup(device)) || !(e->op = strdup(op))) {
                free(e->device);
                free(e);
                return NULL;
        }
        return e;
}

/* The guest's disks as blkio: what the workload read and wrote, as a
 * container's blkio is (the host's side of it, QEMU's page cache and
 * files, is not the workload's I/O). Allocated the way
 * us_cgroup_stats_free frees. */
static int guest_blkio(Io__Containerd__Cgroups__V1__Metrics *m, const struct vmm_libvirt_stats *st)
{
        Io__Containerd__Cgroups__V1__BlkIOStat *b = malloc(sizeof(*b));
        if (!b)
                return -ENOMEM;
        io__containerd__cgroups__v1__blk_iostat__init(b);
        if (m->blkio)
                protobuf_c_message_free_unpacked(&m->blkio->base, NULL);
        m->blkio = b;
        size_t n = st->n_disks * 2;
        if (n == 0)
                return 0;
        b->io_service_bytes_recursive = calloc(n, sizeof(BlkIOEntry *));
        b->io_serviced_recursive = calloc(n, sizeof(BlkIOEntry *));
        if (!b->io_service_bytes_recursive || !b->io_serviced_recursive)
                return -ENOMEM;
        for (size_t i = 0; i < st->n_disks; i++) {
                const struct vmm_libvirt_disk_stats *d = &st->disks[i];
                BlkIOEntry *e[4] = {blk_entry(d->name, "Read", d->rd_bytes),
                                    blk_entry(d->name, "Write", d->wr_bytes),
                                    blk_entry(d->name, "Read", d->rd_reqs),
                                    blk_entry(d->name, "Write", d->wr_reqs)};
                b->io_service_bytes_recursive[b->n_io_service_bytes_recursive++] = e[0];
                b->io_service_bytes_recursive[b->n_io_service_bytes_recursive++] = e[1];
                b->io_serviced_recursive[b->n_io_serviced_recursive++] = e[2];
                b->io_serviced_recursive[b->n_io_serviced_recursive++] = e[3];
                if (!e[0] || !e[1] || !e[2] || !e[3])
                        return -ENOMEM;
        }
        return 0;
}

static void stats_got(void *userdata, int r, struct us_error *err,
                      const struct vmm_libvirt_stats *st)
{
        struct vm_stats_call *c = userdata;
        /* libvirt not answering costs the guest's disks, not the answer. */
        if (r < 0)
                us_log_debug("the VM's disk stats: %s", us_error_text(err));
        us_error_free(err);
        err = NULL;
        if (r >= 0)
                r = guest_blkio(c->m, st);
        size_t len = protobuf_c_message_get_packed_size(&c->m->base);
        uint8_t *buf = r >= 0 ? malloc(len ? len : 1) : NULL;
        if (buf) {
                protobuf_c_message_pack(&c->m->base, buf);
                *c->ret = buf;
                *c->ret_len = len;
                r = 0;
        } else {
                r = us_errorf(&err, ENOMEM, "the VM's stats");
        }
        us_cgroup_stats_free(c->m);
        c->op->done(c->op, r, err);
        free(c);
}

static int vm_stats(void *impl, uint8_t **ret, size_t *ret_len, struct shim_op *op,
                    struct us_error **err)
{
        struct vm_task *t = impl;
        struct vm_pod *pod = t->pod;
        /* The VM's cost on the host: its QEMU is in the pod's cgroup. */
        if (!pod->vmpod.cgroup)
                return us_error_msg(err, ENOENT, "vm pod %s is stopped", pod->vmpod.id);
        if (!t->is_vm || !pod->dom || pod->vm_ended || !op)
                return us_cgroup_stats_packed(pod->vmpod.cgroup, ret, ret_len, err);
        struct vm_stats_call *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "the VM's stats");
        *c = (struct vm_stats_call){.op = op, .ret = ret, .ret_len = ret_len};
        int r = us_cgroup_stats(pod->vmpod.cgroup, &c->m, err);
        if (r >= 0)
                r = vmm_libvirt_stats(pod->dom, stats_got, c, err);
        if (r < 0) {
                us_cgroup_stats_free(c->m);
                free(c);
                return r;
        }
        return -EINPROGRESS;
}

static int vm_pids(void *impl, pid_t **ret, size_t *ret_n, struct shim_op *op,
                   struct us_error **err)
{
        (void)op;
        pid_t *p = malloc(sizeof(*p));
        if (!p)
                return us_errorf(err, ENOMEM, "pids");
        p[0] = vm_pid(impl);
        *ret = p;
        *ret_n = 1;
        return 0;
}

static int vm_oom_watch(void *impl, int *ret_fd, uint64_t *ret_count, struct us_error **err)
{
        (void)impl;
        (void)ret_fd;
        (void)ret_count;
        (void)err;
        return -ENOTSUP; /* QEMU's OOM kill is told with its end (vm_ended) */
}

static int vm_oom_event(void *impl, int fd, uint64_t *count, bool *ret_oom, struct us_error **err)
{
        (void)impl;
        (void)fd;
        (void)count;
        (void)err;
        *ret_oom = false;
        return 0;
}

static int vm_destroy(void *impl, struct us_error **err)
{
        (void)err;
        struct vm_task *t = impl;
        struct vm_pod *pod = t->pod;
        /* Deleted: its exit was reported, or is containerd's own (a task
         * never started); nothing more is said of it. */
        t->exited = true;
        if (t->is_vm && pod->vm == t)
                vm_remove(pod);
        /* The pod goes with its CRI sandbox task, or with the task of a pod
         * that has none (ctr run). */
        if (t->is_pod || !pod_has_vm_task(pod))
                pod_teardown(pod);
        return 0;
}

static void vm_free(void *impl)
{
        task_free(impl);
}

static bool vm_child_exited(void *impl, pid_t pid, int wait_status)
{
        struct vm_pod *pod = impl;
        return vm_disk_prep_child_exited(pod->disk_prep, pid, wait_status);
}

static int pod_host_namespaces(void *impl, const char **ret_netns, const char **ret_hostname,
                               struct us_error **err)
{
        struct vm_pod *pod = impl;
        if (!pod)
                return us_error_msg(err, ENOENT, "the pod has no network namespace");
        return vmpod_host_namespaces(&pod->vmpod, ret_netns, ret_hostname, err);
}

/* `shim delete` after the pod's shim died: its domain died with the
 * shim's libvirt connection (AUTODESTROY). Left: the disk's mount, a tap
 * never moved, libvirt's log of the domain, and the pod's host side. */
static int vm_cleanup_dead(const char *namespace, const char *id, const struct us_oci_spec *spec,
                           struct us_error **err)
{
        char state[PATH_MAX];
        const char *pod_id = NULL;
        if (!vmpod_dead_state_dir(namespace, id, spec, POLICY_ISOLATION_VM, state, sizeof(state),
                                  &pod_id))
                return 0;
        char dir[PATH_MAX + 8];
        snprintf(dir, sizeof(dir), "%s/" VM_DIR, state);
        _cleanup_close_ int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir_fd < 0)
                return 0; /* not a vm pod's */
        int r = vm_disk_release(dir_fd, err);
        /* A tap never moved is in libvirtd's namespace (gone with it, if it
         * is not running). */
        char tap[IFNAMSIZ], netns[64];
        host_tap_name(namespace, pod_id, tap);
        if (vmm_libvirt_daemon_netns(NULL, netns, sizeof(netns), NULL) == 0) {
                int rt = netplumb_host_tap_delete(netns, tap, r < 0 ? NULL : err);
                if (rt < 0 && r == 0)
                        r = rt;
        }
        /* The domain may still be going (libvirtd's AUTODESTROY runs when
         * it notices the connection gone): its log is written to the end
         * only once it is. */
        char domain[VMM_DOMAIN_NAME_MAX + 1], log[PATH_MAX];
        vmm_domain_name(pod_name_of(spec, pod_id), pod_id, domain);
        struct us_error *derr = NULL;
        if (vmm_libvirt_destroy_by_name(NULL, domain, &derr) < 0)
                us_log_warn("destroy domain %s: %s", domain, us_error_text(derr));
        us_error_free(derr);
        snprintf(log, sizeof(log), VM_LIBVIRT_LOG "/%s.log", domain);
        (void)unlink(log);
        if (!vmpod_is_cri_sandbox(spec) && strcmp(pod_id, id) != 0)
                return r; /* the VM's task: the pod's task takes the rest */
        dir_fd = us_close(dir_fd);
        int rp = vmpod_cleanup_dead(state, pod_id, spec, r < 0 ? NULL : err);
        return r < 0 ? r : rp;
}

const struct shim_backend shim_backend_vm = {
        .name = "vm",
        .host_pty = false,
        .create = vm_create,
        .pid = vm_pid,
        .start = vm_start,
        .exec = vm_exec,
        .kill = vm_kill,
        .kill_exec = vm_kill_exec,
        .pause = vm_pause,
        .resume = vm_resume,
        .update = vm_update,
        .stats = vm_stats,
        .pids = vm_pids,
        .oom_watch = vm_oom_watch,
        .oom_event = vm_oom_event,
        .destroy = vm_destroy,
        .free = vm_free,
        .child_exited = vm_child_exited,
        .pod_free = pod_free,
        .host_namespaces = pod_host_namespaces,
        .cleanup_dead = vm_cleanup_dead,
};
