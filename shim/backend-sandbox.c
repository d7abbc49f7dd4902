/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox kind: the pod runs in a QEMU microvm whose PID 1 is our guest
 * agent; the agent runs the pod's containers with libunishim's engine.
 *
 * Per pod (one shim): one VM, its tap wired into the pod netns (netplumb),
 * one shared directory exported by virtio-fs where each container's rootfs
 * and bind-mount sources are bind-mounted, and two agent channels:
 * "unishim.agent" for short synchronous calls (blocking ttrpc client: the
 * Task API is synchronous and these calls are short), and "unishim.events"
 * for the long polls (asynchronous client on the loop): exits, output
 * streams, OOM kills.
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
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.pb-c.h"
#include "backend.h"
#include "cgroup.h"
#include "cleanup.h"
#include "log.h"
#include "netplumb.h"
#include "policy.h"
#include "qemu.h"
#include "sandbox-spec.h"
#include "sandbox.h"
#include "ttrpc.h"

static void pod_teardown(struct sandbox_pod *pod);

/* ---- agent calls ---- */

int sandbox_agent_call(struct sandbox_pod *pod, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret,
                       int timeout_ms, struct us_error **err)
{
        if (!pod->agent || pod->dead)
                return us_error_msg(err, ENOTCONN, "guest agent of pod %s is gone", pod->id);
        _cleanup_free_ uint8_t *payload = NULL;
        size_t len = 0;
        int r = us_ttrpc_client_call(pod->agent, AGENT_SERVICE, method, req, NULL, 0, timeout_ms,
                                     &payload, &len, err);
        if (r < 0)
                return us_error_wrap(err, r, "guest agent %s", method);
        if (!resp_desc)
                return 0;
        ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, NULL, len, payload);
        if (!m)
                return us_error_msg(err, EBADMSG, "guest agent %s: malformed reply", method);
        *ret = m;
        return 0;
}

/* ---- the pod: state, VM, agent ---- */

static struct sandbox_task *task_find(struct sandbox_pod *pod, const char *id)
{
        for (struct sandbox_task *t = pod->tasks; t; t = t->next)
                if (strcmp(t->id, id) == 0)
                        return t;
        return NULL;
}

static void oom_poll(struct sandbox_pod *pod);

static void oom_got(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                    void *userdata)
{
        (void)err;
        struct sandbox_pod *pod = userdata;
        pod->oom_call = 0;
        if (status < 0)
                return; /* cancelled, or the channel is gone */
        Unishim__Agent__V1__OOMEvent *ev = unishim__agent__v1__oomevent__unpack(NULL, len, payload);
        if (ev && ev->container_id) {
                struct sandbox_task *t = task_find(pod, ev->container_id);
                if (t)
                        pod->oom(t->cookie);
        }
        if (ev)
                unishim__agent__v1__oomevent__free_unpacked(ev, NULL);
        oom_poll(pod);
}

static void oom_poll(struct sandbox_pod *pod)
{
        Unishim__Agent__V1__Empty req = UNISHIM__AGENT__V1__EMPTY__INIT;
        if (pod->events && !pod->oom_call)
                (void)us_ttrpc_aclient_call(pod->events, AGENT_SERVICE, "GetOOMEvent", &req.base,
                                            NULL, 0, 0, oom_got, pod, &pod->oom_call, NULL);
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
        us_log_warn("pod %s: the VM exited unexpectedly; end of its console: %.*s", pod->id, (int)n,
                    buf);
}

