/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox kind: the pod runs in a QEMU microvm whose PID 1 is our guest
 * agent; the agent runs the pod's containers with libunishim's engine.
 *
 * Per pod (one shim): what every VM kind's pod has on the host (vmpod.h:
 * state dir, the tap wired into the pod netns, the VM's cgroup), one VM,
 * one shared directory where each container's rootfs and bind-mount
 * sources are bind-mounted (share.h), exported by a virtiofsd or by QEMU's
 * own 9p server (sandbox.shared_fs), and the channel to the
 * guest agent (agent.h), on which every call and each guest process's long
 * polls (io.h) are answered from the loop.
 *
 * The CRI sandbox task (the pause container) is the VM itself: its pid is
 * QEMU's, its exit is QEMU's. A container without a CRI sandbox (ctr run)
 * starts the VM as well and tears it down with itself.
 *
 * Everything the guest sends is hostile: replies are unpacked with checks,
 * ids and sizes are validated, and a guest that misbehaves fails its own
 * pod, never the shim.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.pb-c.h"
#include "shim/backend.h"
#include "cgroup/cgroup.h"
#include "base/cleanup.h"
#include "base/id.h"
#include "base/log.h"
#include "netplumb/netplumb.h"
#include "policy/policy.h"
#include "vmm/qemu.h"
#include "vmm/template-cache.h"
#include "shim/rootfs.h"
#include "agent.h"
#include "idmap.h"
#include "image.h"
#include "io.h"
#include "share.h"
#include "spec.h"
#include "template.h"
#include "ttrpc/ttrpc.h"
#include "shim/vmpod.h"

#define GUEST_SHARE_DIR "/run/unishim/shared"
/* virtiofsd's ranges (idmap.h) never meet QEMU's uids: pids are below
 * PID_MAX_LIMIT, 2^22. */
_Static_assert(SANDBOX_IDMAP_BASE >= VMPOD_QEMU_UID_BASE + (1u << 22),
               "QEMU's uids and virtiofsd's");

struct sandbox_pod;

struct sandbox_task {
        struct sandbox_task *next;
        struct sandbox_pod *pod;
        void *cookie;
        char *id;
        bool is_vm; /* the CRI sandbox: the VM itself */
        bool in_guest;
        bool shared;                  /* its rootfs and binds are in the pod's share */
        struct sandbox_container ctr; /* its processes in the guest (io.h) */
        struct us_oci_spec *spec;
};

struct sandbox_pod {
        struct vmpod vmpod; /* state dir, network, cgroup, the end's bookkeeping */
        void (*process_exited)(void *cookie, const char *exec_id, uint32_t status);
        void (*oom)(void *cookie);
        struct sandbox_share *share;
        /* The user namespace and uid range of what serves the share
         * (virtiofsd, or QEMU with 9p) */
        struct sandbox_idmap idmap;
        bool ninep; /* the share is QEMU's 9p device, not virtio-fs */
        struct vmm_vm *vm;
        struct sandbox_agent agent;
        uint64_t oom_call;
        unsigned oom_answers;              /* since the last pause */
        unsigned oom_pause_ms;             /* the last pause (0: none yet) */
        int64_t oom_poll_sent_ms;          /* when the poll in flight went out */
        struct us_loop_source *oom_paused; /* the pause's timer */
        struct sandbox_task *tasks;
        bool dead; /* QEMU gone */
        /* How to boot cold: at the start, or when a restore failed. */
        struct {
                char *kernel, *initrd;
                struct policy_vm_size size;
                enum vmm_accel accel;
                size_t console_log_max;
                bool debug;
                char mac[18]; /* "" without a network */
                int tap_fd;   /* kept until the boot is final (-1 after) */
        } cold;
        /* A start from the node's VM template (shim/sandbox/template.h).
         * While restoring, a failure of the clone (QEMU, the migration, any
         * step of its boot) is no failure of the pod: it boots cold. */
        struct vmm_template_inputs tin;
        bool tin_set;
        char tkey[VMM_TEMPLATE_KEY_LEN + 1]; /* "" without inputs */
        char *template_dir;
        unsigned template_max; /* sandbox.template_max */
        char *config_path;     /* the operator's config, for the build */
        struct vmm_template_entry tentry;
        bool restoring;                    /* a clone until its UpdateNetwork answered */
        bool restore_pending;              /* vmm_vm_template_restore's done not yet called */
        bool restored;                     /* the guest is a clone (UpdateNetwork's device_mac) */
        bool build_wanted;                 /* missed: build once the pod is up */
        pid_t build_pid;                   /* the background `unishimctl template build` */
        struct create_ctx *boot_ctx;       /* the create that waits for the boot */
        struct us_loop_source *cold_timer; /* the fallback, from the loop */
        bool falling_back;                 /* in pod_cold_now */
        bool rebuild;                      /* QEMU could not load the entry */
        char *cold_why;
};

static void pod_teardown(struct sandbox_pod *pod);
static void pod_free(void *impl);
static void task_free(struct sandbox_task *t);

/* ---- the pod: state, VM, agent ---- */

static struct sandbox_task *task_find(struct sandbox_pod *pod, const char *id)
{
        for (struct sandbox_task *t = pod->tasks; t; t = t->next)
                if (strcmp(t->id, id) == 0)
                        return t;
        return NULL;
}

static void oom_poll(struct sandbox_pod *pod);

/* A guest without OOM kills holds GetOOMEvent; one that answers it at once,
 * forever, would have the shim poll in a busy loop (and publish an event
 * for each answer naming a container). After OOM_POLL_BURST answers the
 * next poll waits: OOM_POLL_PAUSE_MS, doubled for each burst that follows
 * up to OOM_POLL_PAUSE_MAX_MS (a flood reaches containerd at a trickle),
 * back to the start once a poll was held that long (a quiet guest). A real
 * burst of kills is reported late (the agent queues them, the newest
 * kept). */
#define OOM_POLL_BURST        16
#define OOM_POLL_PAUSE_MS     1000
#define OOM_POLL_PAUSE_MAX_MS 64000

static void oom_resume(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct sandbox_pod *pod = userdata;
        pod->oom_paused = NULL;
        pod->oom_answers = 0;
        oom_poll(pod);
}

static void oom_got(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                    void *userdata)
{
        (void)err;
        struct sandbox_pod *pod = userdata;
        pod->oom_call = 0;
        /* Cancelled, the channel gone, or the agent declared dead: the end.
         * An error the guest answered is an answer like any other: the
         * watch goes on, paced as below. */
        if (status == -ECANCELED || status == -ECONNRESET || status == -ENOTCONN ||
            status == -ETIMEDOUT || pod->agent.dead)
                return;
        if (us_monotonic_ms() - pod->oom_poll_sent_ms >= OOM_POLL_PAUSE_MAX_MS)
                pod->oom_pause_ms = 0;
        Unishim__Agent__V1__OOMEvent *ev =
                status < 0 ? NULL : unishim__agent__v1__oomevent__unpack(NULL, len, payload);
        if (ev && ev->container_id) {
                struct sandbox_task *t = task_find(pod, ev->container_id);
                if (t)
                        pod->oom(t->cookie);
        }
        if (ev)
                unishim__agent__v1__oomevent__free_unpacked(ev, NULL);
        if (++pod->oom_answers < OOM_POLL_BURST) {
                oom_poll(pod);
                return;
        }
        pod->oom_pause_ms = pod->oom_pause_ms == 0 ? OOM_POLL_PAUSE_MS : pod->oom_pause_ms * 2;
        if (pod->oom_pause_ms > OOM_POLL_PAUSE_MAX_MS)
                pod->oom_pause_ms = OOM_POLL_PAUSE_MAX_MS;
        if (us_loop_add_timer(pod->vmpod.loop, pod->oom_pause_ms, oom_resume, pod, &pod->oom_paused,
                              NULL) < 0)
                us_log_warn("pod %s: its OOM kills are no longer watched (no timer)",
                            pod->vmpod.id);
}

static void oom_poll(struct sandbox_pod *pod)
{
        Unishim__Agent__V1__Empty req = UNISHIM__AGENT__V1__EMPTY__INIT;
        if (pod->oom_call || pod->oom_paused)
                return;
        pod->oom_poll_sent_ms = us_monotonic_ms();
        (void)sandbox_agent_poll(&pod->agent, "GetOOMEvent", &req.base, 0, oom_got, pod,
                                 &pod->oom_call);
}

/* A VM that died on its own takes its console log with the pod's state
 * dir: put the end of it where an operator looks, containerd's log. */
static void log_console_tail(const struct sandbox_pod *pod)
{
        char buf[2048];
        size_t n = pod->vm ? vmm_vm_console_tail(pod->vm, buf, sizeof(buf)) : 0;
        if (n == 0)
                return;
        /* Guest bytes: nothing that could steer a terminal or forge a line. */
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
                        buf[i] = ' ';
        us_log_warn("pod %s: the VM exited unexpectedly; end of its console: %.*s", pod->vmpod.id,
                    (int)n, buf);
}

/* Every process of the pod ends when the VM does. */
static void pod_vm_gone(struct sandbox_pod *pod)
{
        if (pod->dead)
                return;
        pod->dead = true;
        pod->agent.stopped = true;
        if (!pod->vmpod.torn_down)
                log_console_tail(pod);
        int ws = pod->vm ? vmm_vm_exit_status(pod->vm) : -1;
        for (struct sandbox_task *t = pod->tasks; t; t = t->next) {
                for (struct sandbox_proc *p = t->ctr.procs; p; p = p->next) {
                        if (p->exited)
                                continue;
                        p->exited = true;
                        uint32_t status = 255;
                        if (t->is_vm && ws >= 0)
                                status = WIFEXITED(ws) ? (uint32_t)WEXITSTATUS(ws)
                                                       : 128u + (uint32_t)WTERMSIG(ws);
                        pod->process_exited(t->cookie, p->exec_id, status);
                }
        }
}

/* ---- a task's create: the pod's boot and the container in the guest,
 * answered from the loop ---- */

struct create_ctx {
        struct sandbox_task *t;
        struct shim_op *op;
        void **pod_slot; /* the shim's per-pod slot, emptied if the pod goes */
        bool started_pod;
        void **ret_impl;
        int *ret_pty;
        char *json; /* the guest's spec (CreateContainer); NULL: the VM task */
        size_t json_len;
        /* CreateContainer's local_dirs: emptyDir volumes kept in the guest */
        Unishim__Agent__V1__PodLocalDir *local_dirs;
        size_t n_local_dirs;
        struct netplumb_vm_net *vmnet; /* UpdateNetwork; NULL: no network */
};

