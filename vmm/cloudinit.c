/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The burn_source struct is libburn's; libisofs has a copy for users
 * without libburn. */
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "cloudinit.h"
#include "syntax.h"
#include "base/text.h"

/* ---- values: checked, so that they can be written into YAML as they are */

/* An instance id: a word, never "." or "..". */
static bool id_ok(const char *s)
{
        return vmm_word_valid(s, 128) && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}
/* RFC 1123: dot-separated labels of letters, digits and inner hyphens. */
static bool dns_name_ok(const char *s, size_t max)
{
        size_t n = s ? strlen(s) : 0, label = 0;
        if (n == 0 || n > max)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '.') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!isalnum((unsigned char)c) && !(c == '-' && label > 0))
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0 && s[n - 1] != '-';
}

static bool addr_ok(int family, const char *s)
{
        unsigned char buf[sizeof(struct in6_addr)];
        return s && inet_pton(family, s, buf) == 1;
}

/* "address/prefix" of family. */
static bool cidr_ok(int family, const char *s)
{
        char addr[INET6_ADDRSTRLEN];
        const char *slash = s ? strchr(s, '/') : NULL;
        if (!slash || (size_t)(slash - s) >= sizeof(addr))
                return false;
        memcpy(addr, s, (size_t)(slash - s));
        addr[slash - s] = '\0';
        const char *p = slash + 1;
        unsigned max = family == AF_INET ? 32 : 128, v = 0;
        if (!*p || strlen(p) > 3)
                return false;
        for (; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        return false;
                v = v * 10 + (unsigned)(*p - '0');
        }
        return v <= max && addr_ok(family, addr);
}

static int check_net(const struct vmm_cloudinit_net *n, struct us_error **err)
{
        if (!vmm_mac_valid(n->mac))
                return us_error_msg(err, EINVAL, "cloud-init: bad MAC address '%s'",
                                    n->mac ? n->mac : "");
        if (n->mtu != 0 && (n->mtu < 68 || n->mtu > 65535))
                return us_error_msg(err, EINVAL, "cloud-init: MTU %u out of range", n->mtu);
        if (n->ipv4 && !cidr_ok(AF_INET, n->ipv4))
                return us_error_msg(err, EINVAL, "cloud-init: bad IPv4 address '%s'", n->ipv4);
        if (n->ipv6 && !cidr_ok(AF_INET6, n->ipv6))
                return us_error_msg(err, EINVAL, "cloud-init: bad IPv6 address '%s'", n->ipv6);
        if (n->ipv4_gateway && (!n->ipv4 || !addr_ok(AF_INET, n->ipv4_gateway)))
                return us_error_msg(err, EINVAL, "cloud-init: bad IPv4 gateway '%s'",
                                    n->ipv4_gateway);
        if (n->ipv6_gateway && (!n->ipv6 || !addr_ok(AF_INET6, n->ipv6_gateway)))
                return us_error_msg(err, EINVAL, "cloud-init: bad IPv6 gateway '%s'",
                                    n->ipv6_gateway);
        if (n->n_nameservers > VMM_CLOUDINIT_MAX_DNS)
                return us_error_msg(err, EINVAL, "cloud-init: %zu name servers (at most %d)",
                                    n->n_nameservers, VMM_CLOUDINIT_MAX_DNS);
        for (size_t i = 0; i < n->n_nameservers; i++)
                if (!addr_ok(AF_INET, n->nameservers[i]) && !addr_ok(AF_INET6, n->nameservers[i]))
                        return us_error_msg(err, EINVAL, "cloud-init: bad name server '%s'",
                                            n->nameservers[i] ? n->nameservers[i] : "");
        if (n->n_search > VMM_CLOUDINIT_MAX_SEARCH)
                return us_error_msg(err, EINVAL, "cloud-init: %zu search domains (at most %d)",
                                    n->n_search, VMM_CLOUDINIT_MAX_SEARCH);
        for (size_t i = 0; i < n->n_search; i++)
                if (!dns_name_ok(n->search[i], 253))
                        return us_error_msg(err, EINVAL, "cloud-init: bad search domain '%s'",
                                            n->search[i] ? n->search[i] : "");
        return 0;
}

/* ---- documents ---------------------------------------------------------- */

static void put_list(struct us_text *t, const char *key, const char *const *v, size_t n)
{
        us_text_add(t, "      %s: [", key);
        for (size_t i = 0; i < n; i++)
                us_text_add(t, "%s\"%s\"", i ? ", " : "", v[i]);
        us_text_add(t, "]\n");
}