/* Every process of the pod ends when the VM does. */
static void pod_vm_gone(struct sandbox_pod *pod)
{
        if (pod->dead)
                return;
        pod->dead = true;
        if (!pod->torn_down)
                log_console_tail(pod);
        int ws = pod->vm ? vmm_vm_exit_status(pod->vm) : -1;
        for (struct sandbox_task *t = pod->tasks; t; t = t->next) {
                for (struct sandbox_proc *p = t->procs; p; p = p->next) {
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

static void events_closed(void *userdata, int reason)
{
        (void)reason;
        struct sandbox_pod *pod = userdata;
        /* The guest closed its side or broke the protocol: without the
         * channel nothing of the pod can be observed any more. */
        (void)pod;
}

/* The kernel and initramfs: UNISHIM_GUEST_DIR, else next to the binary as
 * installed (<prefix>/bin -> <prefix>/share/unishim), else the build tree
 * (<build>/shim -> <build>/vmm/guest-image). */
static int guest_image(char **ret_kernel, char **ret_initrd, struct us_error **err)
{
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n < 0)
                return us_errorf(err, errno, "find own binary");
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
                *slash = '\0';
        const char *env_dir = getenv("UNISHIM_GUEST_DIR");
        _cleanup_free_ char *installed = NULL, *built = NULL;
        if (asprintf(&installed, "%s/../share/unishim", exe) < 0 ||
            asprintf(&built, "%s/../vmm/guest-image", exe) < 0)
                return us_errorf(err, ENOMEM, "guest image path");
        const char *dirs[] = {env_dir && *env_dir ? env_dir : NULL, installed, built};
        static const char *const initrds[] = {"initramfs.cpio", "initramfs.cpio.gz"};
        for (size_t i = 0; i < US_ELEMENTSOF(dirs); i++) {
                if (!dirs[i])
                        continue;
                _cleanup_free_ char *k = NULL;
                if (asprintf(&k, "%s/vmlinux", dirs[i]) < 0)
                        return us_errorf(err, ENOMEM, "guest image path");
                if (access(k, R_OK) < 0)
                        continue;
                for (size_t j = 0; j < US_ELEMENTSOF(initrds); j++) {
                        _cleanup_free_ char *ir = NULL;
                        if (asprintf(&ir, "%s/%s", dirs[i], initrds[j]) < 0)
                                return us_errorf(err, ENOMEM, "guest image path");
                        if (access(ir, R_OK) < 0)
                                continue;
                        *ret_kernel = realpath(k, NULL);
                        *ret_initrd = realpath(ir, NULL);
                        if (!*ret_kernel || !*ret_initrd) {
                                free(*ret_kernel);
                                free(*ret_initrd);
                                return us_errorf(err, ENOMEM, "guest image path");
                        }
                        return 0;
                }
        }
        return us_error_msg(err, ENOENT,
                            "no guest image (vmlinux + initramfs) in %s or %s%s%s: build it with "
                            "make build, install it with make install, or set UNISHIM_GUEST_DIR",
                            installed, built, env_dir ? " or " : "", env_dir ? env_dir : "");
}

static const char *netns_path_of(const struct us_oci_spec *spec)
{
        for (size_t i = 0; i < spec->linux_.n_namespaces; i++)
                if (spec->linux_.namespaces[i].type == CLONE_NEWNET)
                        return spec->linux_.namespaces[i].path;
        return NULL;
}

/* Guest memory: the pod's unishim.io/memory-mib, else its limit plus room
 * for the guest kernel and agent, within the operator's bounds; the
 * operator's default without either. */
static unsigned memory_mib_of(const struct us_oci_spec *spec, const struct cri_sandbox_config *sb,
                              const struct cri_vm_size *asked)
{
        if (asked->memory_mib)
                return asked->memory_mib;
        const struct us_oci_memory *m = &spec->linux_.resources.memory;
        if (!spec->linux_.has_resources || !m->has_limit || m->limit <= 0)
                return sb->memory_mib;
        uint64_t mib = (uint64_t)m->limit / (1024 * 1024) + MEMORY_OVERHEAD_MIB;
        if (mib < 128)
                mib = 128;
        return mib > sb->max_memory_mib ? sb->max_memory_mib : (unsigned)mib;
}

/* vCPUs: the pod's unishim.io/vcpus, else its CPU limit (quota/period,
 * rounded up) within bounds. */
static unsigned vcpus_of(const struct us_oci_spec *spec, const struct cri_sandbox_config *sb,
                         const struct cri_vm_size *asked)
{
        if (asked->vcpus)
                return asked->vcpus;
        const struct us_oci_cpu *c = &spec->linux_.resources.cpu;
        if (!spec->linux_.has_resources || !c->has_quota || c->quota <= 0 || !c->has_period ||
            c->period == 0)
                return sb->vcpus;
        uint64_t n = ((uint64_t)c->quota + c->period - 1) / c->period;
        if (n < 1)
                n = 1;
        return n > sb->max_vcpus ? sb->max_vcpus : (unsigned)n;
}

static enum vmm_accel accel_of(const struct cri_sandbox_config *sb)
{
        if (sb->accel && strcmp(sb->accel, "kvm") == 0)
                return VMM_ACCEL_KVM;
        if (sb->accel && strcmp(sb->accel, "tcg") == 0)
                return VMM_ACCEL_TCG;
        return VMM_ACCEL_AUTO;
}

static int mkdir_p(const char *path, mode_t mode)
{
        char buf[PATH_MAX];
        if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
                return -ENAMETOOLONG;
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, 0711) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Removes a directory tree of empty dirs and unmounted mount points. */
static void rmdir_tree(const char *path)
{
        DIR *d = opendir(path);
        if (d) {
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        char sub[PATH_MAX];
                        if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >=
                            (int)sizeof(sub))
                                continue;
                        (void)umount2(sub, MNT_DETACH | UMOUNT_NOFOLLOW);
                        if (de->d_type == DT_DIR)
                                rmdir_tree(sub);
                        else
                                (void)unlink(sub);
                }
                closedir(d);
        }
        (void)umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
        (void)rmdir(path);
}