static void create_ctx_free(struct create_ctx *ctx)
{
        for (size_t i = 0; i < ctx->n_local_dirs; i++)
                free(ctx->local_dirs[i].name);
        free(ctx->local_dirs);
        free(ctx->json);
        free(ctx->vmnet);
        free(ctx);
}

/* A create that failed leaves nothing: the task, and the pod if it was
 * its first. */
static void create_failed(struct create_ctx *ctx, int r, struct us_error **err)
{
        struct sandbox_pod *pod = ctx->t->pod;
        if (pod->boot_ctx == ctx)
                pod->boot_ctx = NULL;
        task_free(ctx->t);
        /* A pod being torn down (whose teardown cancelled this step) stays
         * in its slot, for pod_free when the shim exits: the teardown is
         * still using it. */
        if (ctx->started_pod && !pod->tasks && !pod->vmpod.torn_down) {
                pod_free(pod);
                *ctx->pod_slot = NULL;
        }
        ctx->op->done(ctx->op, r, TAKE_PTR(*err));
        create_ctx_free(ctx);
}

static void create_done(struct create_ctx *ctx)
{
        if (ctx->t->pod->boot_ctx == ctx)
                ctx->t->pod->boot_ctx = NULL;
        *ctx->ret_impl = ctx->t;
        *ctx->ret_pty = -1;
        ctx->op->done(ctx->op, 0, NULL);
        create_ctx_free(ctx);
}

static int send_create(struct create_ctx *ctx, struct us_error **err);
static int send_check(struct create_ctx *ctx, struct us_error **err);
static int send_storage(struct create_ctx *ctx, struct us_error **err);
static int send_network(struct create_ctx *ctx, struct us_error **err);