static char *network_config(const struct vmm_cloudinit_net *n)
{
        struct us_text t = {0};
        us_text_add(&t,
                    "version: 2\n"
                    "ethernets:\n"
                    "  eth0:\n"
                    "    match:\n"
                    "      macaddress: \"%s\"\n"
                    "    set-name: eth0\n",
                    n->mac);
        if (n->mtu)
                us_text_add(&t, "    mtu: %u\n", n->mtu);
        if (n->ipv4 || n->ipv6) {
                us_text_add(&t, "    addresses:\n");
                if (n->ipv4)
                        us_text_add(&t, "      - \"%s\"\n", n->ipv4);
                if (n->ipv6)
                        us_text_add(&t, "      - \"%s\"\n", n->ipv6);
        } else {
                us_text_add(&t, "    dhcp4: false\n");
        }
        if (n->ipv4_gateway || n->ipv6_gateway) {
                us_text_add(&t, "    routes:\n");
                if (n->ipv4_gateway)
                        us_text_add(&t, "      - to: \"0.0.0.0/0\"\n        via: \"%s\"\n",
                                    n->ipv4_gateway);
                if (n->ipv6_gateway)
                        us_text_add(&t, "      - to: \"::/0\"\n        via: \"%s\"\n",
                                    n->ipv6_gateway);
        }
        if (n->n_nameservers || n->n_search) {
                us_text_add(&t, "    nameservers:\n");
                if (n->n_nameservers)
                        put_list(&t, "addresses", n->nameservers, n->n_nameservers);
                if (n->n_search)
                        put_list(&t, "search", n->search, n->n_search);
        }
        return us_text_take(&t);
}

int vmm_cloudinit_documents(const struct vmm_cloudinit *ci, char **ret_meta, char **ret_network,
                            char **ret_user, struct us_error **err)
{
        _cleanup_free_ char *meta = NULL, *network = NULL, *user = NULL;
        int r;

        if (!ci || !ret_meta || !ret_network || !ret_user)
                return us_error_msg(err, EINVAL, "cloud-init: no input");
        if (!id_ok(ci->instance_id))
                return us_error_msg(err, EINVAL, "cloud-init: bad instance-id '%s'",
                                    ci->instance_id ? ci->instance_id : "");
        if (!dns_name_ok(ci->hostname, 63))
                return us_error_msg(err, EINVAL, "cloud-init: bad host name '%s'",
                                    ci->hostname ? ci->hostname : "");
        if (ci->user_data_len > VMM_CLOUDINIT_USER_DATA_MAX)
                return us_error_msg(err, EFBIG, "cloud-init: user-data of %zu bytes (at most %u)",
                                    ci->user_data_len, VMM_CLOUDINIT_USER_DATA_MAX);
        if (ci->net && (r = check_net(ci->net, err)) < 0)
                return r;

        struct us_text t = {0};
        us_text_add(&t, "instance-id: \"%s\"\nlocal-hostname: \"%s\"\n", ci->instance_id,
                    ci->hostname);
        meta = us_text_take(&t);
        if (ci->net)
                network = network_config(ci->net);
        if (ci->user_data) {
                user = malloc(ci->user_data_len + 1);
                if (user) {
                        memcpy(user, ci->user_data, ci->user_data_len);
                        user[ci->user_data_len] = '\0';
                }
        } else {
                user = strdup("#cloud-config\n");
        }
        if (!meta || (ci->net && !network) || !user)
                return us_errorf(err, ENOMEM, "cloud-init documents");
        *ret_meta = TAKE_PTR(meta);
        *ret_network = TAKE_PTR(network);
        *ret_user = TAKE_PTR(user);
        return 0;
}

/* ---- the seed volume ---------------------------------------------------- */

/* One fixed time for every timestamp in the volume: same input, same
 * bytes (2000-01-01T00:00:00Z). */
#define SEED_TIME   ((time_t)946684800)
#define SEED_UUID   "2000010100000000"
#define SEED_SECTOR 2048
#define SEED_LABEL  "cidata"

static int iso_fail(int r, const char *what, struct us_error **err)
{
        return us_error_msg(err, EIO, "cloud-init seed: %s: %s", what, iso_error_to_msg(r));
}

/* Adds name with a copy of len bytes of data (libisofs frees it). */
static int add_file(IsoImage *image, const char *name, const char *data, size_t len,
                    struct us_error **err)
{
        unsigned char *copy = malloc(len ? len : 1);
        IsoStream *stream = NULL;
        IsoFile *file = NULL;
        int r;

