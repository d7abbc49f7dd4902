/* SPDX-License-Identifier: Apache-2.0 */
#include "task-io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "base/cleanup.h"

#define PUMP_BUFFER 16384

/* Moves bytes src -> dst without ever blocking the loop: when dst is full,
 * src is not read until dst drains. */
struct pump {
        struct us_loop *loop;
        int src;
        int dst;
        struct us_loop_source *src_watch;
        struct us_loop_source *dst_watch;
        char *buf;
        size_t start;
        size_t end;
        bool src_done;
        /* At src's EOF, dst gets the terminal's EOF character (^D) after
         * everything read before: a pty has no half-close. */
        bool eot_at_eof;
        /* dst is an output FIFO that containerd had not opened yet when we
         * did (struct out_fifo): we hold a reader of our own until the last
         * byte is in, then keep dst open until containerd's reader has the
         * FIFO open (pump_linger). */
        int dst_reader;
        char *dst_path;
        int inotify_fd;
        struct us_loop_source *inotify_watch;
};

/* The shim's end of an output FIFO. containerd opens its reader on a
 * goroutine of its own (containerd/fifo with O_NONBLOCK: a blocking
 * open(O_RDONLY), which returns once the FIFO has a writer), and a loaded
 * machine may run that goroutine after the process has come and gone. A
 * reader that opens after the last writer has closed waits in its open
 * forever, and whatever the process wrote went with the FIFO's buffer:
 * containerd's CRI ExecSync then waits for that EOF without a deadline. So
 * when the reader is not there yet (reader >= 0), the process does not get
 * the FIFO: it writes into a pipe that the shim pumps into the FIFO, the
 * shim keeping a reader of its own meanwhile so that the writes never fail,
 * and a writer until containerd's reader has come (pump_linger). */
struct out_fifo {
        int fd;     /* the shim's write end */
        int reader; /* the shim's own reader, while containerd's is late; else -1 */
        char *path; /* when reader >= 0 */
};

struct shim_stdio {
        struct us_loop *loop;
        bool terminal;
        char *in_path; /* the stdin FIFO until it is opened (an exec's: at Start) */
        int in_fifo;   /* the shim's reader of the stdin FIFO */
        /* A writer of the FIFO, held until CloseIO: without one the reader
         * would see EOF whenever containerd's writer is not (yet) open. */
        int in_keep;
        bool in_closed; /* CloseIO came */
        int in_child;   /* stdin given to the process (pipe read end) */
        int in_pipe_w;  /* shim side of that pipe */
        struct out_fifo out;
        struct out_fifo err;
        /* Without a terminal, when containerd's reader is late: the pipe
         * the process writes into instead of the FIFO (struct out_fifo). */
        int out_child, out_pipe_r;
        int err_child, err_pipe_r;
        int pty_master; /* terminal only */
        struct pump *in_pump;
        struct pump *out_pump;
        struct pump *err_pump;
};

static void pump_src_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata);
static void pump_dst_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata);

static struct pump *pump_free(struct pump *p)
{
        if (!p)
                return NULL;
        us_loop_source_remove(p->src_watch);
        us_loop_source_remove(p->dst_watch);
        us_loop_source_remove(p->inotify_watch);
        us_close(p->src);
        us_close(p->dst);
        us_close(p->dst_reader);
        us_close(p->inotify_fd);
        free(p->dst_path);
        free(p->buf);
        free(p);
        return NULL;
}

/* Writes what is buffered; returns 1 when empty, 0 when dst is full, <0 on error. */
static int pump_flush(struct pump *p)
{
        while (p->start < p->end) {
                ssize_t n = write(p->dst, p->buf + p->start, p->end - p->start);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                p->start += (size_t)n;
        }
        p->start = p->end = 0;
        return 1;
}

static void pump_reader_opened(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        (void)events;
        struct pump *p = userdata;
        p->inotify_watch = us_loop_source_remove(p->inotify_watch);
        p->inotify_fd = us_close(p->inotify_fd);
        p->dst = us_close(p->dst);
}

/* The last byte is in the FIFO dst, which containerd's reader had not
 * opened when we did. Once it has the FIFO open, closing dst gives it EOF
 * after the bytes; before, it would leave its open waiting forever for a
 * writer. With our own reader closed, the FIFO has a reader (containerd's,
 * open or in its open) if a writer can open it; if not, containerd's open,
 * which returns at once while we hold dst, shows as IN_OPEN. The watch comes
 * before the test, so that no open falls between the two (an open that
 * fails shows nothing). */
