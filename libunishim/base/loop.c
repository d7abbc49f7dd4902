/* SPDX-License-Identifier: Apache-2.0 */
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

struct us_loop_source {
        struct us_loop *loop;
        struct us_loop_source *next_dead;
        int fd;
        bool owns_fd; /* timers own their timerfd */
        bool dead;
        us_loop_fd_fn fd_fn;
        us_loop_timer_fn timer_fn;
        void *userdata;
};

struct us_loop {
        int epfd;
        bool quit;
        int quit_code;
        int dispatching;
        struct us_loop_source *dead; /* removed during dispatch, freed after it */
};

int us_loop_new(struct us_loop **ret, struct us_error **err)
{
        struct us_loop *loop = calloc(1, sizeof(*loop));
        if (!loop)
                return us_errorf(err, ENOMEM, "allocate event loop");
        loop->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (loop->epfd < 0) {
                int r = us_errorf(err, errno, "epoll_create1");
                free(loop);
                return r;
        }
        *ret = loop;
        return 0;
}

static void free_dead(struct us_loop *loop)
{
        while (loop->dead) {
                struct us_loop_source *s = loop->dead;
                loop->dead = s->next_dead;
                free(s);
        }
}

struct us_loop *us_loop_free(struct us_loop *loop)
{
        if (!loop)
                return NULL;
        /* Freed from inside its own dispatch, the batch would run on. */
        assert(!loop->dispatching);
        free_dead(loop);
        us_close(loop->epfd);
        free(loop);
        return NULL;
}

static int add_source(struct us_loop *loop, struct us_loop_source *src, uint32_t events,
                      struct us_error **err)
{
        struct epoll_event ev = {.events = events, .data.ptr = src};
        if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0)
                return us_errorf(err, errno, "epoll add fd %d", src->fd);
        return 0;
}

int us_loop_add_fd(struct us_loop *loop, int fd, uint32_t events, us_loop_fd_fn fn, void *userdata,
                   struct us_loop_source **ret_src, struct us_error **err)
{
        assert(fd >= 0 && fn);
        struct us_loop_source *src = calloc(1, sizeof(*src));
        if (!src)
                return us_errorf(err, ENOMEM, "allocate loop source");
        *src = (struct us_loop_source){.loop = loop, .fd = fd, .fd_fn = fn, .userdata = userdata};
        int r = add_source(loop, src, events, err);
        if (r < 0) {
                free(src);
                return r;
        }
        if (ret_src)
                *ret_src = src;
        return 0;
}

