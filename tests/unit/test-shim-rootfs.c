/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "shim/rootfs.h"
#include "base/cleanup.h"
#include "shim/sandbox/idmap.h"

static void overlay_options_become_data(void **state)
{
        (void)state;
        char *opts[] = {"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2", "ro"};
        unsigned long flags = 0, prop = 0;
        char *data = NULL;
        assert_int_equal(shim_mount_options(opts, 5, &flags, &prop, &data, NULL), 0);
        assert_int_equal(flags, MS_RDONLY);
        assert_int_equal(prop, 0);
        assert_string_equal(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
        free(data);
}

static void bind_flags_and_propagation(void **state)
{
        (void)state;
        char *opts[] = {"rbind", "nosuid", "nodev", "rprivate", "rw"};
        unsigned long flags = 0, prop = 0;
        char *data = NULL;
        assert_int_equal(shim_mount_options(opts, 5, &flags, &prop, &data, NULL), 0);
        assert_int_equal(flags, MS_BIND | MS_REC | MS_NOSUID | MS_NODEV);
        assert_int_equal(prop, MS_PRIVATE | MS_REC);
        assert_null(data);
}

static void clearing_options_win_in_order(void **state)
{
        (void)state;
        char *opts[] = {"ro", "rw", "noexec", "exec", "nosuid"};
        unsigned long flags = 0, prop = 0;
        char *data = NULL;
        assert_int_equal(shim_mount_options(opts, 5, &flags, &prop, &data, NULL), 0);
        assert_int_equal(flags, MS_NOSUID);
        free(data);
}

static void oversized_data_is_refused(void **state)
{
        (void)state;
        size_t n = 40;
        char *big = malloc(4001);
        memset(big, 'x', 4000);
        big[4000] = '\0';
        char **opts = calloc(n, sizeof(*opts));
        for (size_t i = 0; i < n; i++)
                opts[i] = big;
        unsigned long flags, prop;
        char *data = NULL;
        struct us_error *err = NULL;
        assert_int_equal(shim_mount_options(opts, n, &flags, &prop, &data, &err), -E2BIG);
        assert_non_null(strstr(us_error_text(err), "too long"));
        assert_null(data);
        us_error_free(err);
        free(opts);
        free(big);
}

static void overlay_layers_are_taken_apart(void **state)
{
        (void)state;
        char *opts[] = {"index=off",        "workdir=/s/1/work",
                        "upperdir=/s/1/fs", "lowerdir=/s/3/fs:/s/2/fs",
                        "nosuid",           "volatile"};
        struct shim_overlay *o = NULL;
        assert_int_equal(shim_overlay_parse(opts, 6, &o, NULL), 0);
        assert_int_equal(o->n_lower, 2);
        assert_string_equal(o->lower[0], "/s/3/fs");
        assert_string_equal(o->lower[1], "/s/2/fs");
        assert_string_equal(o->upper, "/s/1/fs");
        assert_string_equal(o->work, "/s/1/work");
        assert_int_equal(o->n_options, 2);
        assert_string_equal(o->options[0], "index=off");
        assert_string_equal(o->options[1], "volatile");
        assert_int_equal(o->flags, MS_NOSUID);
        shim_overlay_free(o);

        char *ro[] = {"lowerdir=/a:/b:/c", "ro"};
        assert_int_equal(shim_overlay_parse(ro, 2, &o, NULL), 0);
        assert_int_equal(o->n_lower, 3);
        assert_null(o->upper);
        assert_null(o->work);
        assert_int_equal(o->flags, MS_RDONLY);
        shim_overlay_free(o);
}

static void bad_overlays_are_refused(void **state)
{
        (void)state;
        static const char *const bad[][3] = {
                {"lowerdir=rel/dir", NULL, NULL},
                {"lowerdir=/a::/b", NULL, NULL},
                {"lowerdir=/a:", NULL, NULL},
                {"lowerdir=/a\\:b", NULL, NULL},
                {"lowerdir=/a", "upperdir=/u", NULL},
                {"lowerdir=/a", "workdir=/w", NULL},
                {"upperdir=/u", "workdir=/w", NULL},
                {"lowerdir=/a", "lowerdir=/b", NULL},
                {"lowerdir=/a", "upperdir=/u", "upperdir=/v"},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(bad); i++) {
                size_t n = bad[i][2] ? 3 : bad[i][1] ? 2 : 1;
                struct shim_overlay *o = NULL;
                struct us_error *err = NULL;
                int r = shim_overlay_parse((char *const *)bad[i], n, &o, &err);
                if (r != -EINVAL)
                        fail_msg("case %zu (%s): %d", i, bad[i][0], r);
                assert_null(o);
                assert_non_null(strstr(us_error_text(err), "overlay"));
                us_error_free(err);
        }
}

static void too_many_layers_are_refused(void **state)
{
        (void)state;
        size_t len = 9 + (SHIM_OVERLAY_MAX_LOWER + 1) * 3;
        char *opt = malloc(len + 1);
        strcpy(opt, "lowerdir=");
        for (size_t i = 0; i <= SHIM_OVERLAY_MAX_LOWER; i++)
                strcat(opt, i ? ":/l" : "/l");
        struct shim_overlay *o = NULL;
        assert_int_equal(shim_overlay_parse(&opt, 1, &o, NULL), -E2BIG);
        assert_null(o);
        free(opt);
}

static int run(const char *cmd)
{
        return system(cmd) == 0 ? 0 : -1;
}

/* In the user namespace as ns root, as virtiofsd is: what the overlay shows
 * and what creating and chowning there does. Exit 0 when all is right. */
static int as_ns_root(int userns, const char *merged)
{
        struct stat st;
        char p[512];
        if (setns(userns, CLONE_NEWUSER) < 0 || setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 ||
            setresuid(0, 0, 0) < 0)
                return 10;
        snprintf(p, sizeof(p), "%s/rootfile", merged);
        if (stat(p, &st) < 0 || st.st_uid != 0 || st.st_gid != 0)
                return 11;
        snprintf(p, sizeof(p), "%s/userfile", merged);
        if (stat(p, &st) < 0 || st.st_uid != 1000)
                return 12;
        snprintf(p, sizeof(p), "%s/created", merged);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
                return 13;
        close(fd);
        snprintf(p, sizeof(p), "%s/rootfile", merged); /* a copy-up */
        if (chown(p, 1000, 1000) < 0)
                return 14;
        snprintf(p, sizeof(p), "%s/suid", merged);
        if (chmod(p, 04755) < 0 || stat(p, &st) < 0 || !(st.st_mode & S_ISUID) || st.st_uid != 0)
                return 15;
        return 0;
}

static void idmapped_overlay_keeps_owners(void **state)
{
        (void)state;
        if (geteuid() != 0)
                unit_skip("needs root (user namespaces, idmapped mounts)");
        char dir[] = "/var/tmp/unishim-ovl-XXXXXX", cmd[1024], m[256];
        assert_non_null(mkdtemp(dir));
        snprintf(cmd, sizeof(cmd),
                 "cd %s && chmod 755 . && mkdir -p l1 l2 snap/fs snap/work merged && echo r "
                 ">l2/rootfile && "
                 "echo u >l1/userfile && chown 1000:1000 l1/userfile && echo s >l2/suid && "
                 "chmod 4755 l2/suid",
                 dir);
        assert_int_equal(run(cmd), 0);
        int userns = -1;
        struct us_error *err = NULL;
        int r = sandbox_idmap_userns(0x7f000000, 65536, &userns, &err);
        if (r < 0)
                unit_skip("no user namespace: %s", us_error_text(err));
        char lower[600], upper[300], work[300];
        snprintf(lower, sizeof(lower), "lowerdir=%s/l1:%s/l2", dir, dir);
        snprintf(upper, sizeof(upper), "upperdir=%s/snap/fs", dir);
        snprintf(work, sizeof(work), "workdir=%s/snap/work", dir);
        char *opts[] = {"index=off", work, upper, lower};
        Containerd__Types__Mount mnt = CONTAINERD__TYPES__MOUNT__INIT;
        mnt.type = "overlay";
        mnt.source = "overlay";
        mnt.options = opts;
        mnt.n_options = 4;
        Containerd__Types__Mount *mounts[] = {&mnt};
        int tree = -1;
        r = shim_rootfs_idmapped(mounts, 1, NULL, userns, 0x7f000000, 0x7f000000, &tree, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        snprintf(m, sizeof(m), "%s/merged", dir);
        assert_int_equal(move_mount(tree, "", AT_FDCWD, m, MOVE_MOUNT_F_EMPTY_PATH), 0);
        close(tree);
        pid_t pid = fork();
        if (pid == 0)
                _exit(as_ns_root(userns, m));
        int status = -1;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        (void)umount2(m, MNT_DETACH);
        close(userns);
        /* On disk, as the namespace's 0 and 1000 mean on the host. */
        struct stat st;
        char p[512];
        snprintf(p, sizeof(p), "%s/snap/fs/created", dir);
        int created = stat(p, &st) == 0 ? (int)st.st_uid : -1;
        snprintf(p, sizeof(p), "%s/snap/fs/rootfile", dir);
        int chowned = stat(p, &st) == 0 ? (int)st.st_uid : -1;
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void)run(cmd);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(created, 0);
        assert_int_equal(chowned, 1000);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(overlay_options_become_data),
                cmocka_unit_test(bind_flags_and_propagation),
                cmocka_unit_test(clearing_options_win_in_order),
                cmocka_unit_test(oversized_data_is_refused),
                cmocka_unit_test(overlay_layers_are_taken_apart),
                cmocka_unit_test(bad_overlays_are_refused),
                cmocka_unit_test(too_many_layers_are_refused),
                cmocka_unit_test(idmapped_overlay_keeps_owners),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
