/*
 * http-hello: a small HTTP/1.1 server for cairn's agent.
 *
 * Sockets come from the agent (systemd's convention: LISTEN_PID,
 * LISTEN_FDS, fds from 3); it accepts on every one of them, so a private
 * probe socket passed beside the shared one is served too. Without
 * LISTEN_FDS it listens on HELLO_LISTEN (default 127.0.0.1:8080).
 *
 *   GET /         "hello from http-hello VERSION (pid N)"
 *   GET /healthz  "ok" (503 in a build with BROKEN defined)
 *
 * Keep-alive is supported. On SIGTERM it stops accepting (the agent keeps
 * the listening socket, so queued connections wait for the next process),
 * answers every further request with "Connection: close" and closes the
 * connection after it, gives idle connections HELLO_DRAIN_MS (default
 * 2000) to send one more request, and exits when none is left.
 *
 * Fault knobs for the agent's tests and demo: HELLO_CRASH_AFTER_MS exits
 * with status 3 that long after start; HELLO_TRY_WRITE=1 tries to create a
 * file in the working directory (the generation) and says what happened.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "version.h"

#define MAX_LISTEN 16
#define MAX_CONN 1024
#define BUF 8192

struct conn {
    int fd;
    size_t len;          /* bytes of request head read so far */
    char buf[BUF];
    char out[512];       /* pending response */
    size_t out_len, out_off;
    int close_after;     /* close once the response is written */
};

static int listeners[MAX_LISTEN];
static int n_listeners;
static struct conn *conns[MAX_CONN];
static volatile sig_atomic_t stopping;

static void on_term(int sig) { (void)sig; stopping = 1; }

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void take_sockets(void) {
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (pid && fds && atol(pid) == (long)getpid()) {
        int n = atoi(fds);
        for (int i = 0; i < n && n_listeners < MAX_LISTEN; i++) {
            nonblocking(3 + i);
            fcntl(3 + i, F_SETFD, FD_CLOEXEC);
            listeners[n_listeners++] = 3 + i;
        }
        return;
    }
    const char *addr = getenv("HELLO_LISTEN");
    char host[64] = "127.0.0.1";
    int port = 8080;
    if (addr && sscanf(addr, "%63[^:]:%d", host, &port) != 2) {
        fprintf(stderr, "HELLO_LISTEN must be IP:PORT\n");
        exit(2);
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        perror("listen");
        exit(2);
    }
    nonblocking(fd);
    listeners[n_listeners++] = fd;
}

static void drop(int i) {
    close(conns[i]->fd);
    free(conns[i]);
    conns[i] = NULL;
}

static void respond(struct conn *c, int status, const char *body) {
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Service Unavailable";
    if (stopping) c->close_after = 1;
    c->out_len = snprintf(c->out, sizeof c->out,
        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s",
        status, reason, strlen(body), c->close_after ? "Connection: close\r\n" : "", body);
    c->out_off = 0;
}

/* Parses one complete request head in c->buf, if there is one. */
static void handle(struct conn *c) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) {
        if (c->len == BUF) { c->close_after = 1; respond(c, 404, "request too large\n"); c->len = 0; }
        return;
    }
    size_t head = end + 4 - c->buf;
    char method[8] = "", path[256] = "";
    sscanf(c->buf, "%7s %255s", method, path);
    if (memmem(c->buf, head, "Connection: close", 17) || memmem(c->buf, head, "connection: close", 17))
        c->close_after = 1;
    char body[128];
    if (strcmp(path, "/healthz") == 0) {
#ifdef BROKEN
        respond(c, 503, "broken build\n");
#else
        respond(c, 200, "ok\n");
#endif
    } else if (strcmp(path, "/") == 0) {
        snprintf(body, sizeof body, "hello from http-hello %s (pid %d)\n", VERSION, (int)getpid());
        respond(c, 200, body);
    } else {
        respond(c, 404, "not found\n");
    }
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int slot = -1;
        for (int i = 0; i < MAX_CONN; i++) if (!conns[i]) { slot = i; break; }
        if (slot < 0) { close(fd); continue; }
        conns[slot] = calloc(1, sizeof(struct conn));
        conns[slot]->fd = fd;
    }
}

/* Reads, answers and writes for connection i; drops it when done. */
static void serve(int i, short revents) {
    struct conn *c = conns[i];
    if (revents & POLLIN && c->out_len == 0) {
        ssize_t n = read(c->fd, c->buf + c->len, BUF - c->len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) { drop(i); return; }
        if (n > 0) { c->len += n; handle(c); }
    }
    if (c->out_len > 0) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && errno != EAGAIN && errno != EINTR) { drop(i); return; }
        if (n > 0) c->out_off += n;
        if (c->out_off == c->out_len) {
            c->out_len = 0;
            if (c->close_after) { drop(i); return; }
            if (c->len > 0) handle(c); /* a pipelined request */
        }
    }
    if (revents & (POLLERR | POLLHUP) && c->out_len == 0 && !(revents & POLLIN)) drop(i);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    take_sockets();
    long start = now_ms(), crash_after = env_long("HELLO_CRASH_AFTER_MS", 0);
    long drain_ms = env_long("HELLO_DRAIN_MS", 2000), drain_end = 0;
    if (getenv("HELLO_TRY_WRITE")) {
        int fd = open(".write-test", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        printf("cwd writable: %s\n", fd >= 0 ? "yes" : strerror(errno));
        if (fd >= 0) { close(fd); unlink(".write-test"); }
    }
    printf("http-hello %s serving on %d socket(s)\n", VERSION, n_listeners);
    for (;;) {
        if (crash_after > 0 && now_ms() - start >= crash_after) {
            printf("crashing on purpose (HELLO_CRASH_AFTER_MS)\n");
            exit(3);
        }
        if (stopping && drain_end == 0) {
            printf("draining: no new connections, closing after each answer\n");
            for (int i = 0; i < n_listeners; i++) close(listeners[i]);
            n_listeners = 0;
            drain_end = now_ms() + drain_ms;
        }
        struct pollfd p[MAX_LISTEN + MAX_CONN];
        int idx[MAX_CONN], n = 0, open_conns = 0;
        for (int i = 0; i < n_listeners; i++) p[n++] = (struct pollfd){ .fd = listeners[i], .events = POLLIN };
        for (int i = 0; i < MAX_CONN; i++) {
            if (!conns[i]) continue;
            open_conns++;
            idx[n - n_listeners] = i;
            p[n++] = (struct pollfd){ .fd = conns[i]->fd,
                .events = conns[i]->out_len ? POLLOUT : POLLIN };
        }
        if (stopping && (open_conns == 0 || now_ms() >= drain_end)) {
            printf("drained; exiting\n");
            return 0;
        }
        if (poll(p, n, 100) <= 0) continue;
        for (int i = 0; i < n_listeners; i++) if (p[i].revents & POLLIN) accept_all(listeners[i]);
        for (int k = n_listeners; k < n; k++) if (p[k].revents) serve(idx[k - n_listeners], p[k].revents);
    }
}
