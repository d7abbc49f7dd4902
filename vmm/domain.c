/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "domain.h"
#include "qemu.h"
#include "syntax.h"
#include "base/text.h"

#define MAX_VCPUS 64
/* Per source: libvirt leaves the file's owner and mode alone. */
#define NO_RELABEL     "<seclabel model='dac' relabel='no'/>"
#define MAX_MEMORY_MIB (1024u * 1024u)

static bool name_ok(const char *s)
{
        if (!vmm_word_valid(s, VMM_DOMAIN_NAME_MAX))
                return false;
        /* virsh takes an all-digit name for a domain id. */
        return strspn(s, "0123456789") != strlen(s);
}

/* Linux interface names: 1..15 bytes, no '/', no whitespace, not . or .. */
static bool ifname_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 15 || !strcmp(s, ".") || !strcmp(s, ".."))
                return false;
        for (; *s; s++)
                if (*s == '/' || *s == ':' || isspace((unsigned char)*s) ||
                    !isprint((unsigned char)*s))
                        return false;
        return true;
}

/* Absolute, printable, no "..": a path libvirt and QEMU take as it is. */
static bool path_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || s[0] != '/' || n > 4096)
                return false;
        for (const char *p = s; *p; p++)
                if (!isprint((unsigned char)*p))
                        return false;
        return !strstr(s, "/../") && !(n >= 3 && !strcmp(s + n - 3, "/.."));
}

/* fmt's %s arguments are escaped for XML text and attributes; the format
 * itself is ours. %s, %u and %% only: anything else marks the document
 * broken (oom), so a wrong format can never shift the arguments. */
__attribute__((format(printf, 2, 3))) static void put(struct us_text *x, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        for (const char *p = fmt; *p; p++) {
                if (*p != '%') {
                        const char *q = strchr(p, '%');
                        size_t n = q ? (size_t)(q - p) : strlen(p);
                        us_text_append(x, p, n);
                        p += n - 1;
                        continue;
                }
                p++;
                if (*p == 'u') {
                        char num[16];
                        int n = snprintf(num, sizeof(num), "%u", va_arg(ap, unsigned));
                        us_text_append(x, num, (size_t)n);
                } else if (*p == 's') {
                        const char *arg = va_arg(ap, const char *);
                        for (const char *s = arg ? arg : ""; *s; s++) {
                                switch (*s) {
                                case '&':
                                        us_text_append(x, "&amp;", 5);
                                        break;
                                case '<':
                                        us_text_append(x, "&lt;", 4);
                                        break;
                                case '>':
                                        us_text_append(x, "&gt;", 4);
                                        break;
                                case '\'':
                                        us_text_append(x, "&apos;", 6);
                                        break;
                                case '"':
                                        us_text_append(x, "&quot;", 6);
                                        break;
                                default:
                                        us_text_append(x, s, 1);
                                }
                        }
                } else if (*p == '%') {
                        us_text_append(x, "%", 1);
                } else {
                        x->oom = true;
                        break;
                }
        }
        va_end(ap);
}

