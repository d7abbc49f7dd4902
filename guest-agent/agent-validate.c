/* SPDX-License-Identifier: Apache-2.0 */
/* Validation of everything the host sends: pure functions, no side effects. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent.h"
#include "base/cleanup.h"
#include "base/id.h"
#include "oci/oci-spec.h"

static bool id_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
}

static bool alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int agent_validate_id(const char *what, const char *id, struct us_error **err)
{
        return us_id_check(what, id, err);
}

int agent_validate_run_path(const char *what, const char *path, struct us_error **err)
{
        static const char prefix[] = AGENT_RUN_DIR "/";
        if (!path || !path[0])
                return us_error_msg(err, EINVAL, "%s is empty", what);
        size_t n = strnlen(path, AGENT_MAX_PATH + 1);
        if (n > AGENT_MAX_PATH)
                return us_error_msg(err, EINVAL, "%s is too long", what);
        if (strncmp(path, prefix, sizeof(prefix) - 1) != 0 || n == sizeof(prefix) - 1)
                return us_error_msg(err, EINVAL, "%s %s is not under " AGENT_RUN_DIR, what, path);
        /* Walk the components: none empty, ".", or "..". */
        const char *p = path + 1;
        while (*p) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);
                if (len == 0 || (len == 1 && p[0] == '.') ||
                    (len == 2 && p[0] == '.' && p[1] == '.'))
                        return us_error_msg(err, EINVAL, "%s %s is not a normalized path", what,
                                            path);
                if (!slash)
                        break;
                p = slash + 1;
                if (!*p)
                        return us_error_msg(err, EINVAL, "%s %s ends with '/'", what, path);
        }
        return 0;
}

