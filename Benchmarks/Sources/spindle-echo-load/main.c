// spindle-echo-load: the load generator of the `echo` workload, a separate process from the
// server it drives. It opens N connections to the server, then every connection plays
// ping-pong: send a message, read the whole echo, check every byte, send the next. Messages
// differ per connection and per round, so a lost, stale, reordered or foreign byte shows.
//
// Usage: spindle-echo-load --port P [--connections N] [--size BYTES] [--warmup-ms W]
//                          [--duration-ms D] [--samples FILE] [--ramp-timeout-ms M] [--burst 1]
// Once every connection has had its first echo, so that all N are being served, and after W ms
// of warm-up from then, it counts the round trips completed in the next D ms and records each
// one's latency (ns, uint64) into FILE. A server that takes its connections slowly (SwiftNIO
// accepts four a loop turn by default) would otherwise be measured on the few it has taken,
// their rounds short, while the requests of the rest wait in its accept queue uncounted. Prints
// one line:
//   connections=N size=S requests=R rounds=A window_ns=T turns=U ramp_ns=P burst_ns=B
//   measured=C mismatches=0 errors=0
// (rounds: every round trip, warm-up included; turns: this program's loop turns that finished
// at least one of the R round trips; ramp_ns: from the first requests to the last connection's
// first echo; burst_ns: from the first connect, all N opened at once, to the last connection's
// first echo: what a burst of N new clients waits (with --burst 1 each sends its first request
// as soon as it is connected, instead of once all are); measured: connections with a round trip in
// the window) and exits 1 if any byte
// was wrong, any connection failed, or some connection had no echo within M ms (30,000).
//
// R/U, echoes finished per turn, says which side holds the queue of a closed loop like this
// one. Near 1: this program takes each echo as it comes, and the requests wait in the server.
// Near N (or above it: a fast server can answer again within the turn): this program is the
// slower side, and each turn reads a whole round of echoes. Then an echo that lands just after
// the turn's epoll_wait waits for that whole turn and is read in the next, so the last few of
// each round take two turns (p99 near twice p50), whatever the server.
#include <errno.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uint32_t id;
    uint64_t round;
    uint64_t sent_at;
    size_t received;
    int done;
    int measured;
    unsigned char *out;
    unsigned char *in;
} connection_t;

static uv_loop_t *loop;
static size_t size = 64;
static uint32_t connections = 64, connected = 0, finished = 0;
static uint64_t warmup_ns = 500000000ull, duration_ns = 2000000000ull;
// The window opens once every connection has had its first echo (or failed): until then
// nothing is counted and nothing ends.
static uint64_t measure_from = UINT64_MAX, measure_until = UINT64_MAX;
static uint64_t rounds_started_at, ramp_ns, ramp_timeout_ns = 30000000000ull;
static uint64_t connects_started_at, burst_ns;
static int burst;  // --burst 1: each connection sends its first request as soon as it is connected
static uint32_t awaiting_first_echo;
static uv_timer_t ramp_timer;
static uint64_t requests, rounds, mismatches, errors;
static uint64_t turns, requests_at_last_turn;
static uv_check_t turn_check;
static uint64_t *samples;
static size_t sample_count, sample_capacity;
static connection_t *all;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned char pattern(uint32_t id, uint64_t round, size_t i) {
    return (unsigned char)(id * 31u + round * 7u + i * 13u + (i >> 8));
}

static void on_closed(uv_handle_t *handle) { (void)handle; }

static void open_window(void) {
    uint64_t now = now_ns();
    ramp_ns = now - rounds_started_at;
    burst_ns = now - connects_started_at;
    measure_from = now + warmup_ns;
    measure_until = measure_from + duration_ns;
    uv_close((uv_handle_t *)&ramp_timer, NULL);
}

// A connection has had its first echo, or will never have one.
static void answered_or_gone(void) {
    if (awaiting_first_echo > 0 && --awaiting_first_echo == 0) open_window();
}