static void pod_fallback(struct sandbox_pod *pod, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Each step's reply sends the next: Restore (a clone of the template),
 * Check, AddStorage, UpdateNetwork (a new pod), then CreateContainer (a
 * container). */
static void create_step(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                        struct us_error **err)
{
        struct create_ctx *ctx = c->ctx;
        struct sandbox_pod *pod = ctx->t->pod;
        if (r >= 0 && strcmp(c->method, "Restore") == 0 && pod->restoring) {
                const Unishim__Agent__V1__RestoreResponse *rr = (const void *)resp;
                /* The guest's words: printable only, a uuid's length. */
                char boot_id[37] = "?";
                if (rr && rr->boot_id && rr->boot_id[0]) {
                        snprintf(boot_id, sizeof(boot_id), "%s", rr->boot_id);
                        for (char *b = boot_id; *b; b++)
                                if ((unsigned char)*b < 0x20 || (unsigned char)*b >= 0x7f)
                                        *b = '?';
                }
                pod->restored = true;
                us_log_info("pod %s: restored from VM template %.12s (boot_id %s)", pod->vmpod.id,
                            pod->tkey, boot_id);
        }
        if (r >= 0) {
                if (strcmp(c->method, "Restore") == 0) {
                        r = send_check(ctx, err);
                } else if (strcmp(c->method, "Check") == 0) {
                        r = send_storage(ctx, err);
                } else if (strcmp(c->method, "AddStorage") == 0) {
                        r = send_network(ctx, err);
                } else if (strcmp(c->method, "UpdateNetwork") == 0) {
                        pod->agent.booting = false;
                        if (pod->restoring) { /* the clone is the pod's VM now */
                                pod->restoring = false;
                                pod->boot_ctx = NULL;
                                vmm_template_entry_clear(&pod->tentry);
                                pod->cold.tap_fd = us_close(pod->cold.tap_fd);
                        }
                        oom_poll(pod);
                        r = ctx->json ? send_create(ctx, err) : 0;
                } else { /* CreateContainer */
                        ctx->t->in_guest = true;
                        sandbox_proc_poll(ctx->t->ctr.procs);
                }
        }
        if (r == -EINPROGRESS)
                return;
        /* A clone that fails any step of its boot (Restore, Check,
         * AddStorage, UpdateNetwork), or the cold boot that replaces it
         * cancelling the call: the pod boots cold, its create waiting in
         * boot_ctx. Not when UpdateNetwork refuses the pod's own data (the
         * agent's EINVAL: a hostname, an address or route, a sysctl's
         * value the guest's kernel takes not): a cold guest would refuse
         * it the same, at the cost of a second VM. A pod being torn down
         * fails its create as any would. */
        bool pods_data = r == -EINVAL && strcmp(c->method, "UpdateNetwork") == 0;
        if (r < 0 && pod->restoring && !pod->vmpod.torn_down && !pods_data &&
            strcmp(c->method, "CreateContainer") != 0) {
                /* Restore carries nothing of the pod's: a clone that does
                 * not answer it came from a template whose guest will not
                 * run again (every clone of it would wait the same), so
                 * the template is rebuilt. Not a cancellation by the pod's
                 * own teardown or fallback. */
                if (strcmp(c->method, "Restore") == 0 && r != -ECANCELED)
                        pod->rebuild = true;
                pod_fallback(pod, "%s: %s", c->method, *err ? us_error_text(*err) : strerror(-r));
                return;
        }
        if (r < 0) {
                if (strcmp(c->method, "CreateContainer") != 0)
                        us_error_wrap(err, r, "start sandbox VM");
                create_failed(ctx, r, err);
                return;
        }
        create_done(ctx);
}

/* A clone answers Restore within a second under TCG (docs/vmm.md); one that
 * has not in this time is not coming, and the cold boot that replaces it
 * must still fit a CRI caller's deadline (crictl's and unishimctl's 60 s,
 * the kubelet's 2 min): Restore's deadline, not the booting guest's. */
#define RESTORE_MS 15000

static int send_step(struct create_ctx *ctx, const char *method, const ProtobufCMessage *req,
                     struct us_error **err)
{
        struct sandbox_acall *c = NULL;
        bool restore = strcmp(method, "Restore") == 0;
        int r = sandbox_agent_acall_within(
                &ctx->t->pod->agent, ctx->t, method, req,
                restore ? &unishim__agent__v1__restore_response__descriptor : NULL, create_step,
                NULL, &c, restore ? RESTORE_MS : 0, err);
        if (r == -EINPROGRESS)
                c->ctx = ctx;
        return r;
}

static int send_check(struct create_ctx *ctx, struct us_error **err)
{
        Unishim__Agent__V1__CheckRequest check = UNISHIM__AGENT__V1__CHECK_REQUEST__INIT;
        return send_step(ctx, "Check", &check.base, err);
}

/* How the guest mounts a 9p share: 9P2000.L (owners, modes, xattrs),
 * cache=mmap (a binary on the share can be mapped, so executed; the data
 * is not cached otherwise: the host's files stay the truth), 512 KiB
 * messages (8 KiB, the kernel's default, makes reads slow). */
static const char *const ninep_options[] = {"trans=virtio", "version=9p2000.L", "cache=mmap",
                                            "msize=524288"};

static int send_storage(struct create_ctx *ctx, struct us_error **err)
{
        Unishim__Agent__V1__Storage storage = UNISHIM__AGENT__V1__STORAGE__INIT;
        /* A clone's 9p device is the template's, with its tag. */
        storage.source = (char *)(ctx->t->pod->restored ? VMM_TEMPLATE_SHARE_TAG : GUEST_SHARE_TAG);
        storage.fstype = (char *)(ctx->t->pod->ninep ? "9p" : "virtiofs");
        if (ctx->t->pod->ninep) {
                storage.options = (char **)ninep_options;
                storage.n_options = US_ELEMENTSOF(ninep_options);
        }
        storage.mount_point = (char *)GUEST_SHARE_DIR;
        Unishim__Agent__V1__Storage *storages[] = {&storage};
        Unishim__Agent__V1__AddStorageRequest add = UNISHIM__AGENT__V1__ADD_STORAGE_REQUEST__INIT;
        add.n_storages = 1;
        add.storages = storages;
        return send_step(ctx, "AddStorage", &add.base, err);
}

static int send_network(struct create_ctx *ctx, struct us_error **err)
{
        struct sandbox_pod *pod = ctx->t->pod;
        const struct netplumb_vm_net *vmnet = ctx->vmnet;
        Unishim__Agent__V1__UpdateNetworkRequest net =
                UNISHIM__AGENT__V1__UPDATE_NETWORK_REQUEST__INIT;
        net.hostname = pod->vmpod.hostname ? pod->vmpod.hostname : (char *)"";
        Unishim__Agent__V1__Interface iface = UNISHIM__AGENT__V1__INTERFACE__INIT;
        Unishim__Agent__V1__Interface *ifaces[] = {&iface};
        Unishim__Agent__V1__IPAddress addrs[2], *addrp[2];
        Unishim__Agent__V1__Route routes[2], *routep[2];
        char addr_text[2][64], gw_text[2][64], mac[18];
        if (vmnet) {
                vmpod_mac_text(vmnet, mac);
                iface.name = (char *)"eth0";
                iface.mac = mac;
                /* A clone's device still has the template's MAC: the agent
                 * finds it by that and gives it the pod's. */
                if (pod->restored)
                        iface.device_mac = (char *)VMM_TEMPLATE_MAC;
                iface.mtu = vmnet->mtu;
                for (size_t i = 0; i < vmnet->n_addrs && i < 2; i++) {
                        const struct netplumb_addr *a = &vmnet->addrs[i];
                        unishim__agent__v1__ipaddress__init(&addrs[i]);
                        addrs[i].family = a->family == AF_INET6 ? 6 : 4;
                        inet_ntop(a->family, a->addr, addr_text[i], sizeof(addr_text[i]));
                        addrs[i].address = addr_text[i];
                        addrs[i].prefix_len = a->prefix;
                        addrp[i] = &addrs[i];
                        iface.n_addresses++;
                }
                iface.addresses = addrp;
                for (size_t i = 0; i < vmnet->n_routes && i < 2; i++) {
                        const struct netplumb_route *rt = &vmnet->routes[i];
                        unishim__agent__v1__route__init(&routes[i]);
                        routes[i].family = rt->family == AF_INET6 ? 6 : 4;
                        routes[i].destination = (char *)"";
                        if (rt->has_gateway) {
                                inet_ntop(rt->family, rt->gateway, gw_text[i], sizeof(gw_text[i]));
                                routes[i].gateway = gw_text[i];
                        }
                        routes[i].device = (char *)"eth0";
                        routep[i] = &routes[i];
                        net.n_routes++;
                }
                net.routes = routep;
                net.n_interfaces = 1;
                net.interfaces = ifaces;
        }
        /* The pod's sysctls are its CRI sandbox's (containerd puts
         * securityContext.sysctls there, as runc applies them once in the
         * namespaces the containers join); the guest's network and IPC
         * namespaces are the pod's. The agent checks each name. */
        const struct us_oci_linux *lx =
                ctx->t->is_vm && ctx->t->spec ? &ctx->t->spec->linux_ : NULL;
        size_t n_sysctl = lx ? lx->n_sysctl : 0;
        _cleanup_free_ Unishim__Agent__V1__UpdateNetworkRequest__SysctlsEntry *sys =
                calloc(n_sysctl + 1, sizeof(*sys));
        _cleanup_free_ Unishim__Agent__V1__UpdateNetworkRequest__SysctlsEntry **sysp =
                calloc(n_sysctl + 1, sizeof(*sysp));
        if (!sys || !sysp)
                return us_errorf(err, ENOMEM, "allocate");
        for (size_t i = 0; i < n_sysctl; i++) {
                unishim__agent__v1__update_network_request__sysctls_entry__init(&sys[i]);
                sys[i].key = lx->sysctl[i].key;
                sys[i].value = lx->sysctl[i].value ? lx->sysctl[i].value : (char *)"";
                sysp[i] = &sys[i];
        }
        net.n_sysctls = n_sysctl;
        net.sysctls = sysp;
        return send_step(ctx, "UpdateNetwork", &net.base, err);
}

static int send_create(struct create_ctx *ctx, struct us_error **err)
{
        Unishim__Agent__V1__CreateContainerRequest req =
                UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
        req.container_id = ctx->t->id;
        req.spec_json.data = (uint8_t *)ctx->json;
        req.spec_json.len = ctx->json_len;
        req.stdin = ctx->t->ctr.procs->in_fd >= 0;
        Unishim__Agent__V1__PodLocalDir *dirs[GUEST_MAX_LOCAL_DIRS];
        for (size_t i = 0; i < ctx->n_local_dirs; i++)
                dirs[i] = &ctx->local_dirs[i];
        req.n_local_dirs = ctx->n_local_dirs;
        req.local_dirs = dirs;
        return send_step(ctx, "CreateContainer", &req.base, err);
}

/* The agent died: the pod goes, from the loop. */
static void agent_lost(void *userdata, const char *why)
{
        struct sandbox_pod *pod = userdata;
        if (pod->restoring) { /* a clone's agent: the pod boots cold */
                pod_fallback(pod, "%s", why);
                return;
        }
        vmpod_lost(&pod->vmpod, why);
}

/* vmpod_lost's way to the pod's teardown. */
static void pod_teardown_cb(void *userdata)
{
        pod_teardown(userdata);
}

/* The pod's VM booted cold, from pod->cold, and the agent's ports
 * connected: at the start, or after a failed restore. */
static int pod_boot_cold(struct sandbox_pod *pod, struct us_error **err)
{
        if (!pod->share)
                return us_error_msg(err, EINVAL, "pod %s has no share", pod->vmpod.id);
        const struct vmm_share share = {.tag = GUEST_SHARE_TAG,
                                        .host_dir = sandbox_share_guest_dir(pod->share)};
        const struct vmm_vm_config vc = {
                .id = pod->vmpod.id,
                .state_dir = pod->vmpod.state_dir,
                .kernel = pod->cold.kernel,
                .initrd = pod->cold.initrd,
                .vcpus = pod->cold.size.vcpus,
                .memory_mib = pod->cold.size.memory_mib,
                .accel = pod->cold.accel,
                .share_type = pod->ninep ? VMM_SHARE_9P : VMM_SHARE_VIRTIOFS,
                .shares = &share,
                .n_shares = 1,
                .serial_ports = {AGENT_PORT_CALLS, AGENT_PORT_EVENTS},
                .tap_fd = pod->cold.tap_fd,
                .mac = pod->cold.mac[0] ? pod->cold.mac : NULL,
                .cgroup = pod->vmpod.cgroup,
                .loop = pod->vmpod.loop,
                .console_log_max = pod->cold.console_log_max,
                /* A uid no other pod's QEMU has (vmpod.h); with 9p the
                 * pod's range root, as its virtiofsd would be. */
                .qemu_uid = pod->ninep ? 0 : vmpod_qemu_uid(),
                .qemu_gid = pod->ninep ? 0 : (gid_t)vmpod_qemu_uid(),
                .private_root = true,
                /* virtiofsd, or QEMU serving 9p (the share bound into its
                 * private root, vmm/jail.h): root of the pod's user
                 * namespace, host uid idmap.base, the share idmapped into
                 * it. */
                .virtiofsd_userns = !pod->ninep && pod->idmap.userns_fd >= 0,
                .virtiofsd_userns_fd = pod->idmap.userns_fd,
                .qemu_userns = pod->ninep,
                .qemu_userns_fd = pod->idmap.userns_fd,
                /* The guest agent logs at debug level too (to console.log). */
                .cmdline_extra = pod->cold.debug ? "unishim.debug=1" : NULL,
        };
        int r = vmm_vm_start(&vc, &pod->vm, err);
        if (r < 0)
                return r;
        pod->cold.tap_fd = us_close(pod->cold.tap_fd); /* QEMU holds it now */
        if (vmm_vm_accel(pod->vm) == VMM_ACCEL_TCG && pod->cold.accel == VMM_ACCEL_AUTO)
                us_log_warn("pod %s: %s", pod->vmpod.id, vmm_vm_accel_reason(pod->vm));
        return sandbox_agent_open(&pod->agent, pod->vmpod.loop, pod->vm, err);
}

static void pod_restored(struct vmm_vm *vm, int r, const struct us_error *err, void *userdata);
static void pod_fallback(struct sandbox_pod *pod, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The pod's VM as a clone of the node's template, if there is one for the
 * pod's inputs: started, its agent's ports connected and the restore
 * running (pod_restored goes on). Returns true then; false: the pod boots
 * cold, and what the template lacked is logged here, naming the key (a
 * broken entry or a failed lookup: a warning; a miss, the first pod of a
 * size, or a build in progress: info). */
static bool pod_boot_template(struct sandbox_pod *pod, const struct policy_sandbox_config *sb)
{
        struct us_error *e = NULL;
        struct vmm_template_cache *cache = NULL;
        _cleanup_free_ char *manifest = NULL;
        int r = sandbox_template_inputs(sb, &pod->cold.size, &pod->tin, &e);
        pod->tin_set = r >= 0;
        if (r >= 0)
                r = vmm_template_manifest(&pod->tin, &manifest, &e);
        if (r >= 0) {
                vmm_template_key(manifest, pod->tkey);
                r = vmm_template_cache_open(pod->template_dir, true, NULL, &cache, &e);
        }
        if (r < 0) {
                us_log_warn("pod %s: no VM template (%s): boots cold", pod->vmpod.id,
                            us_error_text(e));
                goto cold;
        }
        r = vmm_template_lookup(cache, &pod->tin, &pod->tentry, &e);
        if (r == VMM_TEMPLATE_BUSY) {
                us_log_info("pod %s: VM template %s is being built: boots cold", pod->vmpod.id,
                            pod->tkey);
                goto cold;
        }
        /* The first pod of a size on the node: expected, not a fault. */
        if (r == VMM_TEMPLATE_NONE) {
                us_log_info("pod %s: no VM template %s yet: boots cold, and builds it once up",
                            pod->vmpod.id, pod->tkey);
                pod->build_wanted = true;
                goto cold;
        }
        if (r == VMM_TEMPLATE_BROKEN) {
                /* Not removed here (a removal waits for the holder to end,
                 * and races a build that is publishing): the build once
                 * the pod is up replaces it, under the key's lock. */
                us_log_warn("pod %s: VM template %s is broken (%s): boots cold, and rebuilds it "
                            "once up",
                            pod->vmpod.id, pod->tkey, us_error_text(e));
                pod->build_wanted = true;
                goto cold;
        }
        if (r < 0) {
                us_log_warn("pod %s: VM template %s: %s: boots cold", pod->vmpod.id, pod->tkey,
                            us_error_text(e));
                goto cold;
        }
        vmm_template_cache_free(cache);
        cache = NULL;

        const struct vmm_template_instance inst = {
                .id = pod->vmpod.id,
                .state_dir = pod->vmpod.state_dir,
                .loop = pod->vmpod.loop,
                .cgroup = pod->vmpod.cgroup,
                .console_log_max = pod->cold.console_log_max,
                .memory_fd = pod->tentry.memory_fd,
                .tap_fd = pod->cold.tap_fd,
                /* The guest keeps the template's MAC (VMM_TEMPLATE_MAC)
                 * until UpdateNetwork gives it the pod's: the argv stays
                 * the template's. */
                .userns_fd = pod->idmap.userns_fd,
                .share_dir = sandbox_share_guest_dir(pod->share),
        };
        struct vmm_template_vm tv;
        r = vmm_template_vm_config(&pod->tin, VMM_TEMPLATE_CLONE, &inst, &tv, &e);
        if (r >= 0)
                r = vmm_vm_start(&tv.cfg, &pod->vm, &e);
        if (r >= 0)
                r = sandbox_agent_open(&pod->agent, pod->vmpod.loop, pod->vm, &e);
        if (r >= 0)
                r = vmm_vm_template_restore(pod->vm, pod->tentry.state_fd, pod_restored, pod, &e);
        if (r < 0) {
                us_log_warn("pod %s: restoring VM template %s failed (%s): boots cold",
                            pod->vmpod.id, pod->tkey, us_error_text(e));
                sandbox_agent_close(&pod->agent);
                pod->vm = vmm_vm_free(pod->vm); /* QEMU and its sockets */
                vmm_template_entry_clear(&pod->tentry);
                goto cold;
        }
        pod->restoring = true;
        pod->restore_pending = true;
        us_error_free(e);
        return true;
cold:
        us_error_free(e);
        vmm_template_cache_free(cache);
        return false;
}

/* The pod's sysctls go to the guest's network and IPC namespaces, the
 * pod's (send_network); the agent refuses any other (agent_validate_sysctl),
 * so the same refusal comes before any VM is made, and a template's clone
 * is never blamed for it. */
static int check_sysctls(const struct us_oci_linux *lx, struct us_error **err)
{
        for (size_t i = 0; i < lx->n_sysctl; i++) {
                int ns = us_oci_sysctl_namespace(lx->sysctl[i].key);
                if (ns != CLONE_NEWNET && ns != CLONE_NEWIPC)
                        return us_error_msg(err, EINVAL,
                                            "sysctl %s is not in the pod's network or IPC "
                                            "namespace: refused",
                                            lx->sysctl[i].key);
        }
        return 0;
}

/* Everything of a new pod up to its VM running (or being restored) and the
 * agent's ports connected, sized as decided; the agent's side
 * (create_step) follows. *ret_vmnet: the VM's network for the guest (NULL
 * without one; caller frees). */
static int pod_start(const struct shim_backend_env *env, const struct shim_pod_decision *decision,
                     struct sandbox_pod **ret, struct netplumb_vm_net **ret_vmnet,
                     struct us_error **err)
{
        const struct policy_sandbox_config *sb = &decision->config->sandbox;
        const struct us_container_config *cfg = &decision->container;
        _cleanup_free_ char *kernel = NULL, *initrd = NULL;
        _cleanup_free_ struct netplumb_vm_net *vmnet = NULL;
        int r = sandbox_image_resolve(sb->kernel, sb->initrd, &kernel, &initrd, err);
        /* Before anything of the pod exists: a guest that cannot mount its
         * share would only fail at its first call. */
        bool ninep = false;
        if (r >= 0)
                r = sandbox_image_shared_fs(sb->shared_fs, kernel, &ninep, err);
        if (r >= 0 && cfg->spec)
                r = check_sysctls(&cfg->spec->linux_, err);
        if (r < 0)
                return us_error_wrap(err, r, "start sandbox VM");

        struct sandbox_pod *pod = calloc(1, sizeof(*pod));
        if (!pod)
                return us_errorf(err, ENOMEM, "allocate pod");
        pod->process_exited = env->process_exited;
        pod->oom = env->oom;
        pod->ninep = ninep;
        pod->tentry = (struct vmm_template_entry)VMM_TEMPLATE_ENTRY_INIT;
        pod->cold.tap_fd = -1;
        pod->cold.kernel = TAKE_PTR(kernel);
        pod->cold.initrd = TAKE_PTR(initrd);
        pod->cold.size = decision->size;
        pod->cold.accel = sandbox_accel_of(sb);
        pod->cold.console_log_max = (size_t)sb->console_log_max_bytes;
        pod->cold.debug = env->debug;
        pod->template_dir =
                strdup(sb->template_dir ? sb->template_dir : POLICY_TEMPLATE_DIR_DEFAULT);
        pod->template_max = sb->template_max;
        if (decision->config->path)
                pod->config_path = strdup(decision->config->path);
        sandbox_idmap_init(&pod->idmap);
        pod->agent.timeout_ms = sb->agent_timeout_ms;
        pod->agent.lost = agent_lost;
        pod->agent.userdata = pod;
        if (!pod->template_dir || (decision->config->path && !pod->config_path)) {
                r = us_errorf(err, ENOMEM, "allocate pod");
                goto fail;
        }
        r = vmpod_start(&pod->vmpod, POLICY_ISOLATION_SANDBOX, env->loop, env->namespace, cfg->id,
                        cfg->spec, pod_teardown_cb, pod, &vmnet, &pod->cold.tap_fd, err);
        if (r < 0)
                goto fail;
        pod->agent.pod_id = pod->vmpod.id;
        /* The operator's opt-out (sandbox.virtiofsd_unprivileged false):
         * virtiofsd as root over the host's own mounts. 9p has none (the
         * policy refuses it): QEMU never serves files as the host's root. */
        if (!sb->virtiofsd_root || ninep)
                r = sandbox_idmap_acquire(&pod->idmap, NULL, pod->vmpod.state_dir, err);
        if (r < 0)
                goto fail;
        r = sandbox_share_new(pod->vmpod.state_dir, &pod->share, err);
        if (r >= 0 && pod->idmap.userns_fd >= 0)
                r = sandbox_share_set_idmap(pod->share, pod->idmap.userns_fd, pod->idmap.base,
                                            (gid_t)pod->idmap.base, err);
        if (r < 0)
                goto fail;
        if (vmnet)
                vmpod_mac_text(vmnet, pod->cold.mac);

        const char *why_not = sandbox_template_why_not(sb, ninep, vmnet != NULL);
        if (why_not && sb->templates)
                us_log_info("pod %s: no VM template: %s", pod->vmpod.id, why_not);
        if (why_not || !pod_boot_template(pod, sb))
                r = pod_boot_cold(pod, err);
        if (r < 0)
                goto fail;
        *ret = pod;
        *ret_vmnet = TAKE_PTR(vmnet);
        return 0;
fail:
        r = us_error_wrap(err, r, "start sandbox VM");
        pod_free(pod);
        return r;
}

/* ---- the boot from a template: Restore, or the cold boot after all ---- */

static int send_check(struct create_ctx *ctx, struct us_error **err);
static int send_step(struct create_ctx *ctx, const char *method, const ProtobufCMessage *req,
                     struct us_error **err);

/* The clone's first call: fresh randomness and the host's clock
 * (guest-agent/agent-restore.c), before anything reads them. */
static int send_restore(struct create_ctx *ctx, struct us_error **err)
{
        uint8_t entropy[64];
        struct timespec ts;
        if (getrandom(entropy, sizeof(entropy), 0) != (ssize_t)sizeof(entropy))
                return us_errorf(err, errno ? errno : EIO, "getrandom");
        clock_gettime(CLOCK_REALTIME, &ts);
        Unishim__Agent__V1__RestoreRequest req = UNISHIM__AGENT__V1__RESTORE_REQUEST__INIT;
        req.entropy.data = entropy;
        req.entropy.len = sizeof(entropy);
        req.realtime_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        int r = send_step(ctx, "Restore", &req.base, err);
        explicit_bzero(entropy, sizeof(entropy));
        return r;
}

/* The boot's first call, once the create waits for it. */
static int boot_begin(struct create_ctx *ctx, struct us_error **err)
{
        struct sandbox_pod *pod = ctx->t->pod;
        if (!pod->restoring)
                return send_check(ctx, err);
        /* The restore's end (pod_restored) sends Restore, or boots cold. */
        pod->boot_ctx = ctx;
        return -EINPROGRESS;
}

static void pod_restored(struct vmm_vm *vm, int r, const struct us_error *err, void *userdata)
{
        (void)vm;
        struct sandbox_pod *pod = userdata;
        struct us_error *e = NULL;
        pod->restore_pending = false;
        if (r < 0) {
                pod->rebuild = true;
                pod_fallback(pod, "%s", err ? us_error_text(err) : strerror(-r));
                return;
        }
        if (!pod->boot_ctx)
                return; /* the create failed meanwhile: the pod goes */
        r = send_restore(pod->boot_ctx, &e);
        if (r != -EINPROGRESS)
                pod_fallback(pod, "Restore: %s", e ? us_error_text(e) : strerror(-r));
        us_error_free(e);
}

static void create_failed(struct create_ctx *ctx, int r, struct us_error **err);

/* The cold boot after a failed restore, from the loop (never inside the
 * agent's or QEMU's callbacks): nothing of the clone is left (its QEMU and
 * sockets: vmm_vm_destroy; its calls: cancelled). */
static void pod_cold_now(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct sandbox_pod *pod = userdata;
        struct create_ctx *ctx = pod->boot_ctx;
        struct us_error *e = NULL;
        pod->cold_timer = NULL;
        us_log_warn("pod %s: restoring VM template %s failed (%s): boots cold", pod->vmpod.id,
                    pod->tkey, pod->cold_why ? pod->cold_why : "?");
        free(pod->cold_why);
        pod->cold_why = NULL;
        /* A call in flight is cancelled: its step sees the pod still
         * restoring and leaves the create waiting here. */
        pod->falling_back = true;
        sandbox_agent_close(&pod->agent);
        pod->falling_back = false;
        if (pod->vm) {
                (void)vmm_vm_destroy(pod->vm, NULL);
                pod->vm = vmm_vm_free(pod->vm);
        }
        vmm_template_entry_clear(&pod->tentry);
        pod->restoring = pod->restore_pending = pod->restored = false;
        pod->agent.dead = pod->agent.stopped = false;
        /* QEMU could not load the entry, which the lookup found sound, or
         * the clone's agent did not answer Restore: it is rebuilt once the
         * pod is up, and the build's publish replaces it under the key's
         * lock (never removed from here: that would wait for its holder
         * on the loop and race a publish). A clone that failed later, in
         * the guest (the pod's own data can), leaves the entry. */
        if (pod->rebuild) {
                pod->rebuild = false;
                pod->build_wanted = true;
        }
        int r = pod_boot_cold(pod, &e);
        if (r >= 0 && ctx)
                r = send_check(ctx, &e);
        if (r == -EINPROGRESS || !ctx) {
                if (r < 0 && r != -EINPROGRESS)
                        us_log_warn("pod %s: %s", pod->vmpod.id, us_error_text(e));
                us_error_free(e);
                return;
        }
        pod->boot_ctx = NULL;
        if (r >= 0) /* send_check never answers at once */
                r = us_error_msg(&e, EIO, "no Check sent");
        us_error_wrap(&e, r, "start sandbox VM");
        create_failed(ctx, r, &e);
}

/* The clone failed before its boot's last step (UpdateNetwork) answered:
 * the pod boots cold, once (the first reason wins). */
static void pod_fallback(struct sandbox_pod *pod, const char *fmt, ...)
{
        if (!pod->restoring || pod->cold_timer || pod->falling_back || pod->vmpod.torn_down)
                return;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&pod->cold_why, fmt, ap) < 0)
                pod->cold_why = NULL;
        va_end(ap);
        if (us_loop_add_timer(pod->vmpod.loop, 0, pod_cold_now, pod, &pod->cold_timer, NULL) < 0)
                vmpod_lost(&pod->vmpod, "its VM template failed, and no cold boot could follow");
}