static int pod_bootstrap(struct sandbox_pod *pod, const struct us_oci_spec *spec,
                         const struct netplumb_vm_net *vmnet, struct us_error **err)
{
        Unishim__Agent__V1__CheckRequest check = UNISHIM__AGENT__V1__CHECK_REQUEST__INIT;
        _cleanup_pb_ Unishim__Agent__V1__CheckResponse *version = NULL;
        int r = sandbox_agent_call(pod, "Check", &check.base,
                                   &unishim__agent__v1__check_response__descriptor,
                                   (ProtobufCMessage **)&version, AGENT_BOOT_MS, err);
        if (r < 0)
                return r;

        Unishim__Agent__V1__Storage storage = UNISHIM__AGENT__V1__STORAGE__INIT;
        storage.source = (char *)GUEST_SHARE_TAG;
        storage.fstype = (char *)"virtiofs";
        storage.mount_point = (char *)GUEST_SHARE_DIR;
        Unishim__Agent__V1__Storage *storages[] = {&storage};
        Unishim__Agent__V1__AddStorageRequest add = UNISHIM__AGENT__V1__ADD_STORAGE_REQUEST__INIT;
        add.n_storages = 1;
        add.storages = storages;
        r = sandbox_agent_call(pod, "AddStorage", &add.base, NULL, NULL, AGENT_CALL_MS, err);
        if (r < 0)
                return r;

        Unishim__Agent__V1__UpdateNetworkRequest net =
                UNISHIM__AGENT__V1__UPDATE_NETWORK_REQUEST__INIT;
        net.hostname = spec->hostname ? spec->hostname : (char *)"";
        Unishim__Agent__V1__Interface iface = UNISHIM__AGENT__V1__INTERFACE__INIT;
        Unishim__Agent__V1__Interface *ifaces[] = {&iface};
        Unishim__Agent__V1__IPAddress addrs[2], *addrp[2];
        Unishim__Agent__V1__Route routes[2], *routep[2];
        char addr_text[2][64], gw_text[2][64], mac[18];
        if (vmnet) {
                snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", vmnet->mac[0],
                         vmnet->mac[1], vmnet->mac[2], vmnet->mac[3], vmnet->mac[4], vmnet->mac[5]);
                iface.name = (char *)"eth0";
                iface.mac = mac;
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
        r = sandbox_agent_call(pod, "UpdateNetwork", &net.base, NULL, NULL, AGENT_CALL_MS, err);
        if (r < 0)
                return r;
        oom_poll(pod);
        return 0;
}

static int pod_start(const struct shim_backend_env *env, const struct us_container_config *cfg,
                     struct sandbox_pod **ret, struct us_error **err)
{
        struct sandbox_pod *pod = calloc(1, sizeof(*pod));
        if (!pod)
                return us_errorf(err, ENOMEM, "allocate pod");
        pod->loop = env->loop;
        pod->process_exited = env->process_exited;
        pod->oom = env->oom;
        int r = 0;
        _cleanup_free_ char *kernel = NULL, *initrd = NULL;
        _cleanup_free_ struct netplumb_pod_net *podnet = NULL;
        _cleanup_free_ struct netplumb_vm_net *vmnet = NULL;
        _cleanup_close_ int tap_fd = -1;
        const struct us_oci_spec *spec = cfg->spec;