static void pump_linger(struct pump *p)
{
        int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (ifd >= 0 && inotify_add_watch(ifd, p->dst_path, IN_OPEN) < 0)
                ifd = us_close(ifd); /* gone: containerd is done with it */
        p->dst_reader = us_close(p->dst_reader);
        if (ifd >= 0) {
                int probe = open(p->dst_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (probe < 0 && errno == ENXIO &&
                    us_loop_add_fd(p->loop, ifd, EPOLLIN, pump_reader_opened, p, &p->inotify_watch,
                                   NULL) >= 0) {
                        p->inotify_fd = ifd;
                        return;
                }
                us_close(probe);
                us_close(ifd);
        }
        /* Without inotify (out of instances), as before: EOF now. */
        p->dst = us_close(p->dst);
}

static void pump_stop(struct pump *p)
{
        /* Closing dst is what tells the reader "no more output". */
        p->src_watch = us_loop_source_remove(p->src_watch);
        p->dst_watch = us_loop_source_remove(p->dst_watch);
        p->src = us_close(p->src);
        free(p->buf);
        p->buf = NULL;
        if (p->dst_reader >= 0)
                pump_linger(p);
        else
                p->dst = us_close(p->dst);
}

static void pump_step(struct pump *p)
{
        for (;;) {
                int r = pump_flush(p);
                if (r < 0) {
                        pump_stop(p);
                        return;
                }
                if (r == 0) {
                        /* dst full: wait for it, stop reading src meanwhile.
                         * Unwatched, not just masked: epoll reports a hangup
                         * (the FIFO's writers gone, a pty's slave closed)
                         * whatever the mask, and would spin the loop. */
                        if (!p->dst_watch &&
                            us_loop_add_fd(p->loop, p->dst, EPOLLOUT, pump_dst_ready, p,
                                           &p->dst_watch, NULL) < 0) {
                                pump_stop(p);
                                return;
                        }
                        p->src_watch = us_loop_source_remove(p->src_watch);
                        return;
                }
                p->dst_watch = us_loop_source_remove(p->dst_watch);
                if (p->src_done) {
                        pump_stop(p);
                        return;
                }
                ssize_t n = read(p->src, p->buf, PUMP_BUFFER);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (!p->src_watch &&
                            us_loop_add_fd(p->loop, p->src, EPOLLIN, pump_src_ready, p,
                                           &p->src_watch, NULL) < 0)
                                pump_stop(p);
                        return;
                }
                if (n <= 0) {
                        /* EOF, or EIO from a pty master whose slave is gone.
                         * Everything read before has been written: only now
                         * may the reader learn that nothing follows. */
                        p->src_done = true;
                        if (p->eot_at_eof) {
                                p->buf[0] = '\x04';
                                p->end = 1;
                        }
                        continue;
                }
                p->end = (size_t)n;
        }
}

static void pump_src_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        (void)events;
        pump_step(userdata);
}

static void pump_dst_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        struct pump *p = userdata;
        if (events & (EPOLLERR | EPOLLHUP)) {
                pump_stop(p);
                return;
        }
        pump_step(p);
}

