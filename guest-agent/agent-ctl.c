/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unishim-agent-ctl: a tiny Agent client for tests and debugging, over the
 * host side of the agent port (a unix socket QEMU serves).
 *   unishim-agent-ctl SOCKET check      -> prints "version kernel_release"
 *   unishim-agent-ctl SOCKET shutdown
 *   unishim-agent-ctl SOCKET restore    -> Restore with host entropy and
 *                                          clock; prints "boot_id=<id>"
 * Waits up to --wait-ms (default 30000) for the socket to accept and the
 * agent to answer Check (the VM may still be booting). SOCKET "fd:N": the
 * connection inherited as fd N, one call, no retry (as the shim calls a
 * clone's agent: tests/tools/vmm-boot --ports-first).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.pb-c.h"
#include "base/cleanup.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"

/* A try's deadline: short when a lost request can be sent again on a new
 * connection, the whole wait on an inherited one. */
static int per_try(int tmo, int inherited)
{
        return inherited >= 0 || tmo < 2000 ? tmo : 2000;
}

int main(int argc, char **argv)
{
        long wait_ms = 30000;
        if (argc >= 5 && !strcmp(argv[1], "--wait-ms")) {
                wait_ms = strtol(argv[2], NULL, 10);
                argv += 2;
                argc -= 2;
        }
        if (argc != 3 || (strcmp(argv[2], "check") != 0 && strcmp(argv[2], "shutdown") != 0 &&
                          strcmp(argv[2], "restore") != 0)) {
                fprintf(stderr, "usage: %s [--wait-ms N] SOCKET check|shutdown|restore\n", argv[0]);
                return 2;
        }
        const char *sock = argv[1];
        int inherited = -1;
        if (!strncmp(sock, "fd:", 3)) {
                char *end = NULL;
                long v = strtol(sock + 3, &end, 10);
                if (end == sock + 3 || *end || v < 3 || v > 65535) {
                        fprintf(stderr, "%s: not a file descriptor\n", sock);
                        return 2;
                }
                inherited = (int)v;
        }
        int64_t deadline = us_monotonic_ms() + wait_ms;
        struct us_error *err = NULL;
        for (;;) {
                struct us_ttrpc_client *c = NULL;
                int r = inherited >= 0 ? us_ttrpc_client_from_fd(inherited, &c, &err)
                                       : us_ttrpc_client_connect(sock, &c, &err);
                if (r >= 0) {
                        uint8_t *out = NULL;
                        size_t len = 0;
                        int tmo = (int)(deadline - us_monotonic_ms());
                        if (tmo < 100)
                                tmo = 100;
                        if (!strcmp(argv[2], "check")) {
                                Unishim__Agent__V1__CheckRequest req =
                                        UNISHIM__AGENT__V1__CHECK_REQUEST__INIT;
                                /* Short per-try timeout: a request sent before the
                                 * guest opened its port is lost. */
                                r = us_ttrpc_client_call(c, "unishim.agent.v1.Agent", "Check",
                                                         &req.base, NULL, 0,
                                                         per_try(tmo, inherited), &out, &len, &err);
                                if (r >= 0) {
                                        Unishim__Agent__V1__CheckResponse *resp =
                                                unishim__agent__v1__check_response__unpack(
                                                        NULL, len, out);
                                        free(out);
                                        us_ttrpc_client_free(c);
                                        if (!resp) {
                                                fprintf(stderr, "malformed CheckResponse\n");
                                                return 1;
                                        }
                                        printf("%s %s\n", resp->version, resp->kernel_release);
                                        unishim__agent__v1__check_response__free_unpacked(resp,
                                                                                          NULL);
                                        return 0;
                                }
                        } else if (!strcmp(argv[2], "restore")) {
                                uint8_t entropy[64];
                                struct timespec now;
                                if (getrandom(entropy, sizeof(entropy), 0) != sizeof(entropy) ||
                                    clock_gettime(CLOCK_REALTIME, &now) < 0) {
                                        perror("restore");
                                        return 1;
                                }
                                Unishim__Agent__V1__RestoreRequest req =
                                        UNISHIM__AGENT__V1__RESTORE_REQUEST__INIT;
                                req.entropy.data = entropy;
                                req.entropy.len = sizeof(entropy);
                                req.realtime_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
                                r = us_ttrpc_client_call(c, "unishim.agent.v1.Agent", "Restore",
                                                         &req.base, NULL, 0,
                                                         per_try(tmo, inherited), &out, &len, &err);
                                if (r >= 0) {
                                        Unishim__Agent__V1__RestoreResponse *resp =
                                                unishim__agent__v1__restore_response__unpack(
                                                        NULL, len, out);
                                        free(out);
                                        us_ttrpc_client_free(c);
                                        if (!resp) {
                                                fprintf(stderr, "malformed RestoreResponse\n");
                                                return 1;
                                        }
                                        printf("boot_id=%s\n", resp->boot_id);
                                        unishim__agent__v1__restore_response__free_unpacked(resp,
                                                                                            NULL);
                                        return 0;
                                }
                        } else {
                                Unishim__Agent__V1__Empty req = UNISHIM__AGENT__V1__EMPTY__INIT;
                                r = us_ttrpc_client_call(c, "unishim.agent.v1.Agent", "Shutdown",
                                                         &req.base, NULL, 0, tmo, &out, &len, &err);
                                free(out);
                                us_ttrpc_client_free(c);
                                if (r < 0) {
                                        fprintf(stderr, "shutdown: %s\n", us_error_text(err));
                                        return 1;
                                }
                                return 0;
                        }
                        us_ttrpc_client_free(c);
                }
                if (us_monotonic_ms() > deadline || inherited >= 0) {
                        fprintf(stderr, "%s: %s\n", argv[2], us_error_text(err));
                        us_error_free(err);
                        return 1;
                }
                err = us_error_free(err);
                usleep(50000);
        }
}
