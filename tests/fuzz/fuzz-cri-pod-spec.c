/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for unishimctl's pod description parser (cri/pod-spec.c):
 * the bytes as a pod JSON. Seeds: corpus/fuzz-cri-pod-spec/.
 */
#include <stddef.h>
#include <stdint.h>

#include "cri/pod-spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* The parser refuses more than CRI_POD_SPEC_MAX_SIZE itself (unit
         * test); the fuzzer explores the structure just past that limit. */
        if (size > CRI_POD_SPEC_MAX_SIZE + 16)
                return 0;

        struct us_error *err = NULL;
        struct cri_pod_spec *spec = NULL;
        if (cri_pod_spec_parse((const char *)data, size, &spec, &err) == 0) {
                /* What unishimctl reads of a parsed spec. */
                size_t n = 0;
                for (size_t i = 0; i < spec->n_containers; i++)
                        n += spec->containers[i]->n_command + spec->containers[i]->n_args;
                (void)n;
        }
        spec = cri_pod_spec_free(spec);
        err = us_error_free(err);
        return 0;
}
