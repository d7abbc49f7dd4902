/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of a VM kind's pod (vmpod.h): state dir, network wiring,
 * the VM's cgroup, size, and the bookkeeping of the pod's end.
 */
#include "vmpod.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/id.h"
#include "base/log.h"

const char *vmpod_netns_of(const struct us_oci_spec *spec)
{
        for (size_t i = 0; i < spec->linux_.n_namespaces; i++)
                if (spec->linux_.namespaces[i].type == CLONE_NEWNET)
                        return spec->linux_.namespaces[i].path;
        return NULL;
}

bool vmpod_is_cri_sandbox(const struct us_oci_spec *spec)
{
        const char *type = us_oci_spec_annotation(spec, CRI_CONTAINER_TYPE);
        return type && strcmp(type, "sandbox") == 0;
}

/* The namespaces a VM kind's pod must have of its own, with the Kubernetes
 * field that gives them up (CRI namespace mode NODE: containerd leaves the
 * namespace out of the sandbox's spec). */
static const struct {
        int type;
        const char *field, *what;
} own_namespaces[] = {
        {CLONE_NEWNET, "hostNetwork", "network"},
        {CLONE_NEWPID, "hostPID", "PID"},
        {CLONE_NEWIPC, "hostIPC", "IPC"},
};

int vmpod_check_namespaces(enum policy_isolation kind, const struct us_oci_spec *spec,
                           struct us_error **err)
{
        for (size_t i = 0; i < US_ELEMENTSOF(own_namespaces); i++) {
                bool own = false;
                for (size_t k = 0; k < spec->linux_.n_namespaces; k++)
                        own |= spec->linux_.namespaces[k].type == own_namespaces[i].type;
                if (!own)
                        return us_error_msg(err, ENOTSUP,
                                            "%s is not supported by unishim's %s isolation: "
                                            "the pod's VM has its own kernel and cannot share "
                                            "the host's %s namespace (the pod's spec has none "
                                            "of its own); use the container isolation",
                                            own_namespaces[i].field, policy_isolation_name(kind),
                                            own_namespaces[i].what);
        }
        return 0;
}

/* A decimal annotation of containerd's (*ret 0 when absent or "0"); a
 * value that is not one is refused rather than sizing the VM otherwise. */
static int cri_number(const struct us_oci_spec *spec, const char *key, uint64_t *ret,
                      struct us_error **err)
{
        const char *v = us_oci_spec_annotation(spec, key);
        *ret = 0;
        if (!v)
                return 0;
        if (!*v || strlen(v) > 19 || strspn(v, "0123456789") != strlen(v))
                return us_error_msg(err, EINVAL, "annotation %s: \"%s\" is not a number", key, v);
        *ret = strtoull(v, NULL, 10);
        return 0;
}

/* The pod's limits: the spec's own (a task's, or a sandbox spec that has
 * them), else the sums containerd puts on the sandbox's spec from the
 * kubelet's PodSandboxConfig (the pause container itself has none); 0 for
 * none. */
static int pod_limits(const struct us_oci_spec *spec, uint64_t *ret_memory, uint64_t *ret_quota,
                      uint64_t *ret_period, struct us_error **err)
{
        const struct us_oci_memory *m = &spec->linux_.resources.memory;
        const struct us_oci_cpu *c = &spec->linux_.resources.cpu;
        bool has = spec->linux_.has_resources;
        uint64_t memory, quota, period;
        int r;
        if ((r = cri_number(spec, CRI_SANDBOX_MEMORY, &memory, err)) < 0 ||
            (r = cri_number(spec, CRI_SANDBOX_CPU_QUOTA, &quota, err)) < 0 ||
            (r = cri_number(spec, CRI_SANDBOX_CPU_PERIOD, &period, err)) < 0)
                return r;
        if (has && m->has_limit && m->limit > 0)
                memory = (uint64_t)m->limit;
        if (has && c->has_quota && c->quota > 0 && c->has_period && c->period > 0) {
                quota = (uint64_t)c->quota;
                period = c->period;
        }
        *ret_memory = memory;
        *ret_quota = period ? quota : 0;
        *ret_period = period;
        return 0;
}

