/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's request decoder: first byte picks the method, the rest is the
 * payload, as the ttrpc server hands it to a handler. */
#include <stddef.h>
#include <stdint.h>

#include "guest-agent/agent.h"

static const char *const methods[] = {
        "Check",           "AddStorage",     "UpdateNetwork",   "CreateContainer", "StartContainer",
        "RemoveContainer", "PauseContainer", "ResumeContainer", "UpdateContainer", "StatsContainer",
        "ListPids",        "ExecProcess",    "SignalProcess",   "WaitProcess",     "ReadStream",
        "WriteStdin",      "CloseStdin",     "ResizePty",       "GetOOMEvent",     "Shutdown",
        "Restore",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > (1u << 20))
                return 0;
        const char *m = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
        struct us_error *err = NULL;
        (void)agent_request_check(m, data + 1, size - 1, &err);
        us_error_free(err);
        return 0;
}