/* ---- building the template in the background ---- */

/* `unishimctl template build`, beside the shim as installed, else in the
 * build tree (<build>/shim -> <build>/cri). */
static char *unishimctl_path(void)
{
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n < 0)
                return NULL;
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (!slash)
                return NULL;
        *slash = '\0';
        static const char *const rel[] = {"unishimctl", "../cri/unishimctl"};
        for (size_t i = 0; i < US_ELEMENTSOF(rel); i++) {
                char *p = NULL;
                if (asprintf(&p, "%s/%s", exe, rel[i]) < 0)
                        return NULL;
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

/* A pod that missed the template builds it once it is up, in the
 * background: a child `unishimctl template build` with the operator's
 * config (so its key is the shim's: sandbox_template_inputs), in the node's
 * cgroup SANDBOX_TEMPLATE_CGROUP (its QEMU and the holder it leaves are
 * the node's, never charged to this pod), its stderr in the pod's state
 * dir for the warning if it fails. The cache's lock makes a second
 * builder busy (SANDBOX_TEMPLATE_BUILD_BUSY). The pod's end stops it
 * (pod_teardown). */

/* Whether the key's builds failed lately (vmm_template_backoff_held): a
 * broken image or QEMU must not cost a template build per pod start. An
 * unreadable record holds nothing back (the build rewrites it). */
static bool pod_build_held_back(struct sandbox_pod *pod)
{
        struct vmm_template_cache *cache = NULL;
        struct vmm_template_failure f;
        if (vmm_template_cache_open(pod->template_dir, false, NULL, &cache, NULL) < 0)
                return false;
        int r = vmm_template_failure_read(cache, pod->tkey, &f, NULL);
        vmm_template_cache_free(cache);
        int64_t now = (int64_t)time(NULL);
        if (r < 0 || !vmm_template_backoff_held(&f, now))
                return false;
        us_log_warn("pod %s: VM template %s not built: its last %u build(s) failed, the last %lld "
                    "s ago (%s); the next in %lld s at the earliest",
                    pod->vmpod.id, pod->tkey, f.failures, (long long)(now - f.time), f.why,
                    (long long)(f.retry_after - now));
        return true;
}

static void pod_build_template(struct sandbox_pod *pod)
{
        if (!pod->build_wanted || pod->build_pid > 0 || pod->vmpod.torn_down)
                return;
        pod->build_wanted = false;
        if (pod_build_held_back(pod))
                return;
        struct us_error *e = NULL;
        _cleanup_free_ char *ctl = unishimctl_path(), *log = NULL;
        _cleanup_(us_cgroup_free_cleanupp) struct us_cgroup *cg = NULL;
        if (!ctl) {
                us_log_warn("pod %s: VM template %s not built: no unishimctl beside the shim",
                            pod->vmpod.id, pod->tkey);
                return;
        }
        if (us_cgroup_create(NULL, SANDBOX_TEMPLATE_CGROUP, &cg, &e) < 0 ||
            asprintf(&log, "%s/template-build.log", pod->vmpod.state_dir) < 0) {
                us_log_warn("pod %s: VM template %s not built: %s", pod->vmpod.id, pod->tkey,
                            e ? us_error_text(e) : "out of memory");
                us_error_free(e);
                return;
        }
        _cleanup_close_ int out =
                open(log, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        _cleanup_close_ int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (out < 0 || null < 0) {
                us_log_warn("pod %s: VM template %s not built: %s: %s", pod->vmpod.id, pod->tkey,
                            log, strerror(errno));
                return;
        }
        pid_t shim = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                us_log_warn("pod %s: VM template %s not built: fork: %s", pod->vmpod.id, pod->tkey,
                            strerror(errno));
                return;
        }
        if (pid == 0) {
                /* Its own session (the pod's signals are not its own), and
                 * it ends with the shim (one that died before the prctl
                 * would not signal). */
                (void)setsid();
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != shim)
                        _exit(126);
                if (us_cgroup_enter(cg, getpid(), NULL) < 0)
                        _exit(126);
                if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(out, 2) < 0)
                        _exit(126);
                /* Nothing of the pod's (its tap, the agent's sockets) may
                 * reach the build, CLOEXEC or not. */
                if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0)
                        _exit(126);
                sigset_t all;
                sigemptyset(&all);
                (void)sigprocmask(SIG_SETMASK, &all, NULL);
                /* The pod's size: a template per size (their keys differ). */
                char vcpus[16], mib[16], max[16];
                snprintf(max, sizeof(max), "%u", pod->template_max);
                snprintf(vcpus, sizeof(vcpus), "%u", pod->tin.vcpus ? pod->tin.vcpus : 1);
                snprintf(mib, sizeof(mib), "%u", pod->tin.memory_mib ? pod->tin.memory_mib : 256);
                char *argv[12] = {ctl, (char *)"template", (char *)"build"};
                size_t n = 3;
                if (pod->config_path) {
                        argv[n++] = (char *)"--config";
                        argv[n++] = pod->config_path;
                }
                argv[n++] = (char *)"--vcpus";
                argv[n++] = vcpus;
                argv[n++] = (char *)"--memory-mib";
                argv[n++] = mib;
                /* The cache's cap, checked by the build after its gc (which
                 * may block on a holder: never on the shim's loop). */
                argv[n++] = (char *)"--max";
                argv[n++] = max;
                argv[n] = NULL;
                execv(ctl, argv);
                _exit(127);
        }
        pod->build_pid = pid;
        us_log_info("pod %s: building VM template %s in the background (pid %d, cgroup %s)",
                    pod->vmpod.id, pod->tkey, (int)pid, SANDBOX_TEMPLATE_CGROUP);
}