int us_loop_source_set_events(struct us_loop_source *src, uint32_t events, struct us_error **err)
{
        struct epoll_event ev = {.events = events, .data.ptr = src};
        if (epoll_ctl(src->loop->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0)
                return us_errorf(err, errno, "epoll modify fd %d", src->fd);
        return 0;
}

int64_t us_monotonic_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int us_loop_add_timer(struct us_loop *loop, uint64_t msec, us_loop_timer_fn fn, void *userdata,
                      struct us_loop_source **ret_src, struct us_error **err)
{
        assert(fn);
        _cleanup_close_ int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (tfd < 0)
                return us_errorf(err, errno, "timerfd_create");
        struct itimerspec its = {
                .it_value = {.tv_sec = (time_t)(msec / 1000),
                             .tv_nsec = (long)(msec % 1000) * 1000000L},
        };
        if (msec == 0)
                its.it_value.tv_nsec = 1; /* zero would disarm the timer */
        if (timerfd_settime(tfd, 0, &its, NULL) < 0)
                return us_errorf(err, errno, "timerfd_settime");

        struct us_loop_source *src = calloc(1, sizeof(*src));
        if (!src)
                return us_errorf(err, ENOMEM, "allocate loop timer");
        *src = (struct us_loop_source){
                .loop = loop, .fd = tfd, .owns_fd = true, .timer_fn = fn, .userdata = userdata};
        int r = add_source(loop, src, EPOLLIN, err);
        if (r < 0) {
                free(src);
                return r;
        }
        src->fd = TAKE_FD(tfd);
        if (ret_src)
                *ret_src = src;
        return 0;
}

struct us_loop_source *us_loop_source_remove(struct us_loop_source *src)
{
        if (!src || src->dead)
                return NULL;
        struct us_loop *loop = src->loop;
        (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, src->fd, NULL);
        if (src->owns_fd)
                us_close(src->fd);
        src->dead = true;
        if (loop->dispatching) {
                src->next_dead = loop->dead;
                loop->dead = src;
        } else {
                free(src);
        }
        return NULL;
}

struct us_loop *us_loop_source_loop(const struct us_loop_source *src)
{
        return src->loop;
}

int us_loop_run(struct us_loop *loop)
{
        struct epoll_event evs[32];
        /* Not re-entrant: a callback that ran the loop again would see the
         * outer batch's sources freed under it. */
        assert(!loop->dispatching);
        loop->quit = false;
        while (!loop->quit) {
                int n = epoll_wait(loop->epfd, evs, (int)US_ELEMENTSOF(evs), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                loop->dispatching++;
                for (int i = 0; i < n; i++) {
                        struct us_loop_source *src = evs[i].data.ptr;
                        /* A source removed earlier in this batch still sits in
                         * evs[]; it is on the dead list, not freed yet. */
                        if (src->dead)
                                continue;
                        if (src->timer_fn) {
                                uint64_t expirations;
                                (void)!read(src->fd, &expirations, sizeof(expirations));
                                us_loop_timer_fn fn = src->timer_fn;
                                void *ud = src->userdata;
                                us_loop_source_remove(src);
                                fn(src, ud);
                        } else {
                                src->fd_fn(src, src->fd, evs[i].events, src->userdata);
                        }
                }
                loop->dispatching--;
                free_dead(loop);
        }
        return loop->quit_code;
}

void us_loop_quit(struct us_loop *loop, int code)
{
        loop->quit = true;
        loop->quit_code = code;
}

/* ---- mailbox ---- */

struct us_loop_mailbox {
        struct us_loop_source *src;
        int efd; /* counts posts not yet seen by the loop */
        pthread_mutex_t lock;
        struct us_loop_mail *head, **tail;
};

/* Delivers what is queued now; mail posted meanwhile (also by the
 * callbacks) waits for the eventfd's next wakeup. */
static void mailbox_deliver(struct us_loop_mailbox *mb)
{
        pthread_mutex_lock(&mb->lock);
        struct us_loop_mail *m = mb->head;
        mb->head = NULL;
        mb->tail = &mb->head;
        pthread_mutex_unlock(&mb->lock);
        while (m) {
                struct us_loop_mail *next = m->next;
                m->fn(m);
                m = next;
        }
}

static void mailbox_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        uint64_t n;
        (void)!read(fd, &n, sizeof(n));
        mailbox_deliver(userdata);
}

int us_loop_mailbox_new(struct us_loop *loop, struct us_loop_mailbox **ret, struct us_error **err)
{
        struct us_loop_mailbox *mb = calloc(1, sizeof(*mb));
        if (!mb)
                return us_errorf(err, ENOMEM, "allocate mailbox");
        mb->tail = &mb->head;
        pthread_mutex_init(&mb->lock, NULL);
        mb->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int r = mb->efd < 0
                        ? us_errorf(err, errno, "eventfd")
                        : us_loop_add_fd(loop, mb->efd, EPOLLIN, mailbox_ready, mb, &mb->src, err);
        if (r < 0) {
                us_close(mb->efd);
                pthread_mutex_destroy(&mb->lock);
                free(mb);
                return r;
        }
        *ret = mb;
        return 0;
}

void us_loop_mailbox_post(struct us_loop_mailbox *mb, struct us_loop_mail *mail,
                          void (*fn)(struct us_loop_mail *mail))
{
        mail->fn = fn;
        mail->next = NULL;
        pthread_mutex_lock(&mb->lock);
        *mb->tail = mail;
        mb->tail = &mail->next;
        pthread_mutex_unlock(&mb->lock);
        /* Can only fail at a count of 2^64-2, which the loop's reads
         * reset long before; the mail is queued either way. */
        uint64_t one = 1;
        (void)!write(mb->efd, &one, sizeof(one));
}

struct us_loop_mailbox *us_loop_mailbox_free(struct us_loop_mailbox *mb)
{
        if (!mb)
                return NULL;
        mailbox_deliver(mb);
        us_loop_source_remove(mb->src);
        us_close(mb->efd);
        pthread_mutex_destroy(&mb->lock);
        free(mb);
        return NULL;
}
