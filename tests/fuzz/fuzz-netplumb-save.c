/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arbitrary bytes as iptables-save output, through the parser netplumb uses to
 * find (and delete) exactly its own chains and jumps in a pod netns.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netplumb/netplumb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* The parser refuses more than NETPLUMB_SAVE_MAX up front. */
        if (size > NETPLUMB_SAVE_MAX)
                return 0;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        char *script = NULL;
        struct us_error *err = NULL;
        if (netplumb_nat_removal_script(text, &script, &err) == 0 && script) {
                /* Every line of the script is one of the forms we emit. */
                for (char *line = script; *line;) {
                        if (line[0] != '*' && line[0] != ':' && strncmp(line, "-D ", 3) != 0 &&
                            strncmp(line, "-X " NETPLUMB_CHAIN_PREFIX,
                                    3 + strlen(NETPLUMB_CHAIN_PREFIX)) != 0 &&
                            strncmp(line, "COMMIT", 6) != 0)
                                abort();
                        char *nl = strchr(line, '\n');
                        if (!nl)
                                abort(); /* every emitted line ends in a newline */
                        line = nl + 1;
                }
        }
        free(script);
        us_error_free(err);
        free(text);
        return 0;
}
