/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The short JSON description of a pod that unishimctl runs, turned into the
 * CRI messages kubelet would send (docs/unishimctl.md has the format):
 *
 *   {"name": "web", "namespace": "default", "runtime_handler": "unishim",
 *    "annotations": {"unishim.io/isolation": "sandbox"},
 *    "containers": [{"name": "app", "image": "docker.io/unishim/test:latest",
 *                    "command": ["sleep", "3600"]}]}
 *
 * The input is hostile: size, counts, lengths and nesting are limited, unknown
 * keys are refused (typos should not pass silently), and every error names
 * the JSON path ("containers[1].resources.cpu_quota: out of range ...").
 */

#include <stddef.h>

#include "base/cleanup.h"
#include "cri/api.pb-c.h"
#include "base/error.h"

#define CRI_POD_SPEC_MAX_SIZE       (1u << 20) /* bytes of JSON */
#define CRI_POD_SPEC_MAX_CONTAINERS 64
#define CRI_POD_SPEC_MAX_MAP        256  /* annotations, labels, env entries */
#define CRI_POD_SPEC_MAX_ARGV       4096 /* command + args elements */
#define CRI_POD_SPEC_MAX_MOUNTS     256
#define CRI_POD_SPEC_MAX_VALUE      (64u * 1024) /* one annotation/label/env value */

#define CRI_DEFAULT_RUNTIME_HANDLER "unishim"
#define CRI_DEFAULT_NAMESPACE       "default"

struct cri_pod_spec {
        /* What RunPodSandbox and CreateContainer get; owned (protobuf-c
         * messages built with malloc: protobuf_c_message_free_unpacked). */
        Runtime__V1__PodSandboxConfig *sandbox;
        char *runtime_handler; /* never NULL */
        size_t n_containers;   /* >= 1 */
        Runtime__V1__ContainerConfig **containers;
};

/* Parses len bytes of json. A missing uid gets a random UUID; a missing
 * log_directory becomes /var/log/pods/<namespace>_<name>_<uid>; a missing
 * hostname is the pod name. Each container logs to <log_directory>/<name>/0.log
 * as kubelet arranges it. *ret: cri_pod_spec_free(). */
int cri_pod_spec_parse(const char *json, size_t len, struct cri_pod_spec **ret,
                       struct us_error **err);

/* Reads path (at most CRI_POD_SPEC_MAX_SIZE bytes; "-" is stdin) and parses
 * it; errors are prefixed with the path. */
int cri_pod_spec_load(const char *path, struct cri_pod_spec **ret, struct us_error **err);

/* Accepts NULL; returns NULL. */
struct cri_pod_spec *cri_pod_spec_free(struct cri_pod_spec *spec);
DEFINE_CLEANUP(struct cri_pod_spec *, cri_pod_spec_free)
