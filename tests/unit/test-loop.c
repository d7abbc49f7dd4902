/* SPDX-License-Identifier: Apache-2.0 */
/* The loop's mailbox: what other threads post runs on the loop's thread,
 * every mail once, each thread's in the order it posted them. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "unit.h"

#include "base/loop.h"

#define SENDERS 4
#define MAILS   5000

struct note {
        struct us_loop_mail mail;
        int sender, seq;
};

struct box {
        struct us_loop *loop;
        struct us_loop_mailbox *mb;
        pthread_t loop_thread;
        int next[SENDERS]; /* the next seq expected of each sender */
        int received, out_of_order, wrong_thread;
};

static struct box *the_box;

static void received(struct us_loop_mail *mail)
{
        struct note *n = (struct note *)mail;
        struct box *b = the_box;
        if (!pthread_equal(pthread_self(), b->loop_thread))
                b->wrong_thread++;
        if (n->seq != b->next[n->sender])
                b->out_of_order++;
        b->next[n->sender] = n->seq + 1;
        free(n);
        if (++b->received == SENDERS * MAILS)
                us_loop_quit(b->loop, 0);
}

static void *sender(void *arg)
{
        int id = (int)(intptr_t)arg;
        for (int i = 0; i < MAILS; i++) {
                struct note *n = calloc(1, sizeof(*n));
                if (!n)
                        abort();
                n->sender = id;
                n->seq = i;
                us_loop_mailbox_post(the_box->mb, &n->mail, received);
        }
        return NULL;
}

static void threads_post_to_the_loop(void **state)
{
        (void)state;
        struct box b = {.loop_thread = pthread_self()};
        the_box = &b;
        assert_int_equal(us_loop_new(&b.loop, NULL), 0);
        assert_int_equal(us_loop_mailbox_new(b.loop, &b.mb, NULL), 0);
        pthread_t t[SENDERS];
        for (int i = 0; i < SENDERS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, sender, (void *)(intptr_t)i), 0);
        /* Runs until the last mail arrived: a lost one is a hang, which
         * ctest's timeout reports. */
        assert_int_equal(us_loop_run(b.loop), 0);
        for (int i = 0; i < SENDERS; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(b.received, SENDERS * MAILS);
        assert_int_equal(b.out_of_order, 0);
        assert_int_equal(b.wrong_thread, 0);
        b.mb = us_loop_mailbox_free(b.mb);
        b.loop = us_loop_free(b.loop);
}

static int delivered_at_free;

static void count(struct us_loop_mail *mail)
{
        delivered_at_free++;
        free(mail);
}

static void free_delivers_what_is_queued(void **state)
{
        (void)state;
        struct us_loop *loop = NULL;
        struct us_loop_mailbox *mb = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        assert_int_equal(us_loop_mailbox_new(loop, &mb, NULL), 0);
        for (int i = 0; i < 3; i++) {
                struct us_loop_mail *m = calloc(1, sizeof(*m));
                assert_non_null(m);
                us_loop_mailbox_post(mb, m, count);
        }
        assert_int_equal(delivered_at_free, 0);
        mb = us_loop_mailbox_free(mb);
        assert_int_equal(delivered_at_free, 3);
        loop = us_loop_free(loop);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(threads_post_to_the_loop),
                cmocka_unit_test(free_delivers_what_is_queued),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
