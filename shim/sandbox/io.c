/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The long polls of each guest process (io.h): output streams pumped into
 * containerd's FIFOs with back-pressure, stdin written to the guest, and the
 * exit. All on the agent's channel (agent.h).
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "reply.h"

#define READ_CHUNK 65536

/* ---- long polls: output streams ---- */

static void stream_close(struct sandbox_stream *s)
{
        s->retry = us_loop_source_remove(s->retry);
        s->out_watch = us_loop_source_remove(s->out_watch);
        s->fd = us_close(s->fd);
        free(s->pending);
        s->pending = NULL;
        s->pending_len = s->pending_off = 0;
}

static void stream_read(struct sandbox_stream *s);

static void stream_writable(struct us_loop_source *src, int fd, uint32_t events, void *userdata);

/* Writes what the guest sent into the FIFO; never blocks the loop. When the
 * FIFO is full, waits for it, and only then asks the guest for more: the
 * guest's buffer fills and its process blocks, as on a host. */
static void stream_flush(struct sandbox_stream *s)
{
        while (s->pending_off < s->pending_len) {
                ssize_t n =
                        write(s->fd, s->pending + s->pending_off, s->pending_len - s->pending_off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (!s->out_watch &&
                            us_loop_add_fd(s->proc->container->loop, s->fd, EPOLLOUT,
                                           stream_writable, s, &s->out_watch, NULL) < 0)
                                stream_close(s);
                        return;
                }
                if (n < 0) {
                        stream_close(s); /* nobody reads any more */
                        return;
                }
                s->pending_off += (size_t)n;
        }
        free(s->pending);
        s->pending = NULL;
        s->pending_len = s->pending_off = 0;
        s->out_watch = us_loop_source_remove(s->out_watch);
        if (s->eof)
                stream_close(s);
        else
                stream_read(s);
}

static void stream_writable(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        struct sandbox_stream *s = userdata;
        if (events & (EPOLLERR | EPOLLHUP)) {
                stream_close(s);
                return;
        }
        stream_flush(s);
}

static void stream_retry(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct sandbox_stream *s = userdata;
        s->retry = NULL;
        stream_read(s);
}

static void stream_got(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                       void *userdata)
{
        (void)err;
        struct sandbox_stream *s = userdata;
        s->call = 0;
        if (status == -ECANCELED || s->proc->closing)
                return;
        /* An error, or a guest that answers out of line: end the stream. */
        if (status < 0 || sandbox_reply_read_stream(payload, len, READ_CHUNK, &s->pending,
                                                    &s->pending_len, &s->eof, NULL) < 0) {
                stream_close(s);
                return;
        }
        s->pending_off = 0;
        if (!s->pending_len && !s->eof) {
                /* An empty answer that is not the end: the agent should not
                 * send one; if it does, do not let it spin our loop. */
                if (us_loop_add_timer(s->proc->container->loop, 100, stream_retry, s, &s->retry,
                                      NULL) < 0)
                        stream_close(s);
                return;
        }
        stream_flush(s);
}

static void stream_read(struct sandbox_stream *s)
{
        struct sandbox_proc *p = s->proc;
        struct sandbox_agent *a = p->container->agent;
        if (s->fd < 0 || s->call || p->closing || !a->events)
                return;
        Unishim__Agent__V1__ReadStreamRequest req = UNISHIM__AGENT__V1__READ_STREAM_REQUEST__INIT;
        req.container_id = (char *)p->container->id;
        req.exec_id = p->exec_id ? p->exec_id : (char *)"";
        req.stream = s->which;
        req.max_len = READ_CHUNK;
        if (sandbox_agent_poll(a, "ReadStream", &req.base, 0, stream_got, s, &s->call) < 0)
                stream_close(s);
}

/* ---- long polls: exits and stdin ---- */

static void proc_waited(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                        void *userdata)
{
        (void)err;
        struct sandbox_proc *p = userdata;
        p->wait_call = 0;
        if (status == -ECANCELED || p->closing || p->exited)
                return;
        uint32_t exit_status = 255; /* the guest could not tell: the process is lost */
        if (status == 0 && sandbox_reply_wait(payload, len, &exit_status, NULL) < 0)
                exit_status = 255;
        p->exited = true;
        p->container->exited(p->container->owner, p->exec_id, exit_status);
}

static void stdin_readable(struct us_loop_source *src, int fd, uint32_t events, void *userdata);
static void stdin_send(struct sandbox_proc *p);

/* Reads the pipe again, once the guest took everything read before. */
static int stdin_watch(struct sandbox_proc *p)
{
        if (p->in_watch)
                return 0;
        return us_loop_add_fd(p->container->loop, p->in_fd, EPOLLIN, stdin_readable, p,
                              &p->in_watch, NULL);
}

static void stdin_stop(struct sandbox_proc *p)
{
        p->in_watch = us_loop_source_remove(p->in_watch);
        p->in_fd = us_close(p->in_fd);
        free(p->in_buf);
        p->in_buf = NULL;
        p->in_len = 0;
}

static void stdin_written(int status, const uint8_t *payload, size_t len,
                          const struct us_error *err, void *userdata)
{
        (void)err;
        struct sandbox_proc *p = userdata;
        p->stdin_call = 0;
        if (status == -ECANCELED || p->closing)
                return;
        if (status < 0 || sandbox_reply_write_stdin(payload, len, p->in_len, NULL) < 0) {
                stdin_stop(p);
                return;
        }
        free(p->in_buf);
        p->in_buf = NULL;
        p->in_len = 0;
        /* One write in flight at a time: read the pipe again. */
        if (stdin_watch(p) < 0)
                stdin_stop(p);
}

