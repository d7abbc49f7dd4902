/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arbitrary bytes as what QEMU's QMP monitor sends: the whole input as one
 * message, then split into lines the way the client reads them, each through
 * the reply parser and (for errors) the error translation.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/error.h"
#include "vmm/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const char *p, size_t len)
{
        struct vmm_qmp_msg *m = NULL;
        struct us_error *err = NULL;

        if (vmm_qmp_msg_parse(p, len, &m, &err) == 0) {
                if (m->kind == VMM_QMP_MSG_ERROR)
                        (void)vmm_qmp_msg_to_error(m, "fuzz", &err);
                vmm_qmp_msg_free(m);
        }
        us_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* The client never holds more than one maximal line plus a few. */
        if (size > 2 * VMM_QMP_MAX_LINE)
                return 0;
        const char *p = (const char *)data;
        one(p, size);
        while (size > 0) {
                const char *nl = memchr(p, '\n', size);
                size_t len = nl ? (size_t)(nl - p) : size;
                one(p, len);
                if (!nl)
                        break;
                size -= len + 1;
                p += len + 1;
        }
        return 0;
}
