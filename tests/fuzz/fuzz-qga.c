/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arbitrary bytes as what a guest's qemu-ga sends: the first byte picks what
 * the reply is taken to answer (sync, ping, guest-exec, guest-exec-status),
 * the rest goes through the reply parser whole, then line by line the way
 * the client splits it; error text through the sanitiser.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "vmm/qga.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const char *p, size_t len, enum vmm_qga_expect expect)
{
        struct vmm_qga_reply *r = NULL;
        struct us_error *err = NULL;

        if (vmm_qga_reply_parse(p, len, expect, &r, &err) == 0) {
                if (r->exited &&
                    (r->res.out_len > VMM_QGA_MAX_OUTPUT || r->res.err_len > VMM_QGA_MAX_OUTPUT))
                        abort();
                if (r->is_error && (!r->error_class || !r->error_desc ||
                                    strlen(r->error_desc) > VMM_QGA_MAX_DESC + 3))
                        abort();
                vmm_qga_reply_free(r);
        }
        us_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* The client holds at most one maximal line. */
        if (size < 1 || size > VMM_QGA_MAX_REPLY + 1)
                return 0;
        enum vmm_qga_expect expect = (enum vmm_qga_expect)(data[0] % 4);
        const char *p = (const char *)data + 1;
        size--;
        one(p, size, expect);
        free(vmm_qga_sanitize(p, size, 64));
        while (size > 0) {
                const char *nl = memchr(p, '\n', size);
                size_t len = nl ? (size_t)(nl - p) : size;
                one(p, len, expect);
                if (!nl)
                        break;
                size -= len + 1;
                p += len + 1;
        }
        return 0;
}