        if (!(pod->id = strdup(cfg->id)) ||
            asprintf(&pod->state_dir, "%s/%s/%s", POD_STATE_ROOT, env->namespace, cfg->id) < 0 ||
            asprintf(&pod->share_dir, "%s/shared", pod->state_dir) < 0) {
                pod->state_dir = pod->share_dir = NULL;
                r = us_errorf(err, ENOMEM, "allocate pod");
                goto fail;
        }
        const struct cri_sandbox_config *sb = &env->config->sandbox;
        struct cri_vm_size asked;
        r = cri_policy_vm_size(env->config, spec->annotations, spec->n_annotations, &asked, err);
        if (r < 0)
                goto fail;
        if (sb->kernel && sb->initrd) {
                kernel = strdup(sb->kernel);
                initrd = strdup(sb->initrd);
                r = kernel && initrd ? 0 : us_errorf(err, ENOMEM, "allocate pod");
        } else {
                r = guest_image(&kernel, &initrd, err);
        }
        if (r < 0)
                goto fail;
        if ((r = mkdir_p(pod->state_dir, 0700)) < 0 || (r = mkdir_p(pod->share_dir, 0700)) < 0) {
                r = us_errorf(err, -r, "create %s", pod->share_dir);
                goto fail;
        }
        /* virtiofsd serves a copy of our mount namespace: the share must be
         * a shared mount for the containers' rootfs binds made later to
         * reach it. */
        if (mount(pod->share_dir, pod->share_dir, NULL, MS_BIND, NULL) < 0 ||
            mount(NULL, pod->share_dir, NULL, MS_SHARED, NULL) < 0) {
                r = us_errorf(err, errno, "make %s a shared mount", pod->share_dir);
                goto fail;
        }

        if (spec->hostname && !(pod->hostname = strdup(spec->hostname))) {
                r = us_errorf(err, ENOMEM, "allocate pod");
                goto fail;
        }
        const char *netns = netns_path_of(spec);
        if (netns) {
                if (!(pod->netns = strdup(netns))) {
                        r = us_errorf(err, ENOMEM, "allocate pod");
                        goto fail;
                }
                r = netplumb_pod_inspect(netns, &podnet, err);
                if (r >= 0)
                        r = netplumb_vm_wire(netns, podnet, NULL, &vmnet, &tap_fd, err);
                if (r < 0) {
                        r = us_error_wrap(err, r, "wire the VM into the pod network %s", netns);
                        goto fail;
                }
                pod->wired = true;
        }

        char cgpath[PATH_MAX];
        snprintf(cgpath, sizeof(cgpath), "%s",
                 spec->linux_.cgroups_path ? spec->linux_.cgroups_path : "");
        if (!*cgpath)
                snprintf(cgpath, sizeof(cgpath), "/unishim/%s", cfg->id);
        r = us_cgroup_create(NULL, cgpath, &pod->cgroup, err);
        if (r < 0)
                goto fail;

        char mac[18] = "";
        if (vmnet)
                snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", vmnet->mac[0],
                         vmnet->mac[1], vmnet->mac[2], vmnet->mac[3], vmnet->mac[4], vmnet->mac[5]);
        const struct vmm_share share = {.tag = GUEST_SHARE_TAG, .host_dir = pod->share_dir};
        const struct vmm_vm_config vc = {
                .id = cfg->id,
                .state_dir = pod->state_dir,
                .kernel = kernel,
                .initrd = initrd,
                .vcpus = vcpus_of(spec, sb, &asked),
                .memory_mib = memory_mib_of(spec, sb, &asked),
                .accel = accel_of(sb),
                .share_type = VMM_SHARE_VIRTIOFS,
                .shares = &share,
                .n_shares = 1,
                .tap_fd = tap_fd,
                .mac = vmnet ? mac : NULL,
                .cgroup = pod->cgroup,
                .loop = pod->loop,
                .console_log_max = (size_t)sb->console_log_max_bytes,
                /* The guest agent logs at debug level too (to console.log). */
                .cmdline_extra = env->debug ? "unishim.debug=1" : NULL,
        };
        r = vmm_vm_start(&vc, &pod->vm, err);
        if (r < 0)
                goto fail;
        tap_fd = us_close(tap_fd); /* QEMU holds it now */
        if (vmm_vm_accel(pod->vm) == VMM_ACCEL_TCG && accel_of(sb) == VMM_ACCEL_AUTO)
                us_log_warn("pod %s: %s", pod->id, vmm_vm_accel_reason(pod->vm));

        int fd = -1;
        r = vmm_vm_agent_connect(pod->vm, &fd, err);
        if (r >= 0)
                r = us_ttrpc_client_from_fd(fd, &pod->agent, err);
        if (r >= 0)
                r = vmm_vm_port_connect(pod->vm, VMM_PORT_EVENTS, &fd, err);
        if (r >= 0)
                r = us_ttrpc_aclient_new(pod->loop, fd, &pod->events, err);
        if (r < 0)
                goto fail;
        us_ttrpc_aclient_on_close(pod->events, events_closed, pod);

        r = pod_bootstrap(pod, spec, vmnet, err);
        if (r < 0)
                goto fail;
        *ret = pod;
        return 0;