/* The end of the background build's stderr (the pod's
 * template-build.log) in buf, control characters as spaces: what it said
 * (an eviction, a gc's failure, the error). */
static void build_log_tail(const struct sandbox_pod *pod, char *buf, size_t size)
{
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/template-build.log", pod->vmpod.state_dir);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t n = 0;
        if (fd >= 0) {
                off_t end = lseek(fd, 0, SEEK_END);
                (void)lseek(fd, end > (off_t)size - 1 ? end - (off_t)size + 1 : 0, SEEK_SET);
                n = read(fd, buf, size - 1);
        }
        for (ssize_t i = 0; i < n; i++)
                if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
                        buf[i] = ' ';
        buf[n > 0 ? n : 0] = '\0';
}

/* The background build ended: its outcome, for the log (a failure is a
 * warning, never the pod's). */
static void pod_build_exited(struct sandbox_pod *pod, int ws)
{
        char buf[1024] = "";
        pod->build_pid = 0;
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) {
                build_log_tail(pod, buf, sizeof(buf));
                us_log_info("pod %s: VM template %s built%s%s", pod->vmpod.id, pod->tkey,
                            *buf ? ": " : "", buf);
                return;
        }
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == SANDBOX_TEMPLATE_BUILD_BUSY) {
                us_log_info("pod %s: VM template %s is being built by another", pod->vmpod.id,
                            pod->tkey);
                return;
        }
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == SANDBOX_TEMPLATE_BUILD_FULL) {
                us_log_info("pod %s: VM template %s not built: the cache holds "
                            "sandbox.template_max (%u) templates, none unused for %d s",
                            pod->vmpod.id, pod->tkey, pod->template_max,
                            SANDBOX_TEMPLATE_EVICT_IDLE_S);
                return;
        }
        build_log_tail(pod, buf, sizeof(buf));
        us_log_warn("pod %s: building VM template %s failed (%s %d): %s", pod->vmpod.id, pod->tkey,
                    WIFEXITED(ws) ? "status" : "signal",
                    WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws), buf);
}

/* Stops the VM and removes everything the pod made on the host. Idempotent. */
static void pod_teardown(struct sandbox_pod *pod)
{
        if (!vmpod_teardown_begin(&pod->vmpod))
                return;
        /* Best effort, never waited for: the agent stops the containers and
         * syncs while QEMU is told to quit (virtio-fs writes through, so no
         * data of the pod waits in the guest). */
        Unishim__Agent__V1__Empty shutdown = UNISHIM__AGENT__V1__EMPTY__INIT;
        (void)sandbox_agent_acall(&pod->agent, NULL, "Shutdown", &shutdown.base, NULL,
                                  sandbox_acall_plain, NULL, NULL, NULL);
        /* A clone still loading its state answers no QMP until the load
         * ends: it is killed, not asked to quit. */
        bool loading = pod->restore_pending;
        sandbox_agent_close(&pod->agent);
        pod->oom_paused = us_loop_source_remove(pod->oom_paused);
        pod->cold_timer = us_loop_source_remove(pod->cold_timer);
        pod->restoring = false;
        pod->cold.tap_fd = us_close(pod->cold.tap_fd);
        vmm_template_entry_clear(&pod->tentry);
        /* A build in progress is abandoned: unishimctl's QEMU dies with it,
         * the cache's lock goes with its process, and the next build of
         * the key removes what it left unpublished. */
        if (pod->build_pid > 0) {
                (void)kill(pod->build_pid, SIGTERM);
                us_log_info("pod %s: building VM template %s abandoned: the pod goes",
                            pod->vmpod.id, pod->tkey);
                pod->build_pid = 0;
        }
        if (pod->vm) {
                /* A guest whose agent is dead gets no orderly quit: its QEMU
                 * may not answer QMP either. */
                if (pod->agent.dead || loading)
                        (void)vmm_vm_destroy(pod->vm, NULL);
                else
                        (void)vmm_vm_quit(pod->vm, NULL);
                pod_vm_gone(pod);
        }
        vmpod_teardown_host(&pod->vmpod);
        /* Every bind of every container goes with the share's mounts. */
        pod->share = sandbox_share_free(pod->share);
        for (struct sandbox_task *t = pod->tasks; t; t = t->next)
                t->shared = false;
        /* No process and no mount of the pod uses its range any more. */
        sandbox_idmap_release(&pod->idmap, NULL);
        /* What QEMU, virtiofsd and the share left in it. */
        vmpod_teardown_state(&pod->vmpod);
}

static void pod_free(void *impl)
{
        struct sandbox_pod *pod = impl;
        if (!pod)
                return;
        pod_teardown(pod);
        pod->vm = vmm_vm_free(pod->vm);
        vmpod_fini(&pod->vmpod);
        if (pod->tin_set)
                sandbox_template_inputs_free(&pod->tin);
        free(pod->cold.kernel);
        free(pod->cold.initrd);
        free(pod->cold_why);
        free(pod->template_dir);
        free(pod->config_path);
        free(pod);
}

static int pod_host_namespaces(void *impl, const char **ret_netns, const char **ret_hostname,
                               struct us_error **err)
{
        struct sandbox_pod *pod = impl;
        if (!pod)
                return us_error_msg(err, ENOENT, "the pod has no network namespace");
        return vmpod_host_namespaces(&pod->vmpod, ret_netns, ret_hostname, err);
}

static bool pod_child_exited(void *impl, pid_t pid, int wait_status)
{
        struct sandbox_pod *pod = impl;
        if (pod->build_pid > 0 && pid == pod->build_pid) {
                pod_build_exited(pod, wait_status);
                return true;
        }
        if (!pod->vm || !vmm_vm_child_exited(pod->vm, pid, wait_status))
                return false;
        if (!vmm_vm_running(pod->vm) && pod->restoring) {
                /* A clone's QEMU: the restore's end says why (QEMU's own
                 * words), else this; either way the pod boots cold. */
                if (!pod->restore_pending)
                        pod_fallback(pod, "QEMU exited (wait status %d)", wait_status);
        } else if (!vmm_vm_running(pod->vm))
                pod_vm_gone(pod);
        else /* a virtiofsd: every file of the guest's containers is gone */
                vmpod_lost(&pod->vmpod, "its virtiofsd exited");
        return true;
}

/* ---- containers in the guest ---- */

static bool mount_is_bind(const struct us_oci_mount *m)
{
        if (m->type && strcmp(m->type, "bind") == 0)
                return true;
        for (char **o = m->options; o && *o; o++)
                if (strcmp(*o, "bind") == 0 || strcmp(*o, "rbind") == 0)
                        return true;
        return false;
}