static int set_nonblock(int fd, bool on)
{
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return -errno;
        fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
        return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

/* Takes src and dst; with an out_fifo dst (NULL otherwise), takes all of
 * it. A stdin pump's creator runs pump_step once: what the FIFO holds
 * already, or its EOF, may never be signalled (epoll reports no hangup on a
 * FIFO whose reader never saw a writer, though a read gives EOF: an exec's
 * stdin after a CloseIO before its Start, nobody writing). */
static int pump_new(struct us_loop *loop, int src, int dst, struct out_fifo *dst_fifo,
                    struct pump **ret, struct us_error **err)
{
        _cleanup_close_ int s = src;
        _cleanup_close_ int d = dst;
        _cleanup_close_ int d_reader = dst_fifo ? TAKE_FD(dst_fifo->reader) : -1;
        _cleanup_free_ char *d_path = dst_fifo ? TAKE_PTR(dst_fifo->path) : NULL;
        if (set_nonblock(s, true) < 0 || set_nonblock(d, true) < 0)
                return us_errorf(err, errno, "set stdio non-blocking");
        struct pump *p = calloc(1, sizeof(*p));
        if (!p)
                return us_errorf(err, ENOMEM, "allocate stdio pump");
        p->buf = malloc(PUMP_BUFFER);
        if (!p->buf) {
                free(p);
                return us_errorf(err, ENOMEM, "allocate stdio pump");
        }
        p->loop = loop;
        p->src = TAKE_FD(s);
        p->dst = TAKE_FD(d);
        p->dst_reader = TAKE_FD(d_reader);
        p->dst_path = TAKE_PTR(d_path);
        p->inotify_fd = -1;
        int r = us_loop_add_fd(loop, p->src, EPOLLIN, pump_src_ready, p, &p->src_watch, err);
        if (r < 0) {
                pump_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

/* Opens a FIFO for writing without blocking the loop, blocking for the
 * process that inherits it. When containerd has not opened its reader yet
 * (ENXIO), the FIFO is opened non-blocking for the shim's pump, after a
 * reader of the shim's own (struct out_fifo). */
static int out_fifo_open(const char *path, struct out_fifo *ret, struct us_error **err)
{
        struct out_fifo f = {.fd = -1, .reader = -1};
        f.fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (f.fd < 0 && errno == ENXIO) {
                f.reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
                if (f.reader < 0)
                        return us_errorf(err, errno, "open stdio fifo %s", path);
                f.fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (f.fd >= 0 && !(f.path = strdup(path))) {
                        us_close(f.fd);
                        us_close(f.reader);
                        return us_errorf(err, ENOMEM, "open stdio fifo %s", path);
                }
        }
        if (f.fd < 0) {
                int r = us_errorf(err, errno, "open stdio fifo %s", path);
                us_close(f.reader);
                return r;
        }
        if (f.reader < 0 && set_nonblock(f.fd, false) < 0) {
                int r = us_errorf(err, errno, "open stdio fifo %s", path);
                us_close(f.fd);
                return r;
        }
        *ret = f;
        return 0;
}

static void out_fifo_close(struct out_fifo *f)
{
        f->fd = us_close(f->fd);
        f->reader = us_close(f->reader);
        free(f->path);
        f->path = NULL;
}

/* Opens FIFO path for a process without a terminal: *ret_child is what the
 * process gets, the FIFO itself or, while containerd's reader is late, a
 * pipe (*ret_pipe_r, pumped into the FIFO from shim_stdio_attach). */
static int out_open_direct(const char *path, struct out_fifo *f, int *ret_child, int *ret_pipe_r,
                           struct us_error **err)
{
        int r = out_fifo_open(path, f, err);
        if (r < 0 || f->reader < 0) {
                *ret_child = r < 0 ? -1 : f->fd;
                return r;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "stdio pipe");
        *ret_child = p[1];
        *ret_pipe_r = p[0];
        return 0;
}

/* Opens the stdin FIFO (its reader, and the writer held until CloseIO)
 * and, without a terminal, the pipe the process reads. */
static int open_stdin(struct shim_stdio *s, const char *path, struct us_error **err)
{
        /* The reader first: a FIFO's writer opens without blocking only
         * once it has one. */
        s->in_fifo = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (s->in_fifo < 0)
                return us_errorf(err, errno, "open stdin fifo %s", path);
        if (!s->in_closed) {
                s->in_keep = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (s->in_keep < 0)
                        return us_errorf(err, errno, "open stdin fifo %s", path);
        }
        if (!s->terminal) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        return us_errorf(err, errno, "stdin pipe");
                s->in_child = p[0];
                s->in_pipe_w = p[1];
        }
        return 0;
}

int shim_stdio_open(struct us_loop *loop, const char *in, const char *out, const char *err_path,
                    bool terminal, bool stdin_at_start, struct shim_stdio **ret,
                    struct us_stdio *ret_fds, struct us_error **err)
{
        struct shim_stdio *s = calloc(1, sizeof(*s));
        if (!s)
                return us_errorf(err, ENOMEM, "allocate stdio");
        *s = (struct shim_stdio){.loop = loop,
                                 .terminal = terminal,
                                 .in_fifo = -1,
                                 .in_keep = -1,
                                 .in_child = -1,
                                 .in_pipe_w = -1,
                                 .out = {.fd = -1, .reader = -1},
                                 .err = {.fd = -1, .reader = -1},
                                 .out_child = -1,
                                 .out_pipe_r = -1,
                                 .err_child = -1,
                                 .err_pipe_r = -1,
                                 .pty_master = -1};
        int r = 0;
        if (in && *in && stdin_at_start) {
                s->in_path = strdup(in);
                if (!s->in_path) {
                        r = us_errorf(err, ENOMEM, "allocate stdio");
                        goto fail;
                }
        } else if (in && *in) {
                r = open_stdin(s, in, err);
                if (r < 0)
                        goto fail;
        }
        if (out && *out) {
                r = terminal ? out_fifo_open(out, &s->out, err)
                             : out_open_direct(out, &s->out, &s->out_child, &s->out_pipe_r, err);
                if (r < 0)
                        goto fail;
        }
        if (!terminal && err_path && *err_path) {
                r = out_open_direct(err_path, &s->err, &s->err_child, &s->err_pipe_r, err);
                if (r < 0)
                        goto fail;
        }
        *ret_fds = (struct us_stdio){.in = s->in_child, .out = s->out_child, .err = s->err_child};
        *ret = s;
        return 0;
fail:
        shim_stdio_free(s);
        return r;
}

int shim_stdio_open_stdin(struct shim_stdio *s, struct us_stdio *fds, struct us_error **err)
{
        if (!s->in_path)
                return 0;
        int r = open_stdin(s, s->in_path, err);
        if (r < 0)
                return r;
        free(s->in_path);
        s->in_path = NULL;
        fds->in = s->in_child;
        return 0;
}

/* After the process got child: drops the shim's copy, and pumps the pipe
 * into the FIFO when the process got a pipe. */
static int out_attach_direct(struct shim_stdio *s, struct out_fifo *f, int *child, int *pipe_r,
                             struct pump **ret_pump, struct us_error **err)
{
        if (*pipe_r < 0) {
                /* The process holds its own copy; ours would keep the
                 * reader from ever seeing EOF. */
                *child = -1; /* it was f->fd */
                out_fifo_close(f);
                return 0;
        }
        *child = us_close(*child);
        return pump_new(s->loop, TAKE_FD(*pipe_r), TAKE_FD(f->fd), f, ret_pump, err);
}

int shim_stdio_attach(struct shim_stdio *s, int pty_master, struct us_error **err)
{
        int r;
        s->in_child = us_close(s->in_child);
        if (!s->terminal) {
                r = out_attach_direct(s, &s->out, &s->out_child, &s->out_pipe_r, &s->out_pump, err);
                if (r >= 0)
                        r = out_attach_direct(s, &s->err, &s->err_child, &s->err_pipe_r,
                                              &s->err_pump, err);
                if (r < 0)
                        return r;
                if (s->in_fifo >= 0) {
                        r = pump_new(s->loop, TAKE_FD(s->in_fifo), TAKE_FD(s->in_pipe_w), NULL,
                                     &s->in_pump, err);
                        if (r < 0)
                                return r;
                        pump_step(s->in_pump);
                }
                return 0;
        }

        if (pty_master < 0)
                return us_error_msg(err, EINVAL, "terminal requested but no pty");
        s->pty_master = pty_master;
        if (s->out.fd >= 0) {
                int m = fcntl(pty_master, F_DUPFD_CLOEXEC, 3);
                if (m < 0)
                        return us_errorf(err, errno, "dup pty master");
                r = pump_new(s->loop, m, TAKE_FD(s->out.fd), &s->out, &s->out_pump, err);
                if (r < 0)
                        return r;
        }
        if (s->in_fifo >= 0) {
                int m = fcntl(pty_master, F_DUPFD_CLOEXEC, 3);
                if (m < 0)
                        return us_errorf(err, errno, "dup pty master");
                r = pump_new(s->loop, TAKE_FD(s->in_fifo), m, NULL, &s->in_pump, err);
                if (r < 0)
                        return r;
                s->in_pump->eot_at_eof = true;
                pump_step(s->in_pump);
        }
        return 0;
}

void shim_stdio_close_stdin(struct shim_stdio *s)
{
        /* Nothing is dropped and nothing waits here. Without our writer the
         * reader sees EOF once containerd's writer is closed too and the
         * FIFO is empty; only then does the pump (running, or started at
         * attach) close the process's end, after the last byte, or send ^D
         * to a terminal. As with runc's shim, a client that keeps its
         * writer open after CloseIO delays the EOF until it closes it. */
        s->in_closed = true;
        s->in_keep = us_close(s->in_keep);
}

int shim_stdio_resize(struct shim_stdio *s, unsigned width, unsigned height, struct us_error **err)
{
        if (s->pty_master < 0)
                return us_error_msg(err, ENOTTY, "process has no terminal");
        struct winsize ws = {.ws_row = (unsigned short)height, .ws_col = (unsigned short)width};
        if (ioctl(s->pty_master, TIOCSWINSZ, &ws) < 0)
                return us_errorf(err, errno, "resize terminal");
        return 0;
}

void shim_stdio_drain(struct shim_stdio *s)
{
        if (s->out_pump && s->out_pump->src >= 0)
                pump_step(s->out_pump);
        if (s->err_pump && s->err_pump->src >= 0)
                pump_step(s->err_pump);
}

struct shim_stdio *shim_stdio_free(struct shim_stdio *s)
{
        if (!s)
                return NULL;
        pump_free(s->in_pump);
        pump_free(s->out_pump);
        free(s->in_path);
        pump_free(s->err_pump);
        us_close(s->in_fifo);
        us_close(s->in_keep);
        us_close(s->in_child);
        us_close(s->in_pipe_w);
        /* out_child is out.fd when the process got the FIFO itself */
        if (s->out_pipe_r >= 0)
                us_close(s->out_child);
        if (s->err_pipe_r >= 0)
                us_close(s->err_child);
        us_close(s->out_pipe_r);
        us_close(s->err_pipe_r);
        out_fifo_close(&s->out);
        out_fifo_close(&s->err);
        us_close(s->pty_master);
        free(s);
        return NULL;
}