fail:
        r = us_error_wrap(err, r, "start sandbox VM");
        pod_teardown(pod);
        free(pod->id);
        free(pod->state_dir);
        free(pod->share_dir);
        free(pod->netns);
        free(pod->hostname);
        free(pod);
        return r;
}

/* Stops the VM and removes everything the pod made on the host. Idempotent. */
static void pod_teardown(struct sandbox_pod *pod)
{
        if (pod->torn_down)
                return;
        pod->torn_down = true;
        if (pod->agent && !pod->dead) {
                Unishim__Agent__V1__Empty req = UNISHIM__AGENT__V1__EMPTY__INIT;
                (void)sandbox_agent_call(pod, "Shutdown", &req.base, NULL, NULL, 2000, NULL);
        }
        pod->events = us_ttrpc_aclient_free(pod->events);
        pod->agent = us_ttrpc_client_free(pod->agent);
        if (pod->vm) {
                (void)vmm_vm_quit(pod->vm, NULL);
                pod_vm_gone(pod);
        }
        if (pod->wired)
                (void)netplumb_vm_unwire(pod->netns, NULL);
        pod->wired = false;
        if (pod->cgroup) {
                (void)us_cgroup_destroy(pod->cgroup, NULL);
                pod->cgroup = us_cgroup_free(pod->cgroup);
        }
        if (pod->state_dir)
                rmdir_tree(pod->state_dir);
}

static void pod_free(void *impl)
{
        struct sandbox_pod *pod = impl;
        if (!pod)
                return;
        pod_teardown(pod);
        if (pod->state_dir) {
                /* /run/unishim/<namespace>: gone with its last pod. */
                char *slash = strrchr(pod->state_dir, '/');
                if (slash) {
                        *slash = '\0';
                        (void)rmdir(pod->state_dir);
                }
        }
        pod->vm = vmm_vm_free(pod->vm);
        free(pod->id);
        free(pod->state_dir);
        free(pod->share_dir);
        free(pod->netns);
        free(pod->hostname);
        free(pod);
}

static int pod_host_namespaces(void *impl, const char **ret_netns, const char **ret_hostname,
                               struct us_error **err)
{
        struct sandbox_pod *pod = impl;
        if (!pod || !pod->netns)
                return us_error_msg(err, ENOENT, "the pod has no network namespace");
        *ret_netns = pod->netns;
        *ret_hostname = pod->hostname;
        return 0;
}

static bool pod_child_exited(void *impl, pid_t pid, int wait_status)
{
        struct sandbox_pod *pod = impl;
        if (!pod->vm || !vmm_vm_child_exited(pod->vm, pid, wait_status))
                return false;
        if (!vmm_vm_running(pod->vm))
                pod_vm_gone(pod);
        return true;
}

/* ---- containers in the guest ---- */

static bool is_cri_sandbox(const struct us_oci_spec *spec)
{
        const char *type = us_oci_spec_annotation(spec, CRI_CONTAINER_TYPE);
        return type && strcmp(type, "sandbox") == 0;
}

