/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the OCI spec parsers: the same bytes as a config.json,
 * an exec Process and an update LinuxResources. Seeds: corpus/fuzz-oci-spec/.
 */
#include <stddef.h>
#include <stdint.h>

#include "oci/oci-spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* The parser's own limit is 16 MiB; the fuzzer explores the
         * structure, not the size check (covered by the unit test). */
        if (size > (1u << 20))
                return 0;

        const char *json = (const char *)data;
        struct us_error *err = NULL;

        struct us_oci_spec *spec = NULL;
        if (us_oci_spec_parse(json, size, &spec, &err) == 0)
                (void)us_oci_spec_annotation(spec, "io.kubernetes.cri.sandbox-id");
        spec = us_oci_spec_free(spec);
        err = us_error_free(err);

        struct us_oci_process *proc = NULL;
        (void)us_oci_process_parse(json, size, &proc, &err);
        proc = us_oci_process_free(proc);
        err = us_error_free(err);

        struct us_oci_resources *res = NULL;
        (void)us_oci_resources_parse(json, size, &res, &err);
        res = us_oci_resources_free(res);
        err = us_error_free(err);
        return 0;
}
