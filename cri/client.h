/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Typed CRI v1 (runtime.v1) calls, the way kubelet drives containerd: what
 * tests, benchmarks and the demo use. Every function follows the error
 * contract (libunishim/base/error.h): 0 or a negative errno with *err set; ret_
 * out-parameters are written only on success and are then owned by the
 * caller. Reply messages are freed with cri_message_free(). A gRPC error
 * keeps the server's message: "RunPodSandbox: rpc error code 2: ...".
 *
 * Request messages are taken const: they are only packed, never modified.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cleanup.h"
#include "cri/api.pb-c.h"
#include "base/error.h"

#define CRI_DEFAULT_ENDPOINT "unix:///run/containerd/containerd.sock"
/* Deadline of every call that has no timeout of its own (RunPodSandbox can
 * boot a VM under TCG; PullImage may be slow). */
#define CRI_DEFAULT_TIMEOUT_MS (4 * 60 * 1000)

struct cri_client;

/* Opens a client for endpoint (see cri_grpc_new: unix:///path or /path).
 * Lazy: a dead endpoint fails the first call. *ret: cri_client_free(). */
int cri_client_new(const char *endpoint, struct cri_client **ret, struct us_error **err);
/* Accepts NULL; returns NULL. */
struct cri_client *cri_client_free(struct cri_client *c);
DEFINE_CLEANUP(struct cri_client *, cri_client_free)
/* Sets the deadline (ms, > 0) of calls without their own timeout. */
void cri_client_set_timeout(struct cri_client *c, int64_t timeout_ms);

/* Frees any reply returned below (a ProtobufCMessage *); accepts NULL. */
void cri_message_free(void *msg);
static inline void cri_message_freep(void *p)
{
        cri_message_free(*(void **)p);
}
#define _cleanup_cri_msg_ _cleanup_(cri_message_freep)

/* Output of a command run by cri_exec_sync: data is NUL-terminated (the
 * terminator is not counted in len) and may contain other NULs. */
struct cri_output {
        char *data;
        size_t len;
};
void cri_output_clear(struct cri_output *o);

/* ---- RuntimeService ---- */

int cri_version(struct cri_client *c, Runtime__V1__VersionResponse **ret, struct us_error **err);

/* RunPodSandbox; runtime_handler NULL or "" selects containerd's default.
 * *ret_id: the sandbox id (checked: 1..128 chars of [A-Za-z0-9_.-]), free(). */
int cri_run_pod_sandbox(struct cri_client *c, const Runtime__V1__PodSandboxConfig *cfg,
                        const char *runtime_handler, char **ret_id, struct us_error **err);
int cri_stop_pod_sandbox(struct cri_client *c, const char *pod_id, struct us_error **err);
int cri_remove_pod_sandbox(struct cri_client *c, const char *pod_id, struct us_error **err);
int cri_pod_sandbox_status(struct cri_client *c, const char *pod_id, bool verbose,
                           Runtime__V1__PodSandboxStatusResponse **ret, struct us_error **err);
/* filter NULL: all sandboxes. */
int cri_list_pod_sandbox(struct cri_client *c, const Runtime__V1__PodSandboxFilter *filter,
                         Runtime__V1__ListPodSandboxResponse **ret, struct us_error **err);

/* CreateContainer in pod_id; sandbox_cfg is the config the pod was run with.
 * *ret_id: checked like the sandbox id, free(). */
int cri_create_container(struct cri_client *c, const char *pod_id,
                         const Runtime__V1__ContainerConfig *cfg,
                         const Runtime__V1__PodSandboxConfig *sandbox_cfg, char **ret_id,
                         struct us_error **err);
int cri_start_container(struct cri_client *c, const char *container_id, struct us_error **err);
/* timeout_s: grace period before SIGKILL (0 = kill at once). */
int cri_stop_container(struct cri_client *c, const char *container_id, int64_t timeout_s,
                       struct us_error **err);
int cri_remove_container(struct cri_client *c, const char *container_id, struct us_error **err);
/* filter NULL: all containers. */
int cri_list_containers(struct cri_client *c, const Runtime__V1__ContainerFilter *filter,
                        Runtime__V1__ListContainersResponse **ret, struct us_error **err);
/* On success (*ret)->status is non-NULL (a reply without one is -EBADMSG). */
int cri_container_status(struct cri_client *c, const char *container_id, bool verbose,
                         Runtime__V1__ContainerStatusResponse **ret, struct us_error **err);
int cri_update_container_resources(struct cri_client *c, const char *container_id,
                                   const Runtime__V1__LinuxContainerResources *res,
                                   struct us_error **err);
/* ExecSync of argv (NULL-terminated, non-empty) with timeout_s (0 = none;
 * the call's deadline is then the client's timeout). ret_stdout/ret_stderr may
 * be NULL; on success they are owned by the caller (cri_output_clear). */
int cri_exec_sync(struct cri_client *c, const char *container_id, const char *const *argv,
                  int64_t timeout_s, struct cri_output *ret_stdout, struct cri_output *ret_stderr,
                  int *ret_exit_code, struct us_error **err);
/* On success (*ret)->stats is non-NULL. */
int cri_container_stats(struct cri_client *c, const char *container_id,
                        Runtime__V1__ContainerStatsResponse **ret, struct us_error **err);

/* ---- ImageService ---- */

/* PullImage; sandbox_cfg may be NULL. ret_image_ref may be NULL; else free(). */
int cri_pull_image(struct cri_client *c, const char *image,
                   const Runtime__V1__PodSandboxConfig *sandbox_cfg, char **ret_image_ref,
                   struct us_error **err);
/* ImageStatus; (*ret)->image is NULL when the image is not present. */
int cri_image_status(struct cri_client *c, const char *image,
                     Runtime__V1__ImageStatusResponse **ret, struct us_error **err);

/* ---- helpers ---- */

/* 0 if id looks like a CRI object id (1..128 chars of [A-Za-z0-9_.-]), else
 * -EBADMSG with *err naming what. Replies are hostile; ids end up in paths. */
int cri_check_id(const char *what, const char *id, struct us_error **err);
