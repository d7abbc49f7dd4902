/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Typed CRI v1 calls over cri/client-grpc.c. Each wrapper fills the request
 * on the stack (pointing at the caller's data: it is only packed), calls,
 * and checks the reply for what the caller will rely on.
 */
#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client-grpc.h"

#define RUNTIME_SERVICE "/runtime.v1.RuntimeService/"
#define IMAGE_SERVICE   "/runtime.v1.ImageService/"

struct cri_client {
        struct cri_grpc *grpc;
        int64_t timeout_ms;
};

int cri_client_new(const char *endpoint, struct cri_client **ret, struct us_error **err)
{
        _cleanup_free_ struct cri_client *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "CRI client");
        int r = cri_grpc_new(endpoint, &c->grpc, err);
        if (r < 0)
                return r;
        c->timeout_ms = CRI_DEFAULT_TIMEOUT_MS;
        *ret = TAKE_PTR(c);
        return 0;
}

struct cri_client *cri_client_free(struct cri_client *c)
{
        if (!c)
                return NULL;
        cri_grpc_free(c->grpc);
        free(c);
        return NULL;
}

void cri_client_set_timeout(struct cri_client *c, int64_t timeout_ms)
{
        if (timeout_ms > 0)
                c->timeout_ms = timeout_ms;
}

void cri_message_free(void *msg)
{
        if (msg)
                protobuf_c_message_free_unpacked(msg, NULL);
}

void cri_output_clear(struct cri_output *o)
{
        if (!o)
                return;
        free(o->data);
        o->data = NULL;
        o->len = 0;
}