int agent_validate_tag(const char *tag, struct us_error **err)
{
        if (!tag || !tag[0])
                return us_error_msg(err, EINVAL, "storage source is empty");
        size_t n = strnlen(tag, 37);
        if (n > 36)
                return us_error_msg(err, EINVAL, "storage source is longer than 36 bytes");
        for (size_t i = 0; i < n; i++)
                if (!id_char(tag[i]))
                        return us_error_msg(
                                err, EINVAL,
                                "storage source has a character outside [A-Za-z0-9_.-]");
        return 0;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int agent_parse_mac(const char *s, uint8_t mac[6], struct us_error **err)
{
        uint8_t out[6];
        if (!s || strnlen(s, 18) != 17)
                return us_error_msg(err, EINVAL, "invalid MAC address (want aa:bb:cc:dd:ee:ff)");
        for (int i = 0; i < 6; i++) {
                int hi = hexval(s[i * 3]), lo = hexval(s[i * 3 + 1]);
                if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
                        return us_error_msg(err, EINVAL,
                                            "invalid MAC address (want aa:bb:cc:dd:ee:ff)");
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        memcpy(mac, out, 6);
        return 0;
}

/* A name that becomes one path component or device name: 1..max of
 * [A-Za-z0-9_.-], not "." or "..". what names it in errors. */
static int validate_name(const char *what, const char *name, size_t max, struct us_error **err)
{
        if (!name || !name[0])
                return us_error_msg(err, EINVAL, "%s is empty", what);
        size_t n = strnlen(name, max + 1);
        if (n > max)
                return us_error_msg(err, EINVAL, "%s is longer than %zu bytes", what, max);
        if (!strcmp(name, ".") || !strcmp(name, ".."))
                return us_error_msg(err, EINVAL, "invalid %s", what);
        for (size_t i = 0; i < n; i++)
                if (!id_char(name[i]))
                        return us_error_msg(err, EINVAL,
                                            "%s has a character outside [A-Za-z0-9_.-]", what);
        return 0;
}

int agent_validate_ifname(const char *name, struct us_error **err)
{
        return validate_name("interface name", name, IFNAMSIZ - 1, err);
}

int agent_validate_local_dir(const char *name, uint32_t mode, struct us_error **err)
{
        int r = validate_name("local dir name", name, GUEST_MAX_LOCAL_DIR_NAME, err);
        if (r < 0)
                return r;
        if (mode > 07777)
                return us_error_msg(err, EINVAL, "local dir %s: mode %o has more than 07777", name,
                                    mode);
        return 0;
}

int agent_validate_hostname(const char *name, struct us_error **err)
{
        if (!name || !name[0])
                return us_error_msg(err, EINVAL, "hostname is empty");
        size_t n = strnlen(name, 65);
        if (n > 64)
                return us_error_msg(err, EINVAL, "hostname is longer than 64 bytes");
        for (size_t i = 0; i < n; i++)
                if (!alnum(name[i]) && name[i] != '-' && name[i] != '.')
                        return us_error_msg(err, EINVAL,
                                            "hostname has a character outside "
                                            "[A-Za-z0-9.-]");
        return 0;
}

int agent_validate_sysctl(const char *name, const char *value, struct us_error **err)
{
        size_t n = name ? strnlen(name, AGENT_MAX_SYSCTL_NAME + 1) : 0;
        if (n == 0 || n > AGENT_MAX_SYSCTL_NAME)
                return us_error_msg(err, EINVAL, "sysctl name is empty or too long");
        /* The pod's network and IPC namespaces are the guest's; the UTS
         * ones are the hostname's. */
        int ns = us_oci_sysctl_namespace(name);
        if (ns != CLONE_NEWNET && ns != CLONE_NEWIPC)
                return us_error_msg(err, EINVAL,
                                    "sysctl %s is not in the pod's network or IPC namespace", name);
        /* Each dotted part becomes a /proc/sys path component: none empty,
         * so none is "." or ".."; no '/' (an interface name with a dot, which
         * sysctl(8) writes with slashes, is not expressible). */
        for (const char *p = name;; p++) {
                size_t len = strcspn(p, ".");
                if (len == 0)
                        return us_error_msg(err, EINVAL, "sysctl %s: an empty part", name);
                for (size_t i = 0; i < len; i++)
                        if (!id_char(p[i]))
                                return us_error_msg(err, EINVAL,
                                                    "sysctl %s: a character outside "
                                                    "[A-Za-z0-9_.-]",
                                                    name);
                p += len;
                if (!*p)
                        break;
        }
        size_t vn = value ? strnlen(value, AGENT_MAX_SYSCTL_VALUE + 1) : 0;
        if (!value || vn > AGENT_MAX_SYSCTL_VALUE)
                return us_error_msg(err, EINVAL, "sysctl %s: value too long", name);
        for (size_t i = 0; i < vn; i++)
                if ((unsigned char)value[i] < 0x20 && value[i] != '\t')
                        return us_error_msg(err, EINVAL,
                                            "sysctl %s: a control character in its value", name);
        return 0;
}

int agent_parse_ip(uint32_t family, const char *address, int prefix_len, uint8_t buf[16],
                   int *ret_family, struct us_error **err)
{
        int af = family == 4 ? AF_INET : family == 6 ? AF_INET6 : -1;
        if (af < 0)
                return us_error_msg(err, EINVAL, "address family %u is not 4 or 6", family);
        if (!address || strnlen(address, INET6_ADDRSTRLEN) >= INET6_ADDRSTRLEN)
                return us_error_msg(err, EINVAL, "invalid IPv%u address", family);
        uint8_t tmp[16] = {0};
        if (inet_pton(af, address, tmp) != 1)
                return us_error_msg(err, EINVAL, "invalid IPv%u address %s", family, address);
        if (prefix_len >= 0 && prefix_len > (af == AF_INET ? 32 : 128))
                return us_error_msg(err, EINVAL, "prefix length %d too long for %s", prefix_len,
                                    address);
        memcpy(buf, tmp, 16);
        *ret_family = af;
        return 0;
}

int agent_parse_cidr(uint32_t family, const char *cidr, uint8_t buf[16], unsigned *ret_prefix,
                     int *ret_family, struct us_error **err)
{
        if (family != 4 && family != 6)
                return us_error_msg(err, EINVAL, "route family %u is not 4 or 6", family);
        if (!cidr || !cidr[0]) {
                memset(buf, 0, 16);
                *ret_prefix = 0;
                *ret_family = family == 4 ? AF_INET : AF_INET6;
                return 0;
        }
        char tmp[INET6_ADDRSTRLEN + 5];
        if (strnlen(cidr, sizeof(tmp)) >= sizeof(tmp))
                return us_error_msg(err, EINVAL, "invalid route destination");
        strcpy(tmp, cidr);
        char *slash = strchr(tmp, '/');
        if (!slash)
                return us_error_msg(err, EINVAL, "route destination %s is not CIDR", cidr);
        *slash = '\0';
        char *end = NULL;
        errno = 0;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (!slash[1] || *end || errno || p > 128)
                return us_error_msg(err, EINVAL, "invalid prefix in %s", cidr);
        int af;
        int r = agent_parse_ip(family, tmp, (int)p, buf, &af, err);
        if (r < 0)
                return r;
        *ret_prefix = (unsigned)p;
        *ret_family = af;
        return 0;
}
