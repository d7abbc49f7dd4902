/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "shim/sandbox/idmap.h"

static void slots_are_disjoint_ranges(void **state)
{
        (void)state;
        assert_int_equal(sandbox_idmap_slot_base(0), 0x70000000u);
        assert_int_equal(sandbox_idmap_slot_base(1), 0x70010000u);
        uid_t last = sandbox_idmap_slot_base(SANDBOX_IDMAP_SLOTS - 1);
        assert_int_equal(last, 0x7fff0000u);
        /* The last range ends below 2^31, the first starts above QEMU's
         * uids (0x60000000 + a pid below 2^22). */
        assert_true((unsigned long long)last + SANDBOX_IDMAP_SIZE - 1 < 0x80000000ull);
        assert_true(sandbox_idmap_slot_base(0) > 0x60000000u + (1u << 22));
        for (unsigned s = 1; s < SANDBOX_IDMAP_SLOTS; s++)
                assert_int_equal(sandbox_idmap_slot_base(s) - sandbox_idmap_slot_base(s - 1),
                                 SANDBOX_IDMAP_SIZE);
}

static void slot_numbers_parse(void **state)
{
        (void)state;
        static const struct {
                const char *text;
                int r;
                unsigned slot;
        } cases[] = {
                {"0\n", 0, 0},
                {"17", 0, 17},
                {"4095\n", 0, 4095},
                {"4096", -EINVAL, 0},
                {"99999999999", -EINVAL, 0},
                {"", -EINVAL, 0},
                {"\n", -EINVAL, 0},
                {"01", -EINVAL, 0},
                {"1x", -EINVAL, 0},
                {"1\n\n", -EINVAL, 0},
                {"-1", -EINVAL, 0},
                {" 1", -EINVAL, 0},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                unsigned slot = 12345;
                struct us_error *err = NULL;
                int r = sandbox_idmap_slot_parse(cases[i].text, strlen(cases[i].text), &slot, &err);
                if (r != cases[i].r)
                        fail_msg("\"%s\": %d, not %d", cases[i].text, r, cases[i].r);
                if (r == 0)
                        assert_int_equal(slot, cases[i].slot);
                else
                        assert_int_equal(slot, 12345);
                us_error_free(err);
        }
}

struct dirs {
        char root[64];
        char slots[96];
        char state[2][96];
};

static int dirs_setup(void **state)
{
        struct dirs *d = calloc(1, sizeof(*d));
        snprintf(d->root, sizeof(d->root), "/tmp/unishim-idmap-XXXXXX");
        if (!mkdtemp(d->root))
                return -1;
        snprintf(d->slots, sizeof(d->slots), "%s/slots", d->root);
        for (int i = 0; i < 2; i++) {
                snprintf(d->state[i], sizeof(d->state[i]), "%s/pod%d", d->root, i);
                mkdir(d->state[i], 0700);
        }
        *state = d;
        return 0;
}

static int dirs_teardown(void **state)
{
        struct dirs *d = *state;
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->root);
        (void)!system(cmd);
        free(d);
        return 0;
}

static bool exists(const char *dir, unsigned slot)
{
        char p[160];
        snprintf(p, sizeof(p), "%s/%u", dir, slot);
        return access(p, F_OK) == 0;
}

static char *slurp(const char *dir)
{
        char p[160];
        static char buf[32];
        snprintf(p, sizeof(p), "%s/%s", dir, SANDBOX_IDMAP_SLOT_FILE);
        FILE *f = fopen(p, "r");
        if (!f)
                return NULL;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        return buf;
}

