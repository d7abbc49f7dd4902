/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod netns's netfilter rules for a wired VM, through iptables-restore /
 * iptables-save (iptables-nft on Debian; the same tool and tables a mesh's
 * own rules use, so the two coexist in one ruleset and order predictably).
 * Exec'd with an argv in the netns, never through a shell.
 *
 * Everything netplumb adds is either in a chain named UNISHIM-* or a jump to
 * one carrying the comment "unishim", appended (never inserted) after what the
 * mesh put into the built-in chains at CNI ADD.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "netplumb.h"
#include "base/text.h"

static const struct netplumb_port_range default_excludes[] = {
        {15000,
         15100}, /* Istio sidecar: 15001/15006 capture, 15008 HBONE, 15020/15021 probes, 15090 */
        {4140, 4140}, /* Linkerd proxy outbound */
        {4143, 4143}, /* Linkerd proxy inbound */
        {4190, 4191}, /* Linkerd admin / probes */
};

static const char *find_tool(int family, bool save)
{
        static const char *const v4[][2] = {
                {"/usr/sbin/iptables-restore", "/usr/sbin/iptables-save"},
                {"/sbin/iptables-restore", "/sbin/iptables-save"},
        };
        static const char *const v6[][2] = {
                {"/usr/sbin/ip6tables-restore", "/usr/sbin/ip6tables-save"},
                {"/sbin/ip6tables-restore", "/sbin/ip6tables-save"},
        };
        const char *const(*t)[2] = family == AF_INET6 ? v6 : v4;
        for (size_t i = 0; i < 2; i++)
                if (access(t[i][save ? 1 : 0], X_OK) == 0)
                        return t[i][save ? 1 : 0];
        return NULL;
}

static int run_tool(int netns_fd, int family, bool save, const char *input, char **ret_out,
                    struct us_error **err)
{
        const char *tool = find_tool(family, save);
        if (!tool)
                return us_error_msg(err, ENOENT, "%s not found (install iptables)",
                                    family == AF_INET6 ? "ip6tables" : "iptables");
        char *argv_restore[] = {(char *)tool, "-w", "5", "--noflush", NULL};
        char *argv_save[] = {(char *)tool, NULL};
        return netplumb_netns_exec(netns_fd, save ? argv_save : argv_restore, input, ret_out, err);
}

static const char *const nat_chains[] = {"PRE", "OUT", "POST"};
static const char *const nat_hooks[] = {"PREROUTING", "OUTPUT", "POSTROUTING"};