        if (!copy)
                return us_errorf(err, ENOMEM, "cloud-init seed");
        memcpy(copy, data, len);
        r = iso_memory_stream_new(copy, len, &stream);
        if (r < 0) {
                free(copy);
                return iso_fail(r, name, err);
        }
        /* The file takes the stream's reference. */
        r = iso_image_add_new_file(image, iso_image_get_root(image), name, stream, &file);
        if (r < 0) {
                iso_stream_unref(stream);
                return iso_fail(r, name, err);
        }
        iso_node_set_permissions((IsoNode *)file, 0444);
        iso_node_set_uid((IsoNode *)file, 0);
        iso_node_set_gid((IsoNode *)file, 0);
        return 0;
}

/* Builds the volume and streams it into fd. libisofs writes from a thread
 * of its own while we read; it is gone when the source is freed. */
static int build_volume(const char *meta, const char *network, const char *user, size_t user_len,
                        int fd, struct us_error **err)
{
        IsoImage *image = NULL;
        IsoWriteOpts *opts = NULL;
        struct burn_source *src = NULL;
        unsigned char sector[SEED_SECTOR];
        int r;

        r = iso_image_new(SEED_LABEL, &image);
        if (r < 0)
                return iso_fail(r, "new image", err);
        if ((r = add_file(image, "meta-data", meta, strlen(meta), err)) < 0 ||
            (r = add_file(image, "user-data", user, user_len, err)) < 0 ||
            (network && (r = add_file(image, "network-config", network, strlen(network), err)) < 0))
                goto out;
        iso_node_set_mtime((IsoNode *)iso_image_get_root(image), SEED_TIME);

        r = iso_write_opts_new(&opts, 2 /* Rock Ridge and Joliet */);
        if (r < 0) {
                r = iso_fail(r, "options", err);
                goto out;
        }
        /* The label as cloud-localds writes it: lower case in the primary
         * descriptor too (libisofs would upper-case it, as ISO 9660 says). */
        (void)iso_write_opts_set_relaxed_vol_atts(opts, 1);
        (void)iso_write_opts_set_replace_timestamps(opts, 1);
        (void)iso_write_opts_set_default_timestamp(opts, SEED_TIME);
        (void)iso_write_opts_set_always_gmt(opts, 1);
        r = iso_write_opts_set_pvd_times(opts, SEED_TIME, SEED_TIME, 0, SEED_TIME,
                                         (char *)SEED_UUID);
        if (r >= 0)
                r = iso_image_create_burn_source(image, opts, &src);
        if (r < 0) {
                r = iso_fail(r, "start writing", err);
                goto out;
        }
        for (;;) {
                int n = src->read_xt(src, sector, sizeof(sector));
                if (n == 0)
                        break;
                if (n < 0) {
                        r = us_error_msg(err, EIO, "cloud-init seed: libisofs failed to write");
                        goto out;
                }
                r = us_write_all(fd, sector, (size_t)n);
                if (r < 0) {
                        src->cancel(src);
                        r = us_errorf(err, -r, "write cloud-init seed");
                        goto out;
                }
        }
        r = 0;
out:
        if (src) {
                src->free_data(src);
                free(src);
        }
        iso_write_opts_free(opts);
        iso_image_unref(image);
        return r;
}

int vmm_cloudinit_seed_write(const struct vmm_cloudinit *ci, int dir_fd, const char *name,
                             struct us_error **err)
{
        _cleanup_free_ char *meta = NULL, *network = NULL, *user = NULL;
        _cleanup_close_ int fd = -1;
        int r = vmm_cloudinit_documents(ci, &meta, &network, &user, err);
        if (r < 0)
                return r;
        if (!name || !*name || strchr(name, '/'))
                return us_error_msg(err, EINVAL, "cloud-init seed: bad file name");

        r = iso_init_with_flag(1 /* no locale from the environment */);
        if (r < 0)
                return iso_fail(r, "init", err);
        (void)iso_set_msgs_severities((char *)"NEVER", (char *)"NEVER", (char *)"");
        fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = us_errorf(err, errno, "create cloud-init seed %s", name);
        } else {
                r = build_volume(meta, network, user,
                                 ci->user_data ? ci->user_data_len : strlen(user), fd, err);
                if (r < 0)
                        (void)unlinkat(dir_fd, name, 0);
        }
        iso_finish();
        return r;
}
