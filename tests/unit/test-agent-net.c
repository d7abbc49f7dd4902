/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's UpdateNetwork against real links, in a network namespace of
 * the test's own (a veth pair made there): finding the device by MAC,
 * renaming it, and giving a restored template's device the pod's MAC. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"
#include "guest-agent/agent.h"

#define POD_MAC      "02:42:0a:00:00:07"
#define TEMPLATE_MAC "02:75:6e:69:00:01"

static void read_line(const char *path, char *buf, size_t size)
{
        FILE *f = fopen(path, "re");
        buf[0] = '\0';
        if (f) {
                if (!fgets(buf, (int)size, f))
                        buf[0] = '\0';
                fclose(f);
        }
        buf[strcspn(buf, "\n")] = '\0';
}

/* What the child checks; its exit status tells the parent which failed. */
static int child(void)
{
        /* sysfs shows the links of the namespace that mounted it: a new one
         * here, as the guest has its own. */
        if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("sysfs", "/sys", "sysfs", 0, NULL) < 0)
                return 10;
        if (system("ip link add t0 address " TEMPLATE_MAC " type veth peer name t1") != 0)
                return 11;

        Unishim__Agent__V1__IPAddress a = UNISHIM__AGENT__V1__IPADDRESS__INIT;
        a.family = 4;
        a.address = "10.88.0.7";
        a.prefix_len = 24;
        Unishim__Agent__V1__IPAddress *ap[] = {&a};
        Unishim__Agent__V1__Interface itf = UNISHIM__AGENT__V1__INTERFACE__INIT;
        itf.name = "eth0";
        itf.mac = POD_MAC;
        itf.addresses = ap;
        itf.n_addresses = 1;
        Unishim__Agent__V1__Interface *ip[] = {&itf};
        Unishim__Agent__V1__UpdateNetworkRequest req =
                UNISHIM__AGENT__V1__UPDATE_NETWORK_REQUEST__INIT;
        req.interfaces = ip;
        req.n_interfaces = 1;
        struct us_error *err = NULL;

        /* No device has the pod's MAC and none was named otherwise. */
        if (agent_net_update(&req, &err) != -ENOENT || !strstr(us_error_text(err), "eth0"))
                return 20;
        err = us_error_free(err);

        /* A restored template: found by the template's MAC, given the pod's. */
        itf.device_mac = TEMPLATE_MAC;
        if (agent_net_update(&req, &err) < 0) {
                fprintf(stderr, "update: %s\n", us_error_text(err));
                return 30;
        }
        char buf[64];
        read_line("/sys/class/net/eth0/address", buf, sizeof(buf));
        if (strcmp(buf, POD_MAC) != 0)
                return 31;
        if (system("ip -4 -o addr show dev eth0 | grep -q '10.88.0.7/24'") != 0)
                return 32;
        if (system("ip -o link show dev eth0 | grep -q '<.*UP.*>'") != 0)
                return 33;

        /* Again (a retried call): the device has the pod's MAC already. */
        a.address = "10.88.0.8";
        if (agent_net_update(&req, &err) < 0) {
                fprintf(stderr, "again: %s\n", us_error_text(err));
                return 40;
        }
        read_line("/sys/class/net/eth0/address", buf, sizeof(buf));
        if (strcmp(buf, POD_MAC) != 0)
                return 41;

        /* Neither MAC on any device. */
        itf.mac = "02:00:00:00:00:99";
        itf.device_mac = "02:00:00:00:00:98";
        if (agent_net_update(&req, &err) != -ENOENT)
                return 50;
        us_error_free(err);
        return 0;
}

static void restored_device_gets_the_pods_mac(void **state)
{
        (void)state;
        if (geteuid() != 0)
                unit_skip("needs root (a network namespace and a veth pair)");
        if (system("command -v ip >/dev/null") != 0)
                unit_skip("needs ip (package iproute2)");
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(child());
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) != 0)
                fail_msg("check %d failed (see test-agent-net.c)", WEXITSTATUS(st));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(restored_device_gets_the_pods_mac),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