/* The volume's propagation option as containerd writes Kubernetes'
 * mountPropagation: Bidirectional "rshared", HostToContainer "rslave",
 * None "rprivate" (the last one wins, as in mount(8)). */
enum mount_propagation { PROPAGATION_NONE, PROPAGATION_FROM_HOST, PROPAGATION_BOTH };

static enum mount_propagation mount_propagation(const struct us_oci_mount *m)
{
        enum mount_propagation p = PROPAGATION_NONE;
        for (char **o = m->options; o && *o; o++) {
                const char *v = **o == 'r' ? *o + 1 : *o;
                if (strcmp(v, "shared") == 0)
                        p = PROPAGATION_BOTH;
                else if (strcmp(v, "slave") == 0)
                        p = PROPAGATION_FROM_HOST;
                else if (strcmp(v, "private") == 0)
                        p = PROPAGATION_NONE;
        }
        return p;
}

/* The last of "ro"/"rw" wins, as in mount(8). */
static bool mount_is_readonly(const struct us_oci_mount *m)
{
        bool ro = false;
        for (char **o = m->options; o && *o; o++)
                if (strcmp(*o, "ro") == 0 || strcmp(*o, "rw") == 0)
                        ro = (*o)[1] == 'o';
        return ro;
}

/* The volume name (n bytes at name) as the guest's dir name, in ret, if
 * the guest can take it: a Kubernetes volume name is a DNS label, within
 * an id's rule (us_id_valid: never "." or "..", never a path; the agent
 * checks [A-Za-z0-9_.-]). */
static bool local_dir_name(const char *name, size_t n,
                           char ret[static GUEST_MAX_LOCAL_DIR_NAME + 1])
{
        if (n == 0 || n > GUEST_MAX_LOCAL_DIR_NAME)
                return false;
        memcpy(ret, name, n);
        ret[n] = '\0';
        return us_id_valid(ret);
}

/* How a bind mount's host source relates to the pod's emptyDir volumes
 * (the kubelet's <root-dir>/pods/<pod uid>/volumes/kubernetes.io~empty-dir/
 * <name>, <pod uid> from the container's CRI annotation: another pod's
 * emptyDir, bound in by hostPath, is no volume of this pod). */
enum empty_dir_use {
        EMPTY_DIR_NONE,    /* not one of the pod's emptyDirs */
        EMPTY_DIR_VOLUME,  /* the volume itself: *ret_name */
        EMPTY_DIR_SUBPATH, /* a subPath of it (<root-dir>/pods/<uid>/volume-subpaths/<name>/...) */
};