/* In a child: the namespace maps 0 onto base, and we are its root there. */
static int ns_maps(int userns, uid_t base)
{
        pid_t pid = fork();
        if (pid == 0) {
                char buf[128] = "", want[64];
                if (setns(userns, CLONE_NEWUSER) < 0)
                        _exit(2);
                FILE *f = fopen("/proc/self/uid_map", "r");
                if (!f || !fgets(buf, sizeof(buf), f))
                        _exit(3);
                unsigned a, b, c;
                if (sscanf(buf, "%u %u %u", &a, &b, &c) != 3)
                        _exit(4);
                snprintf(want, sizeof(want), "%u %u %u", a, b, c);
                _exit(a == 0 && b == base && c == SANDBOX_IDMAP_SIZE ? 0 : 5);
        }
        int st = -1;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void slots_are_taken_given_back_and_cleaned(void **state)
{
        struct dirs *d = *state;
        if (geteuid() != 0)
                unit_skip("needs root (user namespaces)");
        struct sandbox_idmap a, b, c;
        struct us_error *err = NULL;
        if (sandbox_idmap_acquire(&a, d->slots, d->state[0], &err) < 0)
                unit_skip("no user namespace: %s", us_error_text(err));
        assert_int_equal(a.slot, 0);
        assert_int_equal(a.base, 0x70000000u);
        assert_true(a.userns_fd >= 0 && a.lock_fd >= 0);
        assert_string_equal(slurp(d->state[0]), "0\n");
        assert_int_equal(ns_maps(a.userns_fd, a.base), 0);

        /* Held: the next pod gets the next range. */
        assert_int_equal(sandbox_idmap_acquire(&b, d->slots, d->state[1], NULL), 0);
        assert_int_equal(b.slot, 1);
        assert_int_equal(b.base, 0x70010000u);
        assert_int_equal(ns_maps(b.userns_fd, b.base), 0);

        /* Given back: the file goes, and the slot is free again. */
        sandbox_idmap_release(&a, d->slots);
        assert_int_equal(a.lock_fd, -1);
        assert_int_equal(a.userns_fd, -1);
        assert_false(exists(d->slots, 0));
        sandbox_idmap_release(&a, d->slots); /* idempotent */
        assert_int_equal(sandbox_idmap_acquire(&c, d->slots, NULL, NULL), 0);
        assert_int_equal(c.slot, 0);

        /* A shim killed: its lock goes with its fds, its file stays. While
         * another pod holds it, shim delete leaves it. */
        close(b.userns_fd);
        close(b.lock_fd);
        assert_true(exists(d->slots, 1));
        int other = open(d->slots, O_RDONLY | O_DIRECTORY);
        int held = openat(other, "1", O_RDWR);
        assert_int_equal(flock(held, LOCK_EX | LOCK_NB), 0);
        assert_int_equal(sandbox_idmap_cleanup_dead(d->slots, d->state[1], NULL), 0);
        assert_true(exists(d->slots, 1));
        close(held);
        close(other);
        /* Free: shim delete removes it; again is fine. */
        assert_int_equal(sandbox_idmap_cleanup_dead(d->slots, d->state[1], NULL), 0);
        assert_false(exists(d->slots, 1));
        assert_int_equal(sandbox_idmap_cleanup_dead(d->slots, d->state[1], NULL), 0);
        sandbox_idmap_release(&c, d->slots);
        assert_false(exists(d->slots, 0));
}

static void a_bad_slot_record_is_an_error(void **state)
{
        struct dirs *d = *state;
        char p[160];
        snprintf(p, sizeof(p), "%s/%s", d->state[0], SANDBOX_IDMAP_SLOT_FILE);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs("../../etc\n", f);
        fclose(f);
        struct us_error *err = NULL;
        assert_int_equal(sandbox_idmap_cleanup_dead(d->slots, d->state[0], &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "uid slot"));
        us_error_free(err);
        unlink(p);
        /* No record: a pod that never took a slot. */
        assert_int_equal(sandbox_idmap_cleanup_dead(d->slots, d->state[0], NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(slots_are_disjoint_ranges),
                cmocka_unit_test(slot_numbers_parse),
                cmocka_unit_test_setup_teardown(slots_are_taken_given_back_and_cleaned, dirs_setup,
                                                dirs_teardown),
                cmocka_unit_test_setup_teardown(a_bad_slot_record_is_an_error, dirs_setup,
                                                dirs_teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