static bool mount_is_bind(const struct us_oci_mount *m)
{
        if (m->type && strcmp(m->type, "bind") == 0)
                return true;
        for (char **o = m->options; o && *o; o++)
                if (strcmp(*o, "bind") == 0 || strcmp(*o, "rbind") == 0)
                        return true;
        return false;
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

/* A read-only recursive bind of src at dst that is read-only before it is
 * attached. The share is MS_SHARED and virtiofsd serves it from a slave copy
 * in its own mount namespace: the copy that propagates there takes the flags
 * the mount has when it is attached, and a later remount changes only ours.
 * So a guest that remounts its volume read-write still meets EROFS on the
 * host. */
static int bind_readonly(const char *src, const char *dst, struct us_error **err)
{
        _cleanup_close_ int tree =
                open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                return us_errorf(err, errno, "share %s with the guest read-only", src);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
                return us_errorf(err, errno, "make %s read-only", src);
        if (move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return us_errorf(err, errno, "share %s with the guest read-only", src);
        return 0;
}

/* Bind-mounts src at dst (created as a file or a directory like src). */
static int bind_into_share(const char *src, const char *dst, bool readonly, struct us_error **err)
{
        struct stat st;
        if (stat(src, &st) < 0)
                return us_errorf(err, errno, "share %s with the guest", src);
        if (S_ISDIR(st.st_mode)) {
                if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                        return us_errorf(err, errno, "create %s", dst);
        } else {
                int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0)
                        return us_errorf(err, errno, "create %s", dst);
                us_close(fd);
        }
        if (readonly)
                return bind_readonly(src, dst, err);
        if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                return us_errorf(err, errno, "share %s with the guest", src);
        return 0;
}

/* Shares the rootfs and the bind-mount sources, and writes the spec the
 * guest's engine runs. */
static int guest_spec(struct sandbox_task *t, const struct us_container_config *cfg,
                      char **ret_json, size_t *ret_len, struct us_error **err)
{
        struct sandbox_pod *pod = t->pod;
        const struct us_oci_spec *spec = cfg->spec;
        if (asprintf(&t->share, "%s/%s", pod->share_dir, t->id) < 0) {
                t->share = NULL;
                return us_errorf(err, ENOMEM, "allocate");
        }
        char path[PATH_MAX];
        if (mkdir(t->share, 0700) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "create %s", t->share);
        snprintf(path, sizeof(path), "%s/rootfs", t->share);
        /* Writable even for a read-only root: the guest's engine creates
         * mount points in it before it remounts it read-only, as runc does,
         * and its writes land in the container's own layer, not in host
         * data (volumes below are read-only on the host too). */
        int r = bind_into_share(cfg->rootfs, path, false, err);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "%s/mounts", t->share);
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "create %s", path);

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
                snprintf(path, sizeof(path), "%s/mounts/%zu", t->share, i);
                r = bind_into_share(m->source, path, mount_is_readonly(m), err);
                if (r < 0)
                        goto out;
                t->n_binds = i + 1;
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
        };
        char cfgpath[PATH_MAX];
        snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", cfg->bundle);
        {
                _cleanup_fclose_ FILE *f = fopen(cfgpath, "re");
                if (!f) {
                        r = us_errorf(err, errno, "read %s", cfgpath);
                        goto out;
                }
                size_t cap = 0;
                _cleanup_free_ char *buf = NULL;
                ssize_t got = getdelim(&buf, &cap, '\0', f);
                if (got < 0) {
                        r = us_errorf(err, errno ? errno : EIO, "read %s", cfgpath);
                        goto out;
                }
                r = sandbox_spec_rewrite(buf, (size_t)got, &rw, &json, &json_len, err);
                if (r < 0)
                        goto out;
        }
        *ret_json = TAKE_PTR(json);
        *ret_len = json_len;
        r = 0;
out:
        for (size_t i = 0; i < n; i++)
                free(sources[i]);
        return r;
}

static void unshare_container(struct sandbox_task *t)
{
        if (!t->share)
                return;
        rmdir_tree(t->share);
}

/* Unlinks and frees a task; the last task of a pod without a CRI sandbox
 * takes the VM with it. */
static void task_free(struct sandbox_task *t)
{
        struct sandbox_pod *pod = t->pod;
        for (struct sandbox_task **pp = &pod->tasks; *pp; pp = &(*pp)->next) {
                if (*pp == t) {
                        *pp = t->next;
                        break;
                }
        }
        while (t->procs) {
                struct sandbox_proc *p = t->procs;
                t->procs = p->next;
                sandbox_proc_free(p);
        }
        unshare_container(t);
        us_oci_spec_free(t->spec);
        free(t->share);
        free(t->id);
        free(t);
}

static int sandbox_create(const struct shim_backend_env *env, void *task_cookie,
                          const struct us_container_config *cfg, void **ret_impl, int *ret_pty,
                          struct us_error **err)
{
        struct sandbox_pod *pod = *env->pod;
        bool vm_task = is_cri_sandbox(cfg->spec);
        bool started_pod = false;
        if (!pod) {
                int r = pod_start(env, cfg, &pod, err);
                if (r < 0)
                        return r;
                *env->pod = pod;
                started_pod = true;
        } else if (vm_task || pod->dead || pod->torn_down) {
                return us_error_msg(err, EINVAL, "pod %s already has its VM%s", pod->id,
                                    pod->dead ? ", and it is gone" : "");
        }

