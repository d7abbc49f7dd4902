/* SPDX-License-Identifier: Apache-2.0 */
/* The shim's decoding of the guest agent's long-poll replies. */
#include <stdint.h>
#include <stdlib.h>

#include "shim/sandbox/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > (1u << 20))
                return 0;
        uint8_t *out = NULL;
        size_t n = 0;
        bool eof;
        uint32_t status;
        if (sandbox_reply_read_stream(data, size, 65536, &out, &n, &eof, NULL) == 0) {
                if (n > 65536)
                        abort();
                free(out);
        }
        if (sandbox_reply_wait(data, size, &status, NULL) == 0 && status > 192)
                abort();
        (void)sandbox_reply_write_stdin(data, size, 100, NULL);
        return 0;
}