/* Guest memory: the pod's unishim.io/memory-mib, else its limit plus room
 * for the guest kernel and agent, within the operator's bounds; the
 * operator's default without either. */
static unsigned memory_mib_of(uint64_t limit, const struct policy_sandbox_config *sb,
                              unsigned default_mib, const struct policy_vm_size *asked)
{
        if (asked->memory_mib)
                return asked->memory_mib;
        if (!limit)
                return default_mib;
        uint64_t mib = limit / (1024 * 1024) + VMPOD_MEMORY_OVERHEAD_MIB;
        if (mib < POLICY_VM_MIN_MEMORY_MIB)
                mib = POLICY_VM_MIN_MEMORY_MIB;
        return mib > sb->max_memory_mib ? sb->max_memory_mib : (unsigned)mib;
}

/* vCPUs: the pod's unishim.io/vcpus, else its CPU limit (quota/period,
 * rounded up) within bounds. */
static unsigned vcpus_of(uint64_t quota, uint64_t period, const struct policy_sandbox_config *sb,
                         const struct policy_vm_size *asked)
{
        if (asked->vcpus)
                return asked->vcpus;
        if (!quota || !period)
                return sb->vcpus;
        uint64_t n = quota / period + (quota % period != 0);
        if (n < 1)
                n = 1;
        return n > sb->max_vcpus ? sb->max_vcpus : (unsigned)n;
}

int vmpod_size(const struct policy_config *cfg, enum policy_isolation kind,
               const struct us_oci_spec *spec, struct policy_vm_size *ret, struct us_error **err)
{
        struct policy_vm_size asked;
        int r = policy_pod_vm_size(cfg, spec->annotations, spec->n_annotations, &asked, err);
        if (r < 0)
                return r;
        uint64_t memory, quota, period;
        if ((r = pod_limits(spec, &memory, &quota, &period, err)) < 0)
                return r;
        unsigned default_mib =
                kind == POLICY_ISOLATION_VM ? cfg->vm.memory_mib : cfg->sandbox.memory_mib;
        ret->vcpus = vcpus_of(quota, period, &cfg->sandbox, &asked);
        ret->memory_mib = memory_mib_of(memory, &cfg->sandbox, default_mib, &asked);
        return 0;
}

uid_t vmpod_qemu_uid(void)
{
        return (uid_t)(VMPOD_QEMU_UID_BASE + (unsigned)getpid());
}

void vmpod_mac_text(const struct netplumb_vm_net *net, char buf[static 18])
{
        snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", net->mac[0], net->mac[1], net->mac[2],
                 net->mac[3], net->mac[4], net->mac[5]);
}

/* The VM's cgroup: the CRI sandbox's cgroups path, else /unishim/<pod id>. */
static void vm_cgroup_path(const struct us_oci_spec *spec, const char *pod_id, char *buf,
                           size_t size)
{
        if (spec->linux_.cgroups_path && *spec->linux_.cgroups_path)
                snprintf(buf, size, "%s", spec->linux_.cgroups_path);
        else
                snprintf(buf, size, "/unishim/%s", pod_id);
}

/* Removes <state_dir> (by fd: us_rm_tree_at) with tree, and its parent
 * VMPOD_STATE_ROOT/<namespace> if that was the namespace's last pod. */
