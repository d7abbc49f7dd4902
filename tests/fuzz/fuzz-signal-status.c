/* SPDX-License-Identifier: Apache-2.0 */
/* The reading of /proc/PID/status (NSpid, SigBlk, SigIgn, SigCgt) before a
 * signal to a container's init: the kernel writes it, but a process names
 * itself in it. */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/signal-hold.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > (1u << 20))
                return 0;
        struct us_signal_status st;
        struct us_error *err = NULL;
        if (us_signal_status_parse((const char *)data, size, &st, &err) >= 0)
                (void)us_signal_would_drop(&st, SIGTERM);
        us_error_free(err);
        return 0;
}