static enum empty_dir_use empty_dir_of(const struct us_oci_spec *spec, const char *source,
                                       char ret_name[static GUEST_MAX_LOCAL_DIR_NAME + 1])
{
        const char *uid = us_oci_spec_annotation(spec, CRI_SANDBOX_UID);
        char volumes[512], subpaths[512];
        if (!uid || !*uid || strchr(uid, '/') ||
            snprintf(volumes, sizeof(volumes), "/pods/%s/volumes/kubernetes.io~empty-dir/", uid) >=
                    (int)sizeof(volumes) ||
            snprintf(subpaths, sizeof(subpaths), "/pods/%s/volume-subpaths/", uid) >=
                    (int)sizeof(subpaths))
                return EMPTY_DIR_NONE;
        const char *p = strstr(source, volumes);
        if (p) {
                const char *name = p + strlen(volumes);
                return local_dir_name(name, strlen(name), ret_name) ? EMPTY_DIR_VOLUME
                                                                    : EMPTY_DIR_NONE;
        }
        /* A subPath: the volume's name is the next component; it is one of
         * the pod's emptyDirs if the kubelet made that dir beside. */
        p = strstr(source, subpaths);
        if (!p)
                return EMPTY_DIR_NONE;
        const char *name = p + strlen(subpaths);
        const char *slash = strchr(name, '/');
        if (!local_dir_name(name, slash ? (size_t)(slash - name) : strlen(name), ret_name))
                return EMPTY_DIR_NONE;
        char dir[PATH_MAX];
        struct stat st;
        if (snprintf(dir, sizeof(dir), "%.*s%s%s", (int)(p - source), source, volumes, ret_name) >=
                    (int)sizeof(dir) ||
            lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return EMPTY_DIR_NONE;
        return EMPTY_DIR_SUBPATH;
}

/* An emptyDir volume of a 9p pod is kept in the guest (docs/vmm.md,
 * "emptyDir volumes of a 9p pod"): QEMU 7.2's 9p cannot make fifos or
 * sockets, which containers sharing an emptyDir often talk through. The
 * guest dir takes the host dir's owner and mode (the kubelet's 0777, an
 * fsGroup's group and setgid). A subPath of such a volume is refused: its
 * data is in the guest, where the kubelet's subPath bind cannot reach.
 * Returns 1 and sets *ret_source when mount m is one, 0 when it stays on
 * the share. */
static int local_dir_for(struct create_ctx *ctx, const struct us_oci_spec *spec,
                         const struct us_oci_mount *m, char **ret_source, struct us_error **err)
{
        char name[GUEST_MAX_LOCAL_DIR_NAME + 1];
        struct stat st;
        if (!ctx->t->pod->ninep)
                return 0;
        switch (empty_dir_of(spec, m->source, name)) {
        case EMPTY_DIR_NONE:
                return 0;
        case EMPTY_DIR_SUBPATH:
                return us_error_msg(err, ENOTSUP,
                                    "volume %s at %s: a subPath of an emptyDir is not supported "
                                    "by unishim's sandbox isolation with sandbox.shared_fs \"9p\" "
                                    "(the emptyDir lives in the pod's VM, docs/vmm.md); mount the "
                                    "whole volume, or use shared_fs \"virtio-fs\"",
                                    name, m->destination);
        case EMPTY_DIR_VOLUME:
                break;
        }
        if (lstat(m->source, &st) < 0 || !S_ISDIR(st.st_mode))
                return 0;
        if (ctx->n_local_dirs >= GUEST_MAX_LOCAL_DIRS)
                return us_error_msg(err, E2BIG, "more than %d emptyDir mounts in container %s",
                                    GUEST_MAX_LOCAL_DIRS, ctx->t->id);
        if (!ctx->local_dirs) {
                ctx->local_dirs = calloc(GUEST_MAX_LOCAL_DIRS, sizeof(*ctx->local_dirs));
                if (!ctx->local_dirs)
                        return us_errorf(err, ENOMEM, "allocate");
        }
        Unishim__Agent__V1__PodLocalDir *d = &ctx->local_dirs[ctx->n_local_dirs];
        unishim__agent__v1__pod_local_dir__init(d);
        if (!(d->name = strdup(name)) ||
            asprintf(ret_source, "%s/%s", GUEST_POD_LOCAL_DIR, name) < 0) {
                free(d->name);
                d->name = NULL;
                *ret_source = NULL;
                return us_errorf(err, ENOMEM, "allocate");
        }
        d->mode = st.st_mode & 07777;
        d->uid = st.st_uid;
        d->gid = st.st_gid;
        ctx->n_local_dirs++;
        return 1;
}

/* Shares the rootfs and the bind-mount sources, and writes the spec the
 * guest's engine runs (ctx->json) and the pod-local dirs it names. */
static int guest_spec(struct create_ctx *ctx, const struct shim_pod_decision *decision,
                      struct us_error **err)
{
        struct sandbox_task *t = ctx->t;
        struct sandbox_pod *pod = t->pod;
        const struct us_container_config *cfg = &decision->container;
        const struct us_oci_spec *spec = cfg->spec;
        /* The guest gets an overlay of its own over the same layers: the
         * host's copy would be a second overlay on the same upper dir. */
        if (pod->idmap.userns_fd >= 0 && decision->n_rootfs_mounts > 0)
                (void)shim_rootfs_unmount(cfg->bundle, NULL);
        int r = sandbox_share_add_container(pod->share, t->id, cfg->rootfs, decision->rootfs_mounts,
                                            decision->n_rootfs_mounts, err);
        if (r < 0)
                return r;
        t->shared = true;

        size_t n = spec->n_mounts;
        /* Declared before the first goto: cleanup variables must not be
         * jumped over. */
        _cleanup_free_ char *json = NULL;
        size_t json_len = 0;
        _cleanup_free_ char **sources = calloc(n + 1, sizeof(*sources));
        _cleanup_free_ bool *drop = calloc(n + 1, sizeof(*drop));
        if (!sources || !drop)
                return us_errorf(err, ENOMEM, "allocate");
        for (size_t i = 0; i < n; i++) {
                const struct us_oci_mount *m = &spec->mounts[i];
                if (!mount_is_bind(m) || !m->source || m->source[0] != '/')
                        continue;
                /* The guest has its own /dev/shm: the host's pod shm would be
                 * another memory than the guest's processes share. */
                if (strcmp(m->destination, "/dev/shm") == 0) {
                        drop[i] = true;
                        continue;
                }
                /* virtio-fs carries the host's mounts into the guest, and
                 * nothing the guest mounts back out: what Bidirectional
                 * promises (CSI node plugins' mounts for the host) cannot
                 * hold, and is refused rather than half kept. */
                enum mount_propagation prop = mount_propagation(m);
                /* (HostToContainer too: the host mounts nothing under an
                 * emptyDir for it to carry.) */
                if (prop != PROPAGATION_BOTH) {
                        r = local_dir_for(ctx, spec, m, &sources[i], err);
                        if (r < 0)
                                goto out;
                        if (r > 0)
                                continue;
                }
                if (prop == PROPAGATION_BOTH) {
                        r = us_error_msg(err, ENOTSUP,
                                         "mountPropagation Bidirectional (volume %s at %s) is not "
                                         "supported by unishim's sandbox isolation: a mount made "
                                         "in the pod's VM cannot reach the host; use "
                                         "HostToContainer (host mounts reach the VM), or the "
                                         "container isolation",
                                         m->source, m->destination);
                        goto out;
                }
                r = sandbox_share_add_bind(pod->share, t->id, i, m->source, mount_is_readonly(m),
                                           prop == PROPAGATION_FROM_HOST, err);
                if (r < 0)
                        goto out;
                if (asprintf(&sources[i], "%s/%s/mounts/%zu", GUEST_SHARE_DIR, t->id, i) < 0) {
                        sources[i] = NULL;
                        r = us_errorf(err, ENOMEM, "allocate");
                        goto out;
                }
        }

        char root[PATH_MAX], cgroup[PATH_MAX];
        snprintf(root, sizeof(root), "%s/%s/rootfs", GUEST_SHARE_DIR, t->id);
        snprintf(cgroup, sizeof(cgroup), GUEST_CGROUP_PARENT "/%s", t->id);
        const struct sandbox_spec_rewrite rw = {
                .root_path = root,
                .cgroups_path = cgroup,
                .n_mounts = n,
                .mount_sources = (const char *const *)sources,
                .drop_mount = drop,
                /* The guest's network and IPC are the pod's. */
                .drop_namespaces = CLONE_NEWNET | CLONE_NEWIPC,
                .unjoin_namespaces =
                        CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUSER,
                .pod_pid_namespace = GUEST_POD_PIDNS,
        };
        if (!cfg->spec_json) {
                r = us_error_msg(err, EINVAL, "no config.json text for container %s", t->id);
                goto out;
        }
        r = sandbox_spec_rewrite(cfg->spec_json, cfg->spec_json_len, &rw, &json, &json_len, err);
        if (r < 0)
                goto out;
        ctx->json = TAKE_PTR(json);
        ctx->json_len = json_len;
        r = 0;
out:
        for (size_t i = 0; i < n; i++)
                free(sources[i]);
        return r;
}

static void unshare_container(struct sandbox_task *t)
{
        if (!t->shared || !t->pod->share)
                return;
        struct us_error *err = NULL;
        if (sandbox_share_remove_container(t->pod->share, t->id, &err) < 0)
                us_log_warn("pod %s: %s", t->pod->vmpod.id, us_error_text(err));
        us_error_free(err);
        t->shared = false;
}

/* Unlinks and frees a task; the last task of a pod without a CRI sandbox
 * takes the VM with it. */
static void task_free(struct sandbox_task *t)
{
        struct sandbox_pod *pod = t->pod;
        sandbox_agent_cancel_owner(&pod->agent, t);
        for (struct sandbox_task **pp = &pod->tasks; *pp; pp = &(*pp)->next) {
                if (*pp == t) {
                        *pp = t->next;
                        break;
                }
        }
        while (t->ctr.procs) {
                struct sandbox_proc *p = t->ctr.procs;
                t->ctr.procs = p->next;
                sandbox_proc_free(p);
        }
        unshare_container(t);
        us_oci_spec_free(t->spec);
        free(t->id);
        free(t);
}

/* A process of the task's container exited in the guest. */
static void task_process_exited(void *owner, const char *exec_id, uint32_t status)
{
        struct sandbox_task *t = owner;
        t->pod->process_exited(t->cookie, exec_id, status);
}

static int sandbox_create(const struct shim_backend_env *env, void *task_cookie,
                          const struct shim_pod_decision *decision, void **ret_impl, int *ret_pty,
                          struct shim_op *op, struct us_error **err)
{
        const struct us_container_config *cfg = &decision->container;
        struct sandbox_pod *pod = *env->pod;
        bool vm_task = vmpod_is_cri_sandbox(cfg->spec);
        struct create_ctx *ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
                return us_errorf(err, ENOMEM, "allocate task");
        ctx->op = op;
        ctx->pod_slot = env->pod;
        ctx->ret_impl = ret_impl;
        ctx->ret_pty = ret_pty;
        if (!pod) {
                int r = pod_start(env, decision, &pod, &ctx->vmnet, err);
                if (r < 0) {
                        create_ctx_free(ctx);
                        return r;
                }
                *env->pod = pod;
                ctx->started_pod = true;
        } else if (vm_task || pod->dead || pod->agent.dead || pod->vmpod.torn_down) {
                create_ctx_free(ctx);
                return us_error_msg(err, EINVAL, "pod %s already has its VM%s", pod->vmpod.id,
                                    pod->dead ? ", and it is gone" : "");
        } else if (pod->agent.booting) {
                create_ctx_free(ctx);
                return us_error_msg(err, EBUSY, "pod %s is still booting its VM", pod->vmpod.id);
        }

        struct sandbox_task *t = calloc(1, sizeof(*t));
        if (!t || !(t->id = strdup(cfg->id))) {
                free(t);
                if (ctx->started_pod) {
                        pod_free(pod);
                        *env->pod = NULL;
                }
                create_ctx_free(ctx);
                return us_errorf(err, ENOMEM, "allocate task");
        }
        t->pod = pod;
        t->cookie = task_cookie;
        t->is_vm = vm_task;
        t->ctr = (struct sandbox_container){
                .agent = &pod->agent,
                .loop = pod->vmpod.loop,
                .id = t->id,
                .owner = t,
                .exited = task_process_exited,
        };
        t->next = pod->tasks;
        pod->tasks = t;
        ctx->t = t;
        struct sandbox_proc *init = NULL;
        int r = sandbox_proc_new(&t->ctr, NULL, &cfg->stdio, &init, err);
        if (r >= 0 && !vm_task)
                r = guest_spec(ctx, decision, err);
        /* The guest's answers come later: the pod's boot for a new pod,
         * then the container's create. */
        if (r >= 0)
                r = ctx->started_pod ? boot_begin(ctx, err) : vm_task ? 0 : send_create(ctx, err);
        if (r == -EINPROGRESS) {
                t->spec = cfg->spec; /* ours now, as the contract says */
                return r;
        }
        if (r < 0) {
                task_free(t);
                if (ctx->started_pod && !pod->tasks) {
                        pod_free(pod);
                        *env->pod = NULL;
                }
                create_ctx_free(ctx);
                return r;
        }
        t->spec = cfg->spec;
        create_ctx_free(ctx);
        *ret_impl = t;
        *ret_pty = -1;
        return 0;
}

static pid_t sandbox_pid(void *impl)
{
        struct sandbox_task *t = impl;
        /* Guest pids mean nothing on the host: every task of the pod shows
         * the VM's, as Kata does. */
        return t->pod->vm ? vmm_vm_pid(t->pod->vm) : 0;
}

/* ---- Task operations: in the guest, answered from the loop ---- */

/* ContainerRequest {id} to method, finishing op with fn. */
static int container_acall(struct sandbox_task *t, const char *method,
                           const ProtobufCMessageDescriptor *resp_desc, sandbox_acall_fn fn,
                           struct shim_op *op, struct sandbox_acall **ret, struct us_error **err)
{
        Unishim__Agent__V1__ContainerRequest req = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        req.container_id = t->id;
        return sandbox_agent_acall(&t->pod->agent, t, method, &req.base, resp_desc, fn, op, ret,
                                   err);
}

static int sandbox_start(void *impl, struct shim_op *op, struct us_error **err)
{
        struct sandbox_task *t = impl;
        /* The pod is up: a template it missed is built now, never before
         * its RunPodSandbox is answered. */
        pod_build_template(t->pod);
        if (t->is_vm)
                return 0; /* the VM runs since create */
        return container_acall(t, "StartContainer", NULL, sandbox_acall_plain, op, NULL, err);
}

static void exec_started(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                         struct us_error **err)
{
        (void)resp;
        struct sandbox_task *t = c->owner;
        if (r >= 0 && t) {
                sandbox_proc_poll(c->proc);
                *c->ret_pid = sandbox_pid(t);
                *c->ret_pty = -1;
        } else if (t) {
                /* Never started in the guest: nothing will report it. */
                for (struct sandbox_proc **pp = &t->ctr.procs; *pp; pp = &(*pp)->next) {
                        if (*pp == c->proc) {
                                *pp = c->proc->next;
                                sandbox_proc_free(c->proc);
                                break;
                        }
                }
                if (r >= 0)
                        r = us_error_msg(err, ENOENT, "container %s went away", c->agent->pod_id);
        }
        sandbox_acall_finish(c, r, err);
}

static int sandbox_exec(void *impl, const char *exec_id, const struct us_oci_process *p,
                        const char *json, size_t json_len, const struct us_stdio *stdio,
                        pid_t *ret_pid, int *ret_pty, struct shim_op *op, struct us_error **err)
{
        (void)p;
        struct sandbox_task *t = impl;
        if (t->is_vm)
                return us_error_msg(err, EINVAL, "cannot exec in the pod's sandbox VM task %s",
                                    t->id);
        struct sandbox_proc *proc = NULL;
        int r = sandbox_proc_new(&t->ctr, exec_id, stdio, &proc, err);
        if (r < 0)
                return r;
        Unishim__Agent__V1__ExecProcessRequest req = UNISHIM__AGENT__V1__EXEC_PROCESS_REQUEST__INIT;
        req.container_id = t->id;
        req.exec_id = (char *)exec_id;
        req.process_json.data = (uint8_t *)json;
        req.process_json.len = json_len;
        req.stdin = proc->in_fd >= 0;
        struct sandbox_acall *c = NULL;
        r = sandbox_agent_acall(&t->pod->agent, t, "ExecProcess", &req.base,
                                &unishim__agent__v1__exec_process_response__descriptor,
                                exec_started, op, &c, err);
        if (r != -EINPROGRESS) {
                t->ctr.procs = proc->next; /* proc_new put it first */
                sandbox_proc_free(proc);
                return r;
        }
        c->proc = proc;
        c->ret_pid = ret_pid;
        c->ret_pty = ret_pty;
        return r;
}

static void signalled(struct sandbox_acall *c, int r, ProtobufCMessage *resp, struct us_error **err)
{
        (void)resp;
        sandbox_acall_finish(c, r == -ENOENT ? -ESRCH : r, err);
}

static int signal_guest(struct sandbox_task *t, const char *exec_id, int sig, bool all,
                        struct shim_op *op, struct us_error **err)
{
        if (t->pod->dead)
                return -ESRCH;
        Unishim__Agent__V1__SignalProcessRequest req =
                UNISHIM__AGENT__V1__SIGNAL_PROCESS_REQUEST__INIT;
        req.container_id = t->id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        req.signal = (uint32_t)sig;
        req.all = all;
        return sandbox_agent_acall(&t->pod->agent, t, "SignalProcess", &req.base, NULL, signalled,
                                   op, NULL, err);
}

static int sandbox_kill(void *impl, int sig, bool all, struct shim_op *op, struct us_error **err)
{
        struct sandbox_task *t = impl;
        if (!t->is_vm)
                return signal_guest(t, NULL, sig, all, op, err);
        /* The pod's VM task: any deadly signal ends the VM. */
        if (sig == 0 || t->pod->dead)
                return t->pod->dead ? -ESRCH : 0;
        pod_teardown(t->pod);
        return 0;
}

static int sandbox_kill_exec(void *impl, const char *exec_id, pid_t pid, int sig,
                             struct shim_op *op, struct us_error **err)
{
        (void)pid;
        return signal_guest(impl, exec_id, sig, false, op, err);
}

static int sandbox_resize(void *impl, const char *exec_id, unsigned width, unsigned height,
                          struct shim_op *op, struct us_error **err)
{
        struct sandbox_task *t = impl;
        Unishim__Agent__V1__ResizePtyRequest req = UNISHIM__AGENT__V1__RESIZE_PTY_REQUEST__INIT;
        req.container_id = t->id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        req.width = width;
        req.height = height;
        return sandbox_agent_acall(&t->pod->agent, t, "ResizePty", &req.base, NULL,
                                   sandbox_acall_plain, op, NULL, err);
}

static int sandbox_close_stdin(void *impl, const char *exec_id, struct us_error **err)
{
        (void)err;
        struct sandbox_task *t = impl;
        struct sandbox_proc *p = sandbox_proc_find(&t->ctr, exec_id);
        /* The shim closes its pipe after the last byte (task-io.c);
         * stdin_readable sees EOF and tells the guest once what was
         * written before has gone through. */
        (void)p;
        return 0;
}

static int sandbox_pause(void *impl, struct shim_op *op, struct us_error **err)
{
        struct sandbox_task *t = impl;
        return t->is_vm ? vmm_vm_pause(t->pod->vm, err)
                        : container_acall(t, "PauseContainer", NULL, sandbox_acall_plain, op, NULL,
                                          err);
}

static int sandbox_resume(void *impl, struct shim_op *op, struct us_error **err)
{
        struct sandbox_task *t = impl;
        return t->is_vm ? vmm_vm_resume(t->pod->vm, err)
                        : container_acall(t, "ResumeContainer", NULL, sandbox_acall_plain, op, NULL,
                                          err);
}

static int sandbox_update(void *impl, const struct us_oci_resources *res, const char *json,
                          size_t json_len, struct shim_op *op, struct us_error **err)
{
        (void)res;
        struct sandbox_task *t = impl;
        if (t->is_vm)
                return 0; /* the VM's size is fixed at boot */
        Unishim__Agent__V1__UpdateContainerRequest req =
                UNISHIM__AGENT__V1__UPDATE_CONTAINER_REQUEST__INIT;
        req.container_id = t->id;
        req.resources_json.data = (uint8_t *)json;
        req.resources_json.len = json_len;
        return sandbox_agent_acall(&t->pod->agent, t, "UpdateContainer", &req.base, NULL,
                                   sandbox_acall_plain, op, NULL, err);
}

static void stats_got(struct sandbox_acall *c, int r, ProtobufCMessage *resp, struct us_error **err)
{
        const Unishim__Agent__V1__StatsContainerResponse *s = (const void *)resp;
        if (r >= 0) {
                /* Hostile bytes go on to containerd only if they are Metrics. */
                Io__Containerd__Cgroups__V1__Metrics *m =
                        io__containerd__cgroups__v1__metrics__unpack(NULL, s->metrics.len,
                                                                     s->metrics.data);
                if (!m)
                        r = us_error_msg(err, EBADMSG,
                                         "guest agent StatsContainer: malformed metrics");
                else
                        io__containerd__cgroups__v1__metrics__free_unpacked(m, NULL);
        }
        if (r >= 0) {
                uint8_t *buf = malloc(s->metrics.len ? s->metrics.len : 1);
                if (!buf) {
                        r = us_errorf(err, ENOMEM, "stats");
                } else {
                        memcpy(buf, s->metrics.data, s->metrics.len);
                        *c->ret_data = buf;
                        *c->ret_len = s->metrics.len;
                }
        }
        sandbox_acall_finish(c, r, err);
}

static int sandbox_stats(void *impl, uint8_t **ret, size_t *ret_len, struct shim_op *op,
                         struct us_error **err)
{
        struct sandbox_task *t = impl;
        if (t->is_vm) { /* the VM's own cost on the host: QEMU's cgroup */
                if (!t->pod->vmpod.cgroup)
                        return us_error_msg(err, ENOENT, "the VM of pod %s is stopped",
                                            t->pod->vmpod.id);
                return us_cgroup_stats_packed(t->pod->vmpod.cgroup, ret, ret_len, err);
        }
        struct sandbox_acall *c = NULL;
        int r = container_acall(t, "StatsContainer",
                                &unishim__agent__v1__stats_container_response__descriptor,
                                stats_got, op, &c, err);
        if (r == -EINPROGRESS) {
                c->ret_data = ret;
                c->ret_len = ret_len;
        }
        return r;
}

static void pids_got(struct sandbox_acall *c, int r, ProtobufCMessage *resp, struct us_error **err)
{
        const Unishim__Agent__V1__ListPidsResponse *l = (const void *)resp;
        if (r >= 0) {
                size_t n = l->n_pids > 65536 ? 65536 : l->n_pids;
                pid_t *p = calloc(n ? n : 1, sizeof(*p));
                if (!p) {
                        r = us_errorf(err, ENOMEM, "pids");
                } else {
                        for (size_t i = 0; i < n; i++)
                                p[i] = (pid_t)l->pids[i];
                        *c->ret_pids = p;
                        *c->ret_len = n;
                }
        }
        sandbox_acall_finish(c, r, err);
}

static int sandbox_pids(void *impl, pid_t **ret, size_t *ret_n, struct shim_op *op,
                        struct us_error **err)
{
        struct sandbox_task *t = impl;
        if (t->is_vm) {
                pid_t *p = malloc(sizeof(*p));
                if (!p)
                        return us_errorf(err, ENOMEM, "pids");
                p[0] = sandbox_pid(t);
                *ret = p;
                *ret_n = 1;
                return 0;
        }
        struct sandbox_acall *c = NULL;
        int r = container_acall(t, "ListPids", &unishim__agent__v1__list_pids_response__descriptor,
                                pids_got, op, &c, err);
        if (r == -EINPROGRESS) {
                c->ret_pids = ret;
                c->ret_len = ret_n;
        }
        return r;
}

static int sandbox_oom_watch(void *impl, int *ret_fd, uint64_t *ret_count, struct us_error **err)
{
        (void)impl;
        (void)ret_fd;
        (void)ret_count;
        (void)err;
        return -ENOTSUP; /* OOM kills come from the guest's GetOOMEvent */
}

static int sandbox_oom_event(void *impl, int fd, uint64_t *count, bool *ret_oom,
                             struct us_error **err)
{
        (void)impl;
        (void)fd;
        (void)count;
        (void)err;
        *ret_oom = false;
        return 0;
}

/* The guest is done with the container's files (or gone): they leave the
 * share. The call is the pod's (its owner), not the task's (which is freed
 * right after its Delete), and owns the container's id and share entry
 * meanwhile. */
static void removed(struct sandbox_acall *c, int r, ProtobufCMessage *resp, struct us_error **err)
{
        (void)resp;
        struct sandbox_pod *pod = c->owner;
        char *id = c->ctx;
        struct us_error *e = NULL;
        if (pod->share && sandbox_share_remove_container(pod->share, id, &e) < 0)
                us_log_warn("pod %s: %s", pod->vmpod.id, us_error_text(e));
        us_error_free(e);
        free(id);
        sandbox_acall_finish(c, r, err);
}

static int sandbox_destroy(void *impl, struct us_error **err)
{
        (void)err;
        struct sandbox_task *t = impl;
        int r = -ENOTCONN;
        char *id = t->shared ? strdup(t->id) : NULL;
        if (id && t->in_guest && !t->pod->dead && !t->pod->vmpod.torn_down) {
                Unishim__Agent__V1__ContainerRequest req =
                        UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
                req.container_id = t->id;
                struct sandbox_acall *c = NULL;
                r = sandbox_agent_acall(&t->pod->agent, t->pod, "RemoveContainer", &req.base, NULL,
                                        removed, NULL, &c, NULL);
                if (r == -EINPROGRESS) {
                        c->ctx = TAKE_PTR(id);
                        t->shared = false; /* the call's now */
                }
        }
        free(id);
        t->in_guest = false;
        if (r != -EINPROGRESS)
                unshare_container(t);
        /* The pod's VM goes with its CRI sandbox task, or with the last
         * container of a pod that has none (ctr run). */
        bool has_vm_task = false;
        for (struct sandbox_task *o = t->pod->tasks; o; o = o->next)
                has_vm_task |= o->is_vm;
        if (t->is_vm || (!has_vm_task && !t->pod->tasks->next))
                pod_teardown(t->pod);
        return 0;
}

static void sandbox_free(void *impl)
{
        struct sandbox_task *t = impl;
        if (t)
                task_free(t);
}

/* `shim delete` after the pod's shim died: QEMU and virtiofsd died with it
 * (PR_SET_PDEATHSIG); the share's mounts, the state dir, the tap's wiring
 * and the VM's cgroup are still there. A container's task takes its entry
 * of the share; the pod's VM task (or the only task of a pod without a CRI
 * sandbox) takes the rest. */
static int sandbox_cleanup_dead(const char *namespace, const char *id,
                                const struct us_oci_spec *spec, struct us_error **err)
{
        char state[PATH_MAX];
        const char *pod_id = NULL;
        if (!vmpod_dead_state_dir(namespace, id, spec, POLICY_ISOLATION_SANDBOX, state,
                                  sizeof(state), &pod_id))
                return 0;
        struct sandbox_share *share = NULL;
        int r = sandbox_share_open(state, &share, err);
        if (r < 0 && r != -ENOENT)
                return r;
        r = 0;
        if (!vmpod_is_cri_sandbox(spec) && strcmp(pod_id, id) != 0) {
                if (share) {
                        r = sandbox_share_remove_container(share, id, err);
                        sandbox_share_forget(share); /* the pod's other tasks may still use it */
                }
                return r;
        }
        sandbox_share_free(share);
        r = sandbox_idmap_cleanup_dead(NULL, state, err);
        int rr = vmpod_cleanup_dead(state, pod_id, spec, r < 0 ? NULL : err);
        return r < 0 ? r : rr;
}

const struct shim_backend shim_backend_sandbox = {
        .name = "sandbox",
        .host_pty = false,
        .create = sandbox_create,
        .pid = sandbox_pid,
        .start = sandbox_start,
        .exec = sandbox_exec,
        .kill = sandbox_kill,
        .kill_exec = sandbox_kill_exec,
        .resize = sandbox_resize,
        .close_stdin = sandbox_close_stdin,
        .pause = sandbox_pause,
        .resume = sandbox_resume,
        .update = sandbox_update,
        .stats = sandbox_stats,
        .pids = sandbox_pids,
        .oom_watch = sandbox_oom_watch,
        .oom_event = sandbox_oom_event,
        .destroy = sandbox_destroy,
        .free = sandbox_free,
        .child_exited = pod_child_exited,
        .pod_free = pod_free,
        .host_namespaces = pod_host_namespaces,
        .cleanup_dead = sandbox_cleanup_dead,
};