        struct sandbox_task *t = calloc(1, sizeof(*t));
        if (!t || !(t->id = strdup(cfg->id))) {
                free(t);
                return us_errorf(err, ENOMEM, "allocate task");
        }
        t->pod = pod;
        t->cookie = task_cookie;
        t->is_vm = vm_task;
        t->next = pod->tasks;
        pod->tasks = t;
        struct sandbox_proc *init = NULL;
        int r = sandbox_proc_new(t, NULL, &cfg->stdio, &init, err);
        if (r >= 0 && !vm_task) {
                _cleanup_free_ char *json = NULL;
                size_t len = 0;
                r = guest_spec(t, cfg, &json, &len, err);
                if (r >= 0) {
                        Unishim__Agent__V1__CreateContainerRequest req =
                                UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
                        req.container_id = t->id;
                        req.spec_json.data = (uint8_t *)json;
                        req.spec_json.len = len;
                        req.stdin = init->in_fd >= 0;
                        _cleanup_pb_ Unishim__Agent__V1__CreateContainerResponse *resp = NULL;
                        r = sandbox_agent_call(
                                pod, "CreateContainer", &req.base,
                                &unishim__agent__v1__create_container_response__descriptor,
                                (ProtobufCMessage **)&resp, AGENT_CALL_MS, err);
                }
                if (r >= 0) {
                        t->in_guest = true;
                        sandbox_proc_poll(init);
                }
        }
        if (r < 0) {
                task_free(t);
                if (started_pod && !pod->tasks) {
                        pod_free(pod);
                        *env->pod = NULL;
                }
                return r;
        }
        t->spec = cfg->spec; /* ours now, as the contract says */
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

static int sandbox_start(void *impl, struct us_error **err)
{
        struct sandbox_task *t = impl;
        if (t->is_vm)
                return 0; /* the VM runs since create */
        Unishim__Agent__V1__ContainerRequest req = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        req.container_id = t->id;
        return sandbox_agent_call(t->pod, "StartContainer", &req.base, NULL, NULL, AGENT_CALL_MS,
                                  err);
}

static int sandbox_exec(void *impl, const char *exec_id, const struct us_oci_process *p,
                        const char *json, size_t json_len, const struct us_stdio *stdio,
                        pid_t *ret_pid, int *ret_pty, struct us_error **err)
{
        (void)p;
        struct sandbox_task *t = impl;
        if (t->is_vm)
                return us_error_msg(err, EINVAL, "cannot exec in the pod's sandbox VM task %s",
                                    t->id);
        struct sandbox_proc *proc = NULL;
        int r = sandbox_proc_new(t, exec_id, stdio, &proc, err);
        if (r < 0)
                return r;
        Unishim__Agent__V1__ExecProcessRequest req = UNISHIM__AGENT__V1__EXEC_PROCESS_REQUEST__INIT;
        req.container_id = t->id;
        req.exec_id = (char *)exec_id;
        req.process_json.data = (uint8_t *)json;
        req.process_json.len = json_len;
        req.stdin = proc->in_fd >= 0;
        _cleanup_pb_ Unishim__Agent__V1__ExecProcessResponse *resp = NULL;
        r = sandbox_agent_call(t->pod, "ExecProcess", &req.base,
                               &unishim__agent__v1__exec_process_response__descriptor,
                               (ProtobufCMessage **)&resp, AGENT_CALL_MS, err);
        if (r < 0) {
                t->procs = proc->next; /* proc_new put it first */
                sandbox_proc_free(proc);
                return r;
        }
        sandbox_proc_poll(proc);
        *ret_pid = sandbox_pid(t);
        *ret_pty = -1;
        return 0;
}

static int signal_guest(struct sandbox_task *t, const char *exec_id, int sig, bool all,
                        struct us_error **err)
{
        Unishim__Agent__V1__SignalProcessRequest req =
                UNISHIM__AGENT__V1__SIGNAL_PROCESS_REQUEST__INIT;
        req.container_id = t->id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        req.signal = (uint32_t)sig;
        req.all = all;
        int r = sandbox_agent_call(t->pod, "SignalProcess", &req.base, NULL, NULL, AGENT_CALL_MS,
                                   err);
        return r == -ENOENT ? -ESRCH : r;
}

static int sandbox_kill(void *impl, int sig, bool all, struct us_error **err)
{
        struct sandbox_task *t = impl;
        if (!t->is_vm) {
                if (t->pod->dead)
                        return -ESRCH;
                return signal_guest(t, NULL, sig, all, err);
        }
        /* The pod's VM task: any deadly signal ends the VM. */
        if (sig == 0 || t->pod->dead)
                return t->pod->dead ? -ESRCH : 0;
        pod_teardown(t->pod);
        return 0;
}

static int sandbox_kill_exec(void *impl, const char *exec_id, pid_t pid, int sig,
                             struct us_error **err)
{
        (void)pid;
        struct sandbox_task *t = impl;
        if (t->pod->dead)
                return -ESRCH;
        return signal_guest(t, exec_id, sig, false, err);
}

static int sandbox_resize(void *impl, const char *exec_id, unsigned width, unsigned height,
                          struct us_error **err)
{
        struct sandbox_task *t = impl;
        Unishim__Agent__V1__ResizePtyRequest req = UNISHIM__AGENT__V1__RESIZE_PTY_REQUEST__INIT;
        req.container_id = t->id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        req.width = width;
        req.height = height;
        return sandbox_agent_call(t->pod, "ResizePty", &req.base, NULL, NULL, AGENT_CALL_MS, err);
}

static int sandbox_close_stdin(void *impl, const char *exec_id, struct us_error **err)
{
        (void)err;
        struct sandbox_task *t = impl;
        struct sandbox_proc *p = sandbox_proc_find(t, exec_id);
        /* The shim closed its pipe; stdin_readable sees EOF and tells the
         * guest once what was written before has gone through. */
        (void)p;
        return 0;
}

static int container_call(struct sandbox_task *t, const char *method, struct us_error **err)
{
        Unishim__Agent__V1__ContainerRequest req = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        req.container_id = t->id;
        return sandbox_agent_call(t->pod, method, &req.base, NULL, NULL, AGENT_CALL_MS, err);
}

static int sandbox_pause(void *impl, struct us_error **err)
{
        struct sandbox_task *t = impl;
        return t->is_vm ? vmm_vm_pause(t->pod->vm, err) : container_call(t, "PauseContainer", err);
}

static int sandbox_resume(void *impl, struct us_error **err)
{
        struct sandbox_task *t = impl;
        return t->is_vm ? vmm_vm_resume(t->pod->vm, err)
                        : container_call(t, "ResumeContainer", err);
}

static int sandbox_update(void *impl, const struct us_oci_resources *res, const char *json,
                          size_t json_len, struct us_error **err)
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
        return sandbox_agent_call(t->pod, "UpdateContainer", &req.base, NULL, NULL, AGENT_CALL_MS,
                                  err);
}