int netplumb_nat_install(int netns_fd, int family, const uint8_t pod_ip[16],
                         const struct netplumb_vm_opts *opts, struct us_error **err)
{
        bool v6 = family == AF_INET6;
        char pod[INET6_ADDRSTRLEN];
        if (!inet_ntop(family, pod_ip, pod, sizeof(pod)))
                return us_errorf(err, errno, "format pod address");
        const char *guest = v6 ? NETPLUMB_GUEST_IPV6 : NETPLUMB_GUEST_IPV4;
        const char *tap = v6 ? NETPLUMB_TAP_IPV6 : NETPLUMB_TAP_IPV4;
        const char *host = v6 ? "/128" : "/32";
        /* The proxy's local source for inbound connections it passes on:
         * Istio binds 127.0.0.6 (v4) and ::6 (v6). IPv4 loopback sources can
         * leave through the tap thanks to route_localnet; v6 ::1 never can. */
        const char *proxy_src = v6 ? "::6/128" : "127.0.0.0/8";

        const struct netplumb_port_range *ex = default_excludes;
        size_t n_ex = US_ELEMENTSOF(default_excludes);
        if (opts && !opts->use_default_excludes) {
                ex = opts->excluded;
                n_ex = opts->n_excluded;
        }
        if (n_ex > NETPLUMB_MAX_EXCLUDED || (n_ex > 0 && !ex))
                return us_error_msg(err, EINVAL, "at most %d excluded port ranges",
                                    NETPLUMB_MAX_EXCLUDED);

        struct us_text t = {0};
        us_text_add(&t, "*nat\n");
        for (size_t i = 0; i < US_ELEMENTSOF(nat_chains); i++)
                us_text_add(&t, ":" NETPLUMB_CHAIN_PREFIX "%s - [0:0]\n", nat_chains[i]);
        /* Appended: a mesh's PREROUTING -> ISTIO_INBOUND and OUTPUT ->
         * ISTIO_OUTPUT jumps (installed at CNI ADD) keep running first. */
        for (size_t i = 0; i < US_ELEMENTSOF(nat_chains); i++)
                us_text_add(&t,
                            "-A %s -m comment --comment " NETPLUMB_RULE_COMMENT
                            " -j " NETPLUMB_CHAIN_PREFIX "%s\n",
                            nat_hooks[i], nat_chains[i]);
        /* Inbound (from eth0, and locally from the proxy in OUTPUT): the pod
         * IP means the guest, except the ports the pod netns keeps. */
        for (size_t c = 0; c < 2; c++) {
                const char *chain = c == 0 ? "PRE" : "OUT";
                if (c == 0)
                        us_text_add(&t, "-A " NETPLUMB_CHAIN_PREFIX "PRE -i " NETPLUMB_TAP_NAME
                                        " -j RETURN\n");
                for (size_t i = 0; i < n_ex; i++) {
                        if (ex[i].first > ex[i].last || ex[i].first == 0) {
                                free(t.s);
                                return us_error_msg(err, EINVAL,
                                                    "invalid excluded port range %u-%u",
                                                    ex[i].first, ex[i].last);
                        }
                        us_text_add(&t,
                                    "-A " NETPLUMB_CHAIN_PREFIX
                                    "%s -d %s%s -p tcp --dport %u:%u -j RETURN\n",
                                    chain, pod, host, ex[i].first, ex[i].last);
                }
                us_text_add(&t,
                            "-A " NETPLUMB_CHAIN_PREFIX "%s -d %s%s -j DNAT --to-destination %s\n",
                            chain, pod, host, guest);
        }
        /* The CRI's port forwarding (containerd dials localhost:PORT inside
         * the pod netns; kubectl port-forward) reaches the app in the guest:
         * TCP to the pod netns's own loopback address means the guest too,
         * except the ports the pod netns keeps (a sidecar's admin and
         * probe ports, which its agent dials over localhost). Only locally
         * made connections (OUTPUT): nothing that arrives from the guest or
         * eth0 is sent to loopback. IPv4 only: a ::1 source can never
         * leave through the tap (no route_localnet for IPv6), and the
         * CRI dials 127.0.0.1 first. */
        if (!v6) {
                for (size_t i = 0; i < n_ex; i++)
                        us_text_add(&t,
                                    "-A " NETPLUMB_CHAIN_PREFIX
                                    "OUT -d 127.0.0.1/32 -p tcp --dport %u:%u -j RETURN\n",
                                    ex[i].first, ex[i].last);
                us_text_add(&t,
                            "-A " NETPLUMB_CHAIN_PREFIX
                            "OUT -d 127.0.0.1/32 -p tcp -j DNAT --to-destination %s\n",
                            guest);
        }
        /* The proxy's connections to the guest come from loopback: make them
         * answerable by the guest. */
        us_text_add(&t,
                    "-A " NETPLUMB_CHAIN_PREFIX "POST -o " NETPLUMB_TAP_NAME
                    " -s %s -j SNAT --to-source %s\n",
                    proxy_src, tap);
        /* Outbound: the guest is the pod IP to everyone else. */
        us_text_add(&t,
                    "-A " NETPLUMB_CHAIN_PREFIX "POST -s %s%s ! -o " NETPLUMB_TAP_NAME
                    " -j SNAT --to-source %s\n",
                    guest, host, pod);
        us_text_add(&t, "COMMIT\n");
        /* Forwarding between the tap and the pod's interface, whatever the
         * FORWARD policy (non-TCP like DNS over UDP is forwarded, not proxied). */
        us_text_add(&t, "*filter\n:" NETPLUMB_CHAIN_PREFIX "FWD - [0:0]\n");
        us_text_add(&t, "-A FORWARD -m comment --comment " NETPLUMB_RULE_COMMENT
                        " -j " NETPLUMB_CHAIN_PREFIX "FWD\n");
        us_text_add(&t, "-A " NETPLUMB_CHAIN_PREFIX "FWD -i " NETPLUMB_TAP_NAME " -j ACCEPT\n");
        us_text_add(&t, "-A " NETPLUMB_CHAIN_PREFIX "FWD -o " NETPLUMB_TAP_NAME " -j ACCEPT\n");
        us_text_add(&t, "COMMIT\n");
        /* route_localnet on the tap (what lets the proxy's and the CRI's
         * loopback-sourced connections reach the guest) would also let the
         * guest's own packets to or from 127.0.0.0/8 in, to whatever the pod
         * netns keeps on loopback (a sidecar's admin port). The raw table
         * sees a packet as the guest sent it, before conntrack undoes our
         * SNAT on the replies (their destination becomes 127.x only then).
         * (A loopback source from the guest is refused by the pod netns
         * already; test-netplumb checks both.) */
        if (!v6) {
                us_text_add(&t, "*raw\n:" NETPLUMB_CHAIN_PREFIX "RAW - [0:0]\n");
                us_text_add(&t, "-A PREROUTING -m comment --comment " NETPLUMB_RULE_COMMENT
                                " -j " NETPLUMB_CHAIN_PREFIX "RAW\n");
                us_text_add(&t, "-A " NETPLUMB_CHAIN_PREFIX "RAW -i " NETPLUMB_TAP_NAME
                                " -d 127.0.0.0/8 -j DROP\n");
                us_text_add(&t, "COMMIT\n");
        }
        _cleanup_free_ char *rules = t.s;
        if (t.oom)
                return us_error_msg(err, ENOMEM, "build netfilter rules");
        int r = run_tool(netns_fd, family, false, rules, NULL, err);
        if (r < 0)
                return us_error_wrap(err, r, "install %s nat rules", v6 ? "IPv6" : "IPv4");
        return 0;
}