int cri_check_id(const char *what, const char *id, struct us_error **err)
{
        size_t n = id ? strlen(id) : 0;
        if (n == 0)
                return us_error_msg(err, EBADMSG, "%s: empty id in reply", what);
        if (n > 128)
                return us_error_msg(err, EBADMSG, "%s: id of %zu characters in reply", what, n);
        for (size_t i = 0; i < n; i++) {
                char ch = id[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
                        return us_error_msg(err, EBADMSG, "%s: invalid character in id in reply",
                                            what);
        }
        return 0;
}

static int check_arg(const char *what, const char *s, struct us_error **err)
{
        if (!s || !*s)
                return us_error_msg(err, EINVAL, "%s: empty id", what);
        return 0;
}

/* The call itself: method is a string literal suffix of service. */
#define CALL(c, service, method, req, resp_desc, resp, timeout_ms, err)                            \
        cri_grpc_call((c)->grpc, service method, &(req)->base, resp_desc, timeout_ms,              \
                      (ProtobufCMessage **)(resp), err)

int cri_version(struct cri_client *c, Runtime__V1__VersionResponse **ret, struct us_error **err)
{
        Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
        req.version = (char *)"v1";
        Runtime__V1__VersionResponse *resp = NULL;
        int r = CALL(c, RUNTIME_SERVICE, "Version", &req,
                     &runtime__v1__version_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        *ret = resp;
        return 0;
}

int cri_run_pod_sandbox(struct cri_client *c, const Runtime__V1__PodSandboxConfig *cfg,
                        const char *runtime_handler, char **ret_id, struct us_error **err)
{
        if (!cfg || !cfg->metadata)
                return us_error_msg(err, EINVAL, "RunPodSandbox: no pod metadata");
        Runtime__V1__RunPodSandboxRequest req = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
        req.config = (Runtime__V1__PodSandboxConfig *)cfg;
        if (runtime_handler)
                req.runtime_handler = (char *)runtime_handler;
        _cleanup_cri_msg_ Runtime__V1__RunPodSandboxResponse *resp = NULL;
        int r = CALL(c, RUNTIME_SERVICE, "RunPodSandbox", &req,
                     &runtime__v1__run_pod_sandbox_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        r = cri_check_id("RunPodSandbox", resp->pod_sandbox_id, err);
        if (r < 0)
                return r;
        char *id = strdup(resp->pod_sandbox_id);
        if (!id)
                return us_errorf(err, ENOMEM, "RunPodSandbox");
        *ret_id = id;
        return 0;
}

/* The calls whose request is one id and whose reply is empty. */
static int call_id(struct cri_client *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
                   struct us_error **err)
{
        ProtobufCMessage *resp = NULL;
        int r = cri_grpc_call(c->grpc, method, req, resp_desc, timeout_ms, &resp, err);
        if (r < 0)
                return r;
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

int cri_stop_pod_sandbox(struct cri_client *c, const char *pod_id, struct us_error **err)
{
        int r = check_arg("StopPodSandbox", pod_id, err);
        if (r < 0)
                return r;
        Runtime__V1__StopPodSandboxRequest req = RUNTIME__V1__STOP_POD_SANDBOX_REQUEST__INIT;
        req.pod_sandbox_id = (char *)pod_id;
        return call_id(c, RUNTIME_SERVICE "StopPodSandbox", &req.base,
                       &runtime__v1__stop_pod_sandbox_response__descriptor, c->timeout_ms, err);
}

int cri_remove_pod_sandbox(struct cri_client *c, const char *pod_id, struct us_error **err)
{
        int r = check_arg("RemovePodSandbox", pod_id, err);
        if (r < 0)
                return r;
        Runtime__V1__RemovePodSandboxRequest req = RUNTIME__V1__REMOVE_POD_SANDBOX_REQUEST__INIT;
        req.pod_sandbox_id = (char *)pod_id;
        return call_id(c, RUNTIME_SERVICE "RemovePodSandbox", &req.base,
                       &runtime__v1__remove_pod_sandbox_response__descriptor, c->timeout_ms, err);
}

int cri_pod_sandbox_status(struct cri_client *c, const char *pod_id, bool verbose,
                           Runtime__V1__PodSandboxStatusResponse **ret, struct us_error **err)
{
        int r = check_arg("PodSandboxStatus", pod_id, err);
        if (r < 0)
                return r;
        Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
        req.pod_sandbox_id = (char *)pod_id;
        req.verbose = verbose;
        _cleanup_cri_msg_ Runtime__V1__PodSandboxStatusResponse *resp = NULL;
        r = CALL(c, RUNTIME_SERVICE, "PodSandboxStatus", &req,
                 &runtime__v1__pod_sandbox_status_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        if (!resp->status)
                return us_error_msg(err, EBADMSG, "PodSandboxStatus: reply without a status");
        *ret = TAKE_PTR(resp);
        return 0;
}

int cri_list_pod_sandbox(struct cri_client *c, const Runtime__V1__PodSandboxFilter *filter,
                         Runtime__V1__ListPodSandboxResponse **ret, struct us_error **err)
{
        Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
        req.filter = (Runtime__V1__PodSandboxFilter *)filter;
        Runtime__V1__ListPodSandboxResponse *resp = NULL;
        int r = CALL(c, RUNTIME_SERVICE, "ListPodSandbox", &req,
                     &runtime__v1__list_pod_sandbox_response__descriptor, &resp, c->timeout_ms,
                     err);
        if (r < 0)
                return r;
        *ret = resp;
        return 0;
}

int cri_create_container(struct cri_client *c, const char *pod_id,
                         const Runtime__V1__ContainerConfig *cfg,
                         const Runtime__V1__PodSandboxConfig *sandbox_cfg, char **ret_id,
                         struct us_error **err)
{
        int r = check_arg("CreateContainer", pod_id, err);
        if (r < 0)
                return r;
        if (!cfg || !cfg->metadata)
                return us_error_msg(err, EINVAL, "CreateContainer: no container metadata");
        Runtime__V1__CreateContainerRequest req = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
        req.pod_sandbox_id = (char *)pod_id;
        req.config = (Runtime__V1__ContainerConfig *)cfg;
        req.sandbox_config = (Runtime__V1__PodSandboxConfig *)sandbox_cfg;
        _cleanup_cri_msg_ Runtime__V1__CreateContainerResponse *resp = NULL;
        r = CALL(c, RUNTIME_SERVICE, "CreateContainer", &req,
                 &runtime__v1__create_container_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        r = cri_check_id("CreateContainer", resp->container_id, err);
        if (r < 0)
                return r;
        char *id = strdup(resp->container_id);
        if (!id)
                return us_errorf(err, ENOMEM, "CreateContainer");
        *ret_id = id;
        return 0;
}

int cri_start_container(struct cri_client *c, const char *container_id, struct us_error **err)
{
        int r = check_arg("StartContainer", container_id, err);
        if (r < 0)
                return r;
        Runtime__V1__StartContainerRequest req = RUNTIME__V1__START_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)container_id;
        return call_id(c, RUNTIME_SERVICE "StartContainer", &req.base,
                       &runtime__v1__start_container_response__descriptor, c->timeout_ms, err);
}

int cri_stop_container(struct cri_client *c, const char *container_id, int64_t timeout_s,
                       struct us_error **err)
{
        int r = check_arg("StopContainer", container_id, err);
        if (r < 0)
                return r;
        if (timeout_s < 0 || timeout_s > 24 * 3600)
                return us_error_msg(err, EINVAL, "StopContainer: timeout %lld out of range",
                                    (long long)timeout_s);
        Runtime__V1__StopContainerRequest req = RUNTIME__V1__STOP_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)container_id;
        req.timeout = timeout_s;
        return call_id(c, RUNTIME_SERVICE "StopContainer", &req.base,
                       &runtime__v1__stop_container_response__descriptor,
                       c->timeout_ms + timeout_s * 1000, err);
}

int cri_remove_container(struct cri_client *c, const char *container_id, struct us_error **err)
{
        int r = check_arg("RemoveContainer", container_id, err);
        if (r < 0)
                return r;
        Runtime__V1__RemoveContainerRequest req = RUNTIME__V1__REMOVE_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)container_id;
        return call_id(c, RUNTIME_SERVICE "RemoveContainer", &req.base,
                       &runtime__v1__remove_container_response__descriptor, c->timeout_ms, err);
}

int cri_list_containers(struct cri_client *c, const Runtime__V1__ContainerFilter *filter,
                        Runtime__V1__ListContainersResponse **ret, struct us_error **err)
{
        Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
        req.filter = (Runtime__V1__ContainerFilter *)filter;
        Runtime__V1__ListContainersResponse *resp = NULL;
        int r = CALL(c, RUNTIME_SERVICE, "ListContainers", &req,
                     &runtime__v1__list_containers_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        *ret = resp;
        return 0;
}

int cri_container_status(struct cri_client *c, const char *container_id, bool verbose,
                         Runtime__V1__ContainerStatusResponse **ret, struct us_error **err)
{
        int r = check_arg("ContainerStatus", container_id, err);
        if (r < 0)
                return r;
        Runtime__V1__ContainerStatusRequest req = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
        req.container_id = (char *)container_id;
        req.verbose = verbose;
        _cleanup_cri_msg_ Runtime__V1__ContainerStatusResponse *resp = NULL;
        r = CALL(c, RUNTIME_SERVICE, "ContainerStatus", &req,
                 &runtime__v1__container_status_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        if (!resp->status)
                return us_error_msg(err, EBADMSG, "ContainerStatus: reply without a status");
        *ret = TAKE_PTR(resp);
        return 0;
}

int cri_update_container_resources(struct cri_client *c, const char *container_id,
                                   const Runtime__V1__LinuxContainerResources *res,
                                   struct us_error **err)
{
        int r = check_arg("UpdateContainerResources", container_id, err);
        if (r < 0)
                return r;
        Runtime__V1__UpdateContainerResourcesRequest req =
                RUNTIME__V1__UPDATE_CONTAINER_RESOURCES_REQUEST__INIT;
        req.container_id = (char *)container_id;
        req.linux_ = (Runtime__V1__LinuxContainerResources *)res;
        return call_id(c, RUNTIME_SERVICE "UpdateContainerResources", &req.base,
                       &runtime__v1__update_container_resources_response__descriptor, c->timeout_ms,
                       err);
}

static int output_copy(const ProtobufCBinaryData *b, struct cri_output *o, struct us_error **err)
{
        char *d = malloc(b->len + 1);
        if (!d)
                return us_errorf(err, ENOMEM, "ExecSync output");
        if (b->len)
                memcpy(d, b->data, b->len);
        d[b->len] = '\0';
        o->data = d;
        o->len = b->len;
        return 0;
}

int cri_exec_sync(struct cri_client *c, const char *container_id, const char *const *argv,
                  int64_t timeout_s, struct cri_output *ret_stdout, struct cri_output *ret_stderr,
                  int *ret_exit_code, struct us_error **err)
{
        int r = check_arg("ExecSync", container_id, err);
        if (r < 0)
                return r;
        size_t argc = 0;
        while (argv && argv[argc])
                argc++;
        if (argc == 0)
                return us_error_msg(err, EINVAL, "ExecSync: empty command");
        if (timeout_s < 0 || timeout_s > 24 * 3600)
                return us_error_msg(err, EINVAL, "ExecSync: timeout %lld out of range",
                                    (long long)timeout_s);

        Runtime__V1__ExecSyncRequest req = RUNTIME__V1__EXEC_SYNC_REQUEST__INIT;
        req.container_id = (char *)container_id;
        req.n_cmd = argc;
        req.cmd = (char **)argv;
        req.timeout = timeout_s;
        /* The runtime enforces timeout_s; our deadline only has to outlast it. */
        int64_t deadline_ms = timeout_s > 0 ? timeout_s * 1000 + 30000 : c->timeout_ms;
        _cleanup_cri_msg_ Runtime__V1__ExecSyncResponse *resp = NULL;
        r = CALL(c, RUNTIME_SERVICE, "ExecSync", &req, &runtime__v1__exec_sync_response__descriptor,
                 &resp, deadline_ms, err);
        if (r < 0)
                return r;

        struct cri_output out = {0}, errout = {0};
        if (ret_stdout) {
                r = output_copy(&resp->stdout, &out, err);
                if (r < 0)
                        return r;
        }
        if (ret_stderr) {
                r = output_copy(&resp->stderr, &errout, err);
                if (r < 0) {
                        cri_output_clear(&out);
                        return r;
                }
        }
        if (ret_stdout)
                *ret_stdout = out;
        if (ret_stderr)
                *ret_stderr = errout;
        if (ret_exit_code)
                *ret_exit_code = resp->exit_code;
        return 0;
}

int cri_container_stats(struct cri_client *c, const char *container_id,
                        Runtime__V1__ContainerStatsResponse **ret, struct us_error **err)
{
        int r = check_arg("ContainerStats", container_id, err);
        if (r < 0)
                return r;
        Runtime__V1__ContainerStatsRequest req = RUNTIME__V1__CONTAINER_STATS_REQUEST__INIT;
        req.container_id = (char *)container_id;
        _cleanup_cri_msg_ Runtime__V1__ContainerStatsResponse *resp = NULL;
        r = CALL(c, RUNTIME_SERVICE, "ContainerStats", &req,
                 &runtime__v1__container_stats_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        if (!resp->stats)
                return us_error_msg(err, EBADMSG, "ContainerStats: reply without stats");
        *ret = TAKE_PTR(resp);
        return 0;
}

int cri_pull_image(struct cri_client *c, const char *image,
                   const Runtime__V1__PodSandboxConfig *sandbox_cfg, char **ret_image_ref,
                   struct us_error **err)
{
        int r = check_arg("PullImage", image, err);
        if (r < 0)
                return r;
        Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
        spec.image = (char *)image;
        Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
        req.image = &spec;
        req.sandbox_config = (Runtime__V1__PodSandboxConfig *)sandbox_cfg;
        _cleanup_cri_msg_ Runtime__V1__PullImageResponse *resp = NULL;
        r = CALL(c, IMAGE_SERVICE, "PullImage", &req, &runtime__v1__pull_image_response__descriptor,
                 &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        if (ret_image_ref) {
                char *ref = strdup(resp->image_ref);
                if (!ref)
                        return us_errorf(err, ENOMEM, "PullImage");
                *ret_image_ref = ref;
        }
        return 0;
}

int cri_image_status(struct cri_client *c, const char *image,
                     Runtime__V1__ImageStatusResponse **ret, struct us_error **err)
{
        int r = check_arg("ImageStatus", image, err);
        if (r < 0)
                return r;
        Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
        spec.image = (char *)image;
        Runtime__V1__ImageStatusRequest req = RUNTIME__V1__IMAGE_STATUS_REQUEST__INIT;
        req.image = &spec;
        Runtime__V1__ImageStatusResponse *resp = NULL;
        r = CALL(c, IMAGE_SERVICE, "ImageStatus", &req,
                 &runtime__v1__image_status_response__descriptor, &resp, c->timeout_ms, err);
        if (r < 0)
                return r;
        *ret = resp;
        return 0;
}