static int sandbox_stats(void *impl, uint8_t **ret, size_t *ret_len, struct us_error **err)
{
        struct sandbox_task *t = impl;
        if (t->is_vm) /* the VM's own cost on the host: QEMU's cgroup */
                return us_cgroup_stats_packed(t->pod->cgroup, ret, ret_len, err);
        Unishim__Agent__V1__ContainerRequest req = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        req.container_id = t->id;
        _cleanup_pb_ Unishim__Agent__V1__StatsContainerResponse *resp = NULL;
        int r = sandbox_agent_call(t->pod, "StatsContainer", &req.base,
                                   &unishim__agent__v1__stats_container_response__descriptor,
                                   (ProtobufCMessage **)&resp, AGENT_CALL_MS, err);
        if (r < 0)
                return r;
        /* Hostile bytes go on to containerd only if they are Metrics. */
        Io__Containerd__Cgroups__V1__Metrics *m = io__containerd__cgroups__v1__metrics__unpack(
                NULL, resp->metrics.len, resp->metrics.data);
        if (!m)
                return us_error_msg(err, EBADMSG, "guest agent StatsContainer: malformed metrics");
        io__containerd__cgroups__v1__metrics__free_unpacked(m, NULL);
        uint8_t *buf = malloc(resp->metrics.len ? resp->metrics.len : 1);
        if (!buf)
                return us_errorf(err, ENOMEM, "stats");
        memcpy(buf, resp->metrics.data, resp->metrics.len);
        *ret = buf;
        *ret_len = resp->metrics.len;
        return 0;
}

static int sandbox_pids(void *impl, pid_t **ret, size_t *ret_n, struct us_error **err)
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
        Unishim__Agent__V1__ContainerRequest req = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        req.container_id = t->id;
        _cleanup_pb_ Unishim__Agent__V1__ListPidsResponse *resp = NULL;
        int r = sandbox_agent_call(t->pod, "ListPids", &req.base,
                                   &unishim__agent__v1__list_pids_response__descriptor,
                                   (ProtobufCMessage **)&resp, AGENT_CALL_MS, err);
        if (r < 0)
                return r;
        size_t n = resp->n_pids > 65536 ? 65536 : resp->n_pids;
        pid_t *p = calloc(n ? n : 1, sizeof(*p));
        if (!p)
                return us_errorf(err, ENOMEM, "pids");
        for (size_t i = 0; i < n; i++)
                p[i] = (pid_t)resp->pids[i];
        *ret = p;
        *ret_n = n;
        return 0;
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

static int sandbox_destroy(void *impl, struct us_error **err)
{
        (void)err;
        struct sandbox_task *t = impl;
        if (t->in_guest && !t->pod->dead && !t->pod->torn_down) {
                (void)container_call(t, "RemoveContainer", NULL);
                t->in_guest = false;
        }
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
};