static void finish(connection_t *c) {
    if (c->done) return;
    c->done = 1;
    finished++;
    if (c->round == 0) answered_or_gone();
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_ramp_timeout(uv_timer_t *timer) {
    (void)timer;
    if (awaiting_first_echo == 0) return;
    fprintf(stderr, "spindle-echo-load: %u of %u connections had no echo within %llu ms of the first requests "
        "(the server has not accepted them, or does not answer them)\n", awaiting_first_echo, connections,
        (unsigned long long)(ramp_timeout_ns / 1000000ull));
    errors++;
    for (uint32_t i = 0; i < connections; i++) finish(&all[i]);
}

static void fail(connection_t *c, const char *what, int status) {
    if (errors++ < 5) fprintf(stderr, "spindle-echo-load: connection %u: %s: %s: %s\n", c->id, what, uv_err_name(status), uv_strerror(status));
    finish(c);
}

static void on_write(uv_write_t *req, int status) {
    if (status < 0) fail(req->data, "write", status);
}

static void send_round(connection_t *c) {
    for (size_t i = 0; i < size; i++) c->out[i] = pattern(c->id, c->round, i);
    c->received = 0;
    c->sent_at = now_ns();
    uv_buf_t buf = uv_buf_init((char *)c->out, (unsigned)size);
    int written = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (written == UV_EAGAIN) written = 0;
    if (written < 0) {
        fail(c, "write", written);
        return;
    }
    if ((size_t)written < size) {
        // One message in flight per connection: the request embedded in the connection is free.
        buf = uv_buf_init((char *)c->out + written, (unsigned)(size - (size_t)written));
        c->write.data = c;
        int status = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
        if (status < 0) fail(c, "write", status);
    }
}

static void on_turn(uv_check_t *check) {
    (void)check;
    if (requests != requests_at_last_turn) turns++;
    requests_at_last_turn = requests;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    connection_t *c = handle->data;
    // One byte more than the rest of the echo: a read that fills the buffer makes libuv read
    // again at once (there may be more), and that second read(2), which finds nothing, doubled
    // this program's reads. A byte past the echo is the server's mistake, and is reported.
    *buf = uv_buf_init((char *)c->in + c->received, (unsigned)(size - c->received + 1));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    connection_t *c = stream->data;
    if (nread == 0) return;
    if (nread < 0) {
        fail(c, nread == UV_EOF ? "server closed the connection" : "read", (int)nread);
        return;
    }
    c->received += (size_t)nread;
    if (c->received > size) {
        fail(c, "the server sent more bytes than it was sent", UV_EPROTO);
        return;
    }
    if (c->received < size) return;
    uint64_t now = now_ns();
    for (size_t i = 0; i < size; i++) {
        if (c->in[i] != pattern(c->id, c->round, i)) {
            if (mismatches++ < 5) fprintf(stderr, "spindle-echo-load: connection %u round %llu byte %zu: got %u, sent %u\n",
                c->id, (unsigned long long)c->round, i, c->in[i], pattern(c->id, c->round, i));
        }
    }
    if (c->sent_at >= measure_from && now <= measure_until) {
        requests++;
        c->measured = 1;
        if (sample_count == sample_capacity) {
            sample_capacity = sample_capacity ? sample_capacity * 2 : 1 << 16;
            samples = realloc(samples, sample_capacity * sizeof *samples);
            if (!samples) abort();
        }
        samples[sample_count++] = now - c->sent_at;
    }
    if (c->round == 0) answered_or_gone();
    c->round++;
    rounds++;
    if (now >= measure_until) {
        finish(c);
        return;
    }
    send_round(c);
}

static void start_rounds(void) {
    rounds_started_at = now_ns();
    awaiting_first_echo = connections - finished;  // less those that failed to connect
    if (awaiting_first_echo == 0) return;
    uv_timer_init(loop, &ramp_timer);
    uv_timer_start(&ramp_timer, on_ramp_timeout, ramp_timeout_ns / 1000000ull, 0);
    for (uint32_t i = 0; i < connections; i++) {
        if (all[i].done) continue;
        uv_read_start((uv_stream_t *)&all[i].tcp, on_alloc, on_read);
        send_round(&all[i]);
    }
}

static void on_connect(uv_connect_t *req, int status) {
    connection_t *c = req->data;
    if (status < 0) {
        fail(c, "connect", status);
    } else {
        uv_tcp_nodelay(&c->tcp, 1);
        if (burst) {
            // A burst of clients: each asks at once, while the server is still taking the others.
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
            send_round(c);
        }
    }
    // Otherwise rounds start once every connection is up (or failed), so all N compete from
    // the start.
    if (++connected == connections && !burst) start_rounds();
}

// A whole number from `min` to `max`, or the program stops naming the option and the value.
static long long number(const char *option, const char *text, long long min, long long max) {
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "spindle-echo-load: %s must be a whole number from %lld to %lld (it was '%s')\n", option, min, max, text);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv) {
    int port = 0;
    const char *samples_path = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const long long day_ms = 86400000ll;
        if (strcmp(argv[i], "--port") == 0) port = (int)number(argv[i], argv[i + 1], 1, 65535);
        else if (strcmp(argv[i], "--connections") == 0) connections = (uint32_t)number(argv[i], argv[i + 1], 1, 1000000);
        else if (strcmp(argv[i], "--size") == 0) size = (size_t)number(argv[i], argv[i + 1], 1, 1 << 24);
        else if (strcmp(argv[i], "--warmup-ms") == 0) warmup_ns = (uint64_t)number(argv[i], argv[i + 1], 0, day_ms) * 1000000ull;
        else if (strcmp(argv[i], "--duration-ms") == 0) duration_ns = (uint64_t)number(argv[i], argv[i + 1], 1, day_ms) * 1000000ull;
        else if (strcmp(argv[i], "--samples") == 0) samples_path = argv[i + 1];
        else if (strcmp(argv[i], "--burst") == 0) burst = (int)number(argv[i], argv[i + 1], 0, 1);
        else if (strcmp(argv[i], "--ramp-timeout-ms") == 0) ramp_timeout_ns = (uint64_t)number(argv[i], argv[i + 1], 1, day_ms) * 1000000ull;
        else {
            fprintf(stderr, "spindle-echo-load: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "spindle-echo-load: %s needs a value\n", argv[argc - 1]);
        return 2;
    }
    if (port <= 0 || connections == 0 || size == 0) {
        fprintf(stderr, "usage: spindle-echo-load --port P [--connections N] [--size BYTES] [--warmup-ms W] [--duration-ms D] [--samples FILE] [--ramp-timeout-ms M] [--burst 1]\n");
        return 2;
    }
    loop = uv_default_loop();
    struct sockaddr_in address;
    uv_ip4_addr("127.0.0.1", port, &address);
    all = calloc(connections, sizeof *all);
    if (!all) abort();
    // As many descriptors as the hard limit allows: a burst of 10,000 needs more than the
    // usual soft limit of 1,024.
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    connects_started_at = now_ns();
    if (burst) {
        rounds_started_at = connects_started_at;
        awaiting_first_echo = connections;
        uv_timer_init(loop, &ramp_timer);
        uv_timer_start(&ramp_timer, on_ramp_timeout, ramp_timeout_ns / 1000000ull, 0);
    }
    for (uint32_t i = 0; i < connections; i++) {
        connection_t *c = &all[i];
        c->id = i;
        c->out = malloc(size);
        c->in = malloc(size + 1);
        if (!c->out || !c->in) abort();
        uv_tcp_init(loop, &c->tcp);
        c->tcp.data = c;
        c->connect.data = c;
        int status = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&address, on_connect);
        if (status < 0) {
            fail(c, "connect", status);
            if (++connected == connections) start_rounds();
        }
    }
    // Counts turns (after each poll), without keeping the loop alive.
    uv_check_init(loop, &turn_check);
    uv_check_start(&turn_check, on_turn);
    uv_unref((uv_handle_t *)&turn_check);
    uv_run(loop, UV_RUN_DEFAULT);
    if (samples_path) {
        FILE *file = fopen(samples_path, "wb");
        if (!file || fwrite(samples, sizeof *samples, sample_count, file) != sample_count || fclose(file) != 0) {
            fprintf(stderr, "spindle-echo-load: cannot write %s\n", samples_path);
            return 1;
        }
    }
    uint32_t measured_connections = 0;
    for (uint32_t i = 0; i < connections; i++) measured_connections += (uint32_t)all[i].measured;
    printf("connections=%u size=%zu requests=%llu rounds=%llu window_ns=%llu turns=%llu ramp_ns=%llu burst_ns=%llu "
        "measured=%u mismatches=%llu errors=%llu\n", connections, size, (unsigned long long)requests,
        (unsigned long long)rounds, (unsigned long long)duration_ns, (unsigned long long)turns,
        (unsigned long long)ramp_ns, (unsigned long long)burst_ns, measured_connections,
        (unsigned long long)mismatches, (unsigned long long)errors);
    return mismatches == 0 && errors == 0 ? 0 : 1;
}
