// spindle-echo-c: the baseline of the `echo` workload. A minimal TCP echo server written
// directly on libuv, as a careful C programmer would: one loop, a read buffer per connection
// (no allocation per read), a write tried at once with uv_try_write and queued only for what
// the kernel did not take. Usage: spindle-echo-c [--port N] [--backlog N]
// Prints "listening on 127.0.0.1:PORT" once ready; stops on SIGINT or SIGTERM.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <uv.h>

enum { BUFFER_SIZE = 16384 };

typedef struct {
    uv_tcp_t tcp;
    char buffer[BUFFER_SIZE];
} connection_t;

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
} queued_write_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigint_watcher, sigterm_watcher;

static void on_close(uv_handle_t *handle) { free(handle->data); }

static void close_connection(connection_t *connection) {
    if (!uv_is_closing((uv_handle_t *)&connection->tcp)) uv_close((uv_handle_t *)&connection->tcp, on_close);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    connection_t *connection = handle->data;
    *buf = uv_buf_init(connection->buffer, BUFFER_SIZE);
}

static void on_write(uv_write_t *req, int status) {
    queued_write_t *write = (queued_write_t *)req;
    if (status < 0 && status != UV_ECANCELED) close_connection(req->handle->data);
    free(write);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    connection_t *connection = stream->data;
    if (nread == 0) return;
    if (nread < 0) {
        close_connection(connection);
        return;
    }
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int written = uv_try_write(stream, &out, 1);
    if (written == UV_EAGAIN) written = 0;
    if (written < 0) {
        close_connection(connection);
        return;
    }
    if (written < nread) {
        size_t rest = (size_t)nread - (size_t)written;
        queued_write_t *write = malloc(sizeof(queued_write_t) + rest);
        if (!write) abort();
        memcpy(write->data, buf->base + written, rest);
        write->buf = uv_buf_init(write->data, (unsigned)rest);
        if (uv_write(&write->req, stream, &write->buf, 1, on_write) < 0) {
            free(write);
            close_connection(connection);
        }
    }
}

static void on_connection(uv_stream_t *listener, int status) {
    if (status < 0) {
        fprintf(stderr, "spindle-echo-c: %s: %s\n", uv_err_name(status), uv_strerror(status));
        return;
    }
    connection_t *connection = malloc(sizeof(connection_t));
    if (!connection) abort();
    uv_tcp_init(loop, &connection->tcp);
    connection->tcp.data = connection;
    if (uv_accept(listener, (uv_stream_t *)&connection->tcp) < 0) {
        close_connection(connection);
        return;
    }
    uv_tcp_nodelay(&connection->tcp, 1);
    uv_read_start((uv_stream_t *)&connection->tcp, on_alloc, on_read);
}

static void close_any(uv_handle_t *handle, void *arg) {
    (void)arg;
    // Only connections carry data (their own memory, freed once closed).
    if (!uv_is_closing(handle)) uv_close(handle, handle->data ? on_close : NULL);
}

static void on_signal(uv_signal_t *watcher, int signum) {
    (void)watcher;
    (void)signum;
    uv_walk(loop, close_any, NULL);
}

int main(int argc, char **argv) {
    int port = 0, backlog = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--backlog") == 0) backlog = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: spindle-echo-c [--port N] [--backlog N]\n");
            return 2;
        }
    }
    loop = uv_default_loop();
    struct sockaddr_in address;
    uv_ip4_addr("127.0.0.1", port, &address);
    uv_tcp_init(loop, &server);
    int status = uv_tcp_bind(&server, (const struct sockaddr *)&address, 0);
    if (status == 0) status = uv_listen((uv_stream_t *)&server, backlog, on_connection);
    if (status < 0) {
        fprintf(stderr, "spindle-echo-c: listen on 127.0.0.1:%d: %s: %s\n", port, uv_err_name(status), uv_strerror(status));
        return 1;
    }
    struct sockaddr_storage bound;
    int length = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &length);
    printf("listening on 127.0.0.1:%d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    uv_signal_init(loop, &sigint_watcher);
    uv_signal_init(loop, &sigterm_watcher);
    uv_signal_start(&sigint_watcher, on_signal, SIGINT);
    uv_signal_start(&sigterm_watcher, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