static void stdin_send(struct sandbox_proc *p)
{
        struct sandbox_agent *a = p->container->agent;
        Unishim__Agent__V1__WriteStdinRequest req = UNISHIM__AGENT__V1__WRITE_STDIN_REQUEST__INIT;
        req.container_id = (char *)p->container->id;
        req.exec_id = p->exec_id ? p->exec_id : (char *)"";
        req.data.data = p->in_buf;
        req.data.len = p->in_len;
        /* No deadline: the agent answers once the bytes are in the
         * process's pipe, which takes as long as the process does not read. */
        if (sandbox_agent_poll(a, "WriteStdin", &req.base, 0, stdin_written, p, &p->stdin_call) < 0)
                stdin_stop(p);
}

static void stdin_readable(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct sandbox_proc *p = userdata;
        uint8_t buf[READ_CHUNK];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                /* The shim closed the pipe after the last byte of stdin
                 * (task-io.c), and the guest took every byte before: the
                 * guest process gets EOF. */
                stdin_stop(p);
                Unishim__Agent__V1__ProcessRequest req = UNISHIM__AGENT__V1__PROCESS_REQUEST__INIT;
                req.container_id = (char *)p->container->id;
                req.exec_id = p->exec_id ? p->exec_id : (char *)"";
                /* After the writes, on the same connection: in order. */
                (void)sandbox_agent_acall(p->container->agent, p->container->owner, "CloseStdin",
                                          &req.base, NULL, sandbox_acall_plain, NULL, NULL, NULL);
                return;
        }
        p->in_buf = malloc((size_t)n);
        if (!p->in_buf) {
                stdin_stop(p);
                return;
        }
        memcpy(p->in_buf, buf, (size_t)n);
        p->in_len = (size_t)n;
        /* Unwatched until the guest took it all, not just masked: the
         * pipe's hangup would still be reported, and the EOF read then
         * would pass the bytes in flight. */
        p->in_watch = us_loop_source_remove(p->in_watch);
        stdin_send(p);
}

/* Starts the long polls of a process that now exists in the guest. */
void sandbox_proc_poll(struct sandbox_proc *p)
{
        struct sandbox_agent *a = p->container->agent;
        if (!a->events)
                return;
        stream_read(&p->out);
        stream_read(&p->err);
        if (p->in_fd >= 0 && !p->in_buf && stdin_watch(p) < 0)
                p->in_fd = us_close(p->in_fd);
        if (!p->wait_call && !p->exited) {
                Unishim__Agent__V1__ProcessRequest req = UNISHIM__AGENT__V1__PROCESS_REQUEST__INIT;
                req.container_id = (char *)p->container->id;
                req.exec_id = p->exec_id ? p->exec_id : (char *)"";
                if (sandbox_agent_poll(a, "WaitProcess", &req.base, 0, proc_waited, p,
                                       &p->wait_call) < 0)
                        p->wait_call = 0;
        }
}

static int dup_or_none(int fd)
{
        return fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
}

int sandbox_proc_new(struct sandbox_container *c, const char *exec_id, const struct us_stdio *stdio,
                     struct sandbox_proc **ret, struct us_error **err)
{
        struct sandbox_proc *p = calloc(1, sizeof(*p));
        if (!p)
                return us_errorf(err, ENOMEM, "allocate process");
        p->container = c;
        p->out = (struct sandbox_stream){.proc = p,
                                         .which = UNISHIM__AGENT__V1__STREAM__STREAM_STDOUT,
                                         .fd = dup_or_none(stdio->out)};
        p->err = (struct sandbox_stream){.proc = p,
                                         .which = UNISHIM__AGENT__V1__STREAM__STREAM_STDERR,
                                         .fd = dup_or_none(stdio->err)};
        p->in_fd = dup_or_none(stdio->in);
        if ((exec_id && !(p->exec_id = strdup(exec_id)))) {
                free(p);
                return us_errorf(err, ENOMEM, "allocate process");
        }
        /* The FIFOs stay blocking for the container on a host; ours must not. */
        if (p->out.fd >= 0)
                (void)fcntl(p->out.fd, F_SETFL, fcntl(p->out.fd, F_GETFL) | O_NONBLOCK);
        if (p->err.fd >= 0)
                (void)fcntl(p->err.fd, F_SETFL, fcntl(p->err.fd, F_GETFL) | O_NONBLOCK);
        if (p->in_fd >= 0)
                (void)fcntl(p->in_fd, F_SETFL, fcntl(p->in_fd, F_GETFL) | O_NONBLOCK);
        p->next = c->procs;
        c->procs = p;
        *ret = p;
        return 0;
}

void sandbox_proc_free(struct sandbox_proc *p)
{
        struct sandbox_agent *a = p->container->agent;
        p->closing = true;
        if (p->wait_call)
                sandbox_agent_cancel(a, p->wait_call);
        if (p->stdin_call)
                sandbox_agent_cancel(a, p->stdin_call);
        if (p->out.call)
                sandbox_agent_cancel(a, p->out.call);
        if (p->err.call)
                sandbox_agent_cancel(a, p->err.call);
        stream_close(&p->out);
        stream_close(&p->err);
        stdin_stop(p);
        free(p->exec_id);
        free(p);
}

struct sandbox_proc *sandbox_proc_find(struct sandbox_container *c, const char *exec_id)
{
        for (struct sandbox_proc *p = c->procs; p; p = p->next)
                if ((!exec_id && !p->exec_id) ||
                    (exec_id && p->exec_id && strcmp(exec_id, p->exec_id) == 0))
                        return p;
        return NULL;
}