static int remove_state_dir(const char *state_dir, bool tree, struct us_error **err)
{
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", state_dir);
        char *slash = strrchr(parent, '/');
        if (!slash)
                return 0;
        *slash = '\0';
        int r = 0;
        if (tree) {
                _cleanup_close_ int fd =
                        open(parent, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                r = fd < 0 ? us_errorf(err, errno, "open %s", parent)
                           : us_rm_tree_at(fd, slash + 1, err);
        }
        (void)rmdir(parent);
        return r;
}

/* The state dir's mark of its pod's kind; a dir without one is a sandbox
 * pod's (made before the vm kind existed). */
#define KIND_FILE "kind"

int vmpod_start(struct vmpod *vp, enum policy_isolation kind, struct us_loop *loop,
                const char *namespace, const char *id, const struct us_oci_spec *spec,
                void (*teardown)(void *userdata), void *userdata, struct netplumb_vm_net **ret_net,
                int *ret_tap_fd, struct us_error **err)
{
        _cleanup_free_ struct netplumb_vm_net *vmnet = NULL;
        _cleanup_close_ int tap_fd = -1;
        int r = vmpod_check_namespaces(kind, spec, err);
        if (r < 0)
                return r;

        vp->loop = loop;
        vp->teardown = teardown;
        vp->userdata = userdata;
        if (!(vp->id = strdup(id)) ||
            asprintf(&vp->state_dir, "%s/%s/%s", VMPOD_STATE_ROOT, namespace, id) < 0) {
                vp->state_dir = NULL;
                return us_errorf(err, ENOMEM, "allocate pod");
        }
        /* The pod's own dir is new: one left by a shim that was killed is
         * `shim delete`'s to clean, never ours to reuse or remove. */
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s/%s", VMPOD_STATE_ROOT, namespace);
        if ((r = us_mkdir_p(parent, 0700, err)) < 0)
                return r;
        if (mkdir(vp->state_dir, 0700) < 0)
                return us_errorf(err, errno, "create %s", vp->state_dir);
        vp->state_made = true;
        {
                _cleanup_close_ int dfd = open(vp->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                _cleanup_close_ int kfd =
                        dfd < 0 ? -1
                                : openat(dfd, KIND_FILE,
                                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                         0600);
                const char *name = policy_isolation_name(kind);
                if (kfd < 0 || us_write_all(kfd, name, strlen(name)) < 0)
                        return us_errorf(err, errno, "mark %s", vp->state_dir);
        }

        if (spec->hostname && !(vp->hostname = strdup(spec->hostname)))
                return us_errorf(err, ENOMEM, "allocate pod");
        const char *netns = vmpod_netns_of(spec);
        if (netns) {
                if (!(vp->netns = strdup(netns)))
                        return us_errorf(err, ENOMEM, "allocate pod");
                r = netplumb_pod_inspect(netns, &vp->podnet, err);
                if (r >= 0 && ret_tap_fd)
                        r = netplumb_vm_wire(netns, vp->podnet, NULL, &vmnet, &tap_fd, err);
                if (r < 0)
                        return us_error_wrap(err, r, "wire the VM into the pod network %s", netns);
                vp->wired = ret_tap_fd != NULL;
        }

        char cgpath[PATH_MAX];
        vm_cgroup_path(spec, id, cgpath, sizeof(cgpath));
        r = us_cgroup_create(NULL, cgpath, &vp->cgroup, err);
        if (r < 0)
                return r;
        if (ret_net)
                *ret_net = TAKE_PTR(vmnet);
        if (ret_tap_fd)
                *ret_tap_fd = TAKE_FD(tap_fd);
        return 0;
}

int vmpod_net_plan(const struct vmpod *vp, struct netplumb_vm_net *ret, struct us_error **err)
{
        if (!vp->podnet)
                return us_error_msg(err, ENOENT, "the pod has no network namespace");
        return netplumb_vm_plan(vp->podnet, ret, err);
}

int vmpod_wire(struct vmpod *vp, const char *vmm_netns, const char *host_tap,
               struct netplumb_vm_net **ret_net, struct us_error **err)
{
        if (!vp->podnet)
                return us_error_msg(err, ENOENT, "the pod has no network namespace");
        const struct netplumb_vm_opts opts = {
                .use_default_excludes = true, .host_tap = host_tap, .host_tap_netns = vmm_netns};
        int r = netplumb_vm_wire(vp->netns, vp->podnet, &opts, ret_net, &(int){-1}, err);
        if (r < 0)
                return us_error_wrap(err, r, "wire the VM into the pod network %s", vp->netns);
        vp->wired = true;
        return 0;
}

static void lost_now(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct vmpod *vp = userdata;
        vp->dead_timer = NULL;
        vp->teardown(vp->userdata);
}

void vmpod_lost(struct vmpod *vp, const char *why)
{
        if (vp->dead_timer || vp->torn_down)
                return;
        us_log_error("pod %s: %s: the pod is dead, its VM goes", vp->id, why);
        struct us_error *err = NULL;
        if (us_loop_add_timer(vp->loop, 0, lost_now, vp, &vp->dead_timer, &err) < 0) {
                us_error_free(err);
                vp->teardown(vp->userdata);
        }
}

bool vmpod_teardown_begin(struct vmpod *vp)
{
        if (vp->torn_down)
                return false;
        vp->torn_down = true;
        vp->dead_timer = us_loop_source_remove(vp->dead_timer);
        return true;
}

void vmpod_teardown_host(struct vmpod *vp)
{
        if (vp->wired)
                (void)netplumb_vm_unwire(vp->netns, NULL);
        vp->wired = false;
        if (vp->cgroup) {
                (void)us_cgroup_destroy(vp->cgroup, NULL);
                vp->cgroup = us_cgroup_free(vp->cgroup);
        }
}

void vmpod_teardown_state(struct vmpod *vp)
{
        if (!vp->state_made)
                return;
        struct us_error *err = NULL;
        if (remove_state_dir(vp->state_dir, true, &err) < 0)
                us_log_warn("pod %s: remove %s: %s", vp->id, vp->state_dir, us_error_text(err));
        us_error_free(err);
        vp->state_made = false;
}

void vmpod_fini(struct vmpod *vp)
{
        if (vp->state_dir) /* a parent made for a pod whose own dir was not */
                (void)remove_state_dir(vp->state_dir, false, NULL);
        free(vp->id);
        free(vp->state_dir);
        free(vp->netns);
        free(vp->podnet);
        vp->podnet = NULL;
        free(vp->hostname);
        vp->id = vp->state_dir = vp->netns = vp->hostname = NULL;
}

int vmpod_host_namespaces(const struct vmpod *vp, const char **ret_netns, const char **ret_hostname,
                          struct us_error **err)
{
        if (!vp->netns)
                return us_error_msg(err, ENOENT, "the pod has no network namespace");
        *ret_netns = vp->netns;
        *ret_hostname = vp->hostname;
        return 0;
}

bool vmpod_dead_state_dir(const char *namespace, const char *id, const struct us_oci_spec *spec,
                          enum policy_isolation kind, char *buf, size_t size,
                          const char **ret_pod_id)
{
        const char *pod_id = us_oci_spec_annotation(spec, CRI_SANDBOX_ID);
        if (!pod_id || !*pod_id)
                pod_id = id;
        if (!us_id_valid(pod_id) || !us_id_valid(id) || !us_id_valid(namespace))
                return false; /* never a state dir of ours */
        if (snprintf(buf, size, "%s/%s/%s", VMPOD_STATE_ROOT, namespace, pod_id) >= (int)size)
                return false;
        struct stat st;
        if (lstat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
                return false; /* not a VM pod, or cleaned up already */
        char mark[16] = "";
        _cleanup_close_ int dfd = open(buf, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int kfd =
                dfd < 0 ? -1 : openat(dfd, KIND_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (kfd >= 0 && read(kfd, mark, sizeof(mark) - 1) < 0)
                mark[0] = '\0';
        if (strcmp(kfd >= 0 ? mark : policy_isolation_name(POLICY_ISOLATION_SANDBOX),
                   policy_isolation_name(kind)) != 0)
                return false; /* another kind's pod: its cleanup's */
        *ret_pod_id = pod_id;
        return true;
}

int vmpod_cleanup_dead(const char *state_dir, const char *pod_id, const struct us_oci_spec *spec,
                       struct us_error **err)
{
        int r = 0;
        const char *netns = vmpod_netns_of(spec);
        if (netns && (r = netplumb_vm_unwire(netns, err)) < 0)
                (void)us_error_wrap(err, r, "unwire the VM from %s", netns);
        char cgpath[PATH_MAX];
        vm_cgroup_path(spec, pod_id, cgpath, sizeof(cgpath));
        struct us_cgroup *cg = NULL;
        if (us_cgroup_open(NULL, cgpath, &cg, NULL) == 0) {
                int cr = us_cgroup_destroy(cg, err);
                if (cr < 0 && r == 0)
                        r = cr;
                us_cgroup_free(cg);
        }
        int rr = remove_state_dir(state_dir, true, err);
        if (rr < 0 && r == 0)
                r = rr;
        return r;
}