static int check(const struct vmm_domain_config *c, struct us_error **err)
{
        if (!name_ok(c->name))
                return us_error_msg(err, EINVAL,
                                    "domain name '%s': 1 to %d of [A-Za-z0-9._-], not only digits",
                                    c->name ? c->name : "", VMM_DOMAIN_NAME_MAX);
        if (c->uuid && !vmm_uuid_valid(c->uuid))
                return us_error_msg(err, EINVAL, "domain uuid '%s' is not a UUID", c->uuid);
        if (c->vcpus < 1 || c->vcpus > MAX_VCPUS)
                return us_error_msg(err, EINVAL, "domain vcpus %u: 1 to %d", c->vcpus, MAX_VCPUS);
        if (c->memory_mib < 16 || c->memory_mib > MAX_MEMORY_MIB)
                return us_error_msg(err, EINVAL, "domain memory %u MiB: 16 to %u", c->memory_mib,
                                    MAX_MEMORY_MIB);
        if (c->emulator && !path_ok(c->emulator))
                return us_error_msg(err, EINVAL, "domain emulator '%s'", c->emulator);
        if (!path_ok(c->disk))
                return us_error_msg(err, EINVAL, "domain disk '%s': an absolute path",
                                    c->disk ? c->disk : "");
        if (c->backing && !path_ok(c->backing))
                return us_error_msg(err, EINVAL, "domain backing file '%s': an absolute path",
                                    c->backing);
        if (c->backing && (!c->backing_format || (strcmp(c->backing_format, "qcow2") != 0 &&
                                                  strcmp(c->backing_format, "raw") != 0)))
                return us_error_msg(err, EINVAL, "domain backing format '%s': qcow2 or raw",
                                    c->backing_format ? c->backing_format : "");
        if (c->seed && !path_ok(c->seed))
                return us_error_msg(err, EINVAL, "domain seed '%s': an absolute path", c->seed);
        if (c->tap && !ifname_ok(c->tap))
                return us_error_msg(err, EINVAL, "domain tap '%s' is not an interface name",
                                    c->tap);
        if (c->tap && !vmm_mac_valid(c->mac))
                return us_error_msg(err, EINVAL, "domain MAC '%s'", c->mac ? c->mac : "");
        /* QEMU connects to it by path: it must fit sun_path. */
        if (!path_ok(c->console_socket) || strlen(c->console_socket) >= 108)
                return us_error_msg(err, EINVAL,
                                    "domain console socket '%s': an absolute path of at most "
                                    "107 bytes",
                                    c->console_socket ? c->console_socket : "");
        if (c->agent_socket && (!path_ok(c->agent_socket) || strlen(c->agent_socket) >= 108))
                return us_error_msg(err, EINVAL,
                                    "domain agent socket '%s': an absolute path of at most "
                                    "107 bytes",
                                    c->agent_socket);
        if (c->partition && !path_ok(c->partition))
                return us_error_msg(err, EINVAL, "domain partition '%s'", c->partition);
        if (c->tcg_tb_cache_mib > VMM_DOMAIN_TB_CACHE_MAX_MIB)
                return us_error_msg(err, EINVAL, "domain tb-cache %u MiB above %u",
                                    c->tcg_tb_cache_mib, VMM_DOMAIN_TB_CACHE_MAX_MIB);
        if (c->uid == 0 || c->gid == 0)
                return us_error_msg(err, EINVAL,
                                    "domain: QEMU must not run as root (uid %u gid %u)",
                                    (unsigned)c->uid, (unsigned)c->gid);
        return 0;
}