static bool is_ours_chain(const char *name, size_t len)
{
        size_t pl = strlen(NETPLUMB_CHAIN_PREFIX);
        return len > pl && strncmp(name, NETPLUMB_CHAIN_PREFIX, pl) == 0;
}

/* Turns iptables-save output into a restore script deleting what is ours:
 * per table, declare (= flush) our chains, delete the jumps to them, delete
 * the chains. Lines are bounded by the save output we read (4 MiB). */
static int build_removal(char *saved, struct us_text *t, bool *ret_any)
{
        char *table = NULL;
        struct us_text chains = {0}, jumps = {0};
        bool any = false;
        for (char *save_ptr = NULL, *line = strtok_r(saved, "\n", &save_ptr); line;
             line = strtok_r(NULL, "\n", &save_ptr)) {
                if (line[0] == '*') {
                        table = line + 1;
                        us_text_reset(&chains);
                        us_text_reset(&jumps);
                        continue;
                }
                if (!table)
                        continue;
                if (line[0] == ':') {
                        size_t n = strcspn(line + 1, " ");
                        if (is_ours_chain(line + 1, n))
                                us_text_add(&chains, "%.*s\n", (int)n, line + 1);
                } else if (strncmp(line, "-A ", 3) == 0) {
                        size_t n = strcspn(line + 3, " ");
                        const char *j = strstr(line, " -j " NETPLUMB_CHAIN_PREFIX);
                        if (!is_ours_chain(line + 3, n) && j &&
                            strstr(line, "--comment " NETPLUMB_RULE_COMMENT))
                                us_text_add(&jumps, "-D %s\n", line + 3);
                } else if (strcmp(line, "COMMIT") == 0) {
                        if (chains.len > 0 || jumps.len > 0) {
                                any = true;
                                us_text_add(t, "*%s\n", table);
                                for (const char *c = chains.s; c && *c;) {
                                        size_t n = strcspn(c, "\n");
                                        us_text_add(t, ":%.*s - [0:0]\n", (int)n, c);
                                        c += n + (c[n] ? 1 : 0);
                                }
                                if (jumps.s)
                                        us_text_add(t, "%s", jumps.s);
                                for (const char *c = chains.s; c && *c;) {
                                        size_t n = strcspn(c, "\n");
                                        us_text_add(t, "-X %.*s\n", (int)n, c);
                                        c += n + (c[n] ? 1 : 0);
                                }
                                us_text_add(t, "COMMIT\n");
                        }
                        table = NULL;
                        us_text_reset(&chains);
                        us_text_reset(&jumps);
                }
        }
        bool oom = chains.oom || jumps.oom || t->oom;
        free(chains.s);
        free(jumps.s);
        if (oom)
                return -ENOMEM;
        *ret_any = any;
        return 0;
}

int netplumb_nat_removal_script(const char *saved, char **ret_script, struct us_error **err)
{
        if (!saved)
                return us_error_msg(err, EINVAL, "no iptables-save output");
        if (strlen(saved) > NETPLUMB_SAVE_MAX)
                return us_error_msg(err, E2BIG, "iptables-save output larger than %u bytes",
                                    NETPLUMB_SAVE_MAX);
        _cleanup_free_ char *copy = strdup(saved);
        if (!copy)
                return us_error_msg(err, ENOMEM, "copy iptables-save output");
        struct us_text t = {0};
        bool any = false;
        int r = build_removal(copy, &t, &any);
        _cleanup_free_ char *script = t.s;
        if (r < 0)
                return us_error_msg(err, -r, "build removal script");
        if (!any) {
                *ret_script = NULL;
                return 0;
        }
        *ret_script = TAKE_PTR(script);
        return 0;
}

int netplumb_nat_remove(int netns_fd, int family, struct us_error **err)
{
        const char *what = family == AF_INET6 ? "IPv6" : "IPv4";
        if (!find_tool(family, true) && !find_tool(family, false))
                return 0; /* no iptables: nothing of ours can be there */
        _cleanup_free_ char *saved = NULL;
        int r = run_tool(netns_fd, family, true, NULL, &saved, err);
        if (r < 0)
                return us_error_wrap(err, r, "list %s netfilter rules", what);
        _cleanup_free_ char *script = NULL;
        r = netplumb_nat_removal_script(saved, &script, err);
        if (r < 0)
                return us_error_wrap(err, r, "remove %s netfilter rules", what);
        if (!script)
                return 0;
        r = run_tool(netns_fd, family, false, script, NULL, err);
        if (r < 0)
                return us_error_wrap(err, r, "remove %s netfilter rules", what);
        return 0;
}