int vmm_domain_xml(const struct vmm_domain_config *c, char **ret, struct us_error **err)
{
        struct us_text x = {0};
        int r;

        if (!c || !ret)
                return us_error_msg(err, EINVAL, "domain: no config");
        if ((r = check(c, err)) < 0)
                return r;

        put(&x, "<domain type='%s'>\n", c->kvm ? "kvm" : "qemu");
        put(&x, "  <name>%s</name>\n", c->name);
        if (c->uuid)
                put(&x, "  <uuid>%s</uuid>\n", c->uuid);
        put(&x, "  <memory unit='MiB'>%u</memory>\n", c->memory_mib);
        put(&x, "  <vcpu>%u</vcpu>\n", c->vcpus);
        if (c->partition)
                put(&x, "  <resource><partition>%s</partition></resource>\n", c->partition);
        put(&x, "  <os>\n"
                "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                "    <boot dev='hd'/>\n"
                "  </os>\n");
        /* Without ACPI a guest's poweroff only halts, and SIGTERM has no
         * power button to press. Under TCG the translation cache is bounded
         * (vmm/domain.h); libvirt refuses TCG features for a KVM domain. */
        if (c->kvm)
                put(&x, "  <features><acpi/></features>\n");
        else
                put(&x,
                    "  <features><acpi/><tcg><tb-cache unit='MiB'>%u</tb-cache></tcg></features>\n",
                    c->tcg_tb_cache_mib ? c->tcg_tb_cache_mib : VMM_DOMAIN_TB_CACHE_MIB);
        if (c->kvm)
                put(&x, "  <cpu mode='host-passthrough'/>\n");
        put(&x, "  <clock offset='utc'/>\n"
                "  <on_poweroff>destroy</on_poweroff>\n"
                "  <on_reboot>destroy</on_reboot>\n"
                "  <on_crash>destroy</on_crash>\n");
        /* QEMU as the pod's own uid and gid, never root. libvirt labels
         * its own files for it (the domain's private dir, its master key),
         * but none of ours: each of our sources says relabel='no' (its DAC
         * driver would chown the overlay and its shared backing file, and
         * restore them later); the caller gave that uid access. */
        put(&x,
            "  <seclabel type='static' model='dac' relabel='yes'><label>+%u:+%u</label>"
            "</seclabel>\n",
            (unsigned)c->uid, (unsigned)c->gid);
        put(&x, "  <devices>\n");
        put(&x, "    <emulator>%s</emulator>\n", c->emulator ? c->emulator : VMM_DEFAULT_QEMU);
        put(&x,
            "    <disk type='file' device='disk'>\n"
            "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
            "      <source file='%s'>" NO_RELABEL "</source>\n",
            c->disk);
        /* The chain as given, ended by an empty backingStore: libvirt
         * reads no header of a file the pod brought. */
        if (c->backing)
                put(&x,
                    "      <backingStore type='file'>\n"
                    "        <format type='%s'/>\n"
                    "        <source file='%s'>" NO_RELABEL "</source>\n"
                    "        <backingStore/>\n"
                    "      </backingStore>\n",
                    c->backing_format, c->backing);
        else
                put(&x, "      <backingStore/>\n");
        put(&x, "      <target dev='vda' bus='virtio'/>\n"
                "    </disk>\n");
        /* The seed on virtio too, not a SATA CD-ROM: the guest's initramfs
         * has virtio's driver (its root is on it), so cloud-init's first,
         * pre-network stage finds the seed, and names the NIC before
         * anything brings it up (a CD-ROM's driver may come later, and
         * then the network is configured too late to rename the NIC). */
        if (c->seed)
                put(&x,
                    "    <disk type='file' device='disk'>\n"
                    "      <driver name='qemu' type='raw'/>\n"
                    "      <source file='%s'>" NO_RELABEL "</source>\n"
                    "      <backingStore/>\n"
                    "      <target dev='vdb' bus='virtio'/>\n"
                    "      <readonly/>\n"
                    "    </disk>\n",
                    c->seed);
        if (c->tap)
                put(&x,
                    "    <interface type='ethernet'>\n"
                    "      <mac address='%s'/>\n"
                    "      <target dev='%s' managed='no'/>\n"
                    "      <model type='virtio'/>\n"
                    "    </interface>\n",
                    c->mac, c->tap);
        /* QEMU connects to the shim, which listens before the create: not a
         * byte of the boot is lost, and virtlogd never holds it. */
        put(&x,
            "    <serial type='unix'>\n"
            "      <source mode='connect' path='%s'>" NO_RELABEL "</source>\n"
            "      <target port='0'/>\n"
            "    </serial>\n",
            c->console_socket);
        if (c->agent_socket)
                put(&x,
                    "    <channel type='unix'>\n"
                    "      <source mode='connect' path='%s'>" NO_RELABEL "</source>\n"
                    "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
                    "    </channel>\n",
                    c->agent_socket);
        else
                put(&x, "    <channel type='unix'>\n"
                        "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
                        "    </channel>\n");
        put(&x, "    <controller type='usb' model='none'/>\n"
                "    <memballoon model='none'/>\n"
                "    <panic model='isa'/>\n"
                "  </devices>\n"
                "</domain>\n");
        char *text = us_text_take(&x);
        if (!text)
                return us_errorf(err, ENOMEM, "domain XML");
        *ret = text;
        return 0;
}

void vmm_domain_name(const char *pod_name, const char *pod_id, char *buf)
{
        static const char prefix[] = "unishim-";
        size_t n = 0, id_len = pod_id ? strnlen(pod_id, 12) : 0;
        /* The pod's name gets what the prefix, a '-' and the id leave. */
        size_t room = VMM_DOMAIN_NAME_MAX - (sizeof(prefix) - 1) - (id_len ? id_len + 1 : 0);

        memcpy(buf, prefix, sizeof(prefix) - 1);
        n = sizeof(prefix) - 1;
        for (const char *p = pod_name ? pod_name : ""; *p && room > 0; p++, room--)
                buf[n++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '-';
        if (id_len) {
                if (n > sizeof(prefix) - 1)
                        buf[n++] = '-';
                for (size_t i = 0; i < id_len; i++)
                        buf[n++] = isalnum((unsigned char)pod_id[i]) ? pod_id[i] : '-';
        }
        if (n == sizeof(prefix) - 1)
                buf[n++] = 'x';
        buf[n] = '\0';
}
