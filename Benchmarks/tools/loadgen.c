// The fan-out benchmark's load generator: N WebSocket viewers of one job on 127.0.0.1, one
// thread, epoll. Each text frame's "T=<CLOCK_MONOTONIC ns>" gives the latency from the
// agent's write to this read, "seq=<n>" finds gaps and duplicates per viewer. It inflates
// permessage-deflate frames when the server agreed to compress. It prints one JSON line,
// including its own CPU time, so a run can show the load generator was not the bottleneck.
//
// usage: loadgen --port P --path PATH --token T --conns N [--deflate] [--stall K]
//                [--idle SECONDS] [--timeout SECONDS] [--ready-file F] [--expect COUNT]
//                [--since-random MAX] [--paths-file F] [--reconnect]
//
// --paths-file F: viewer i follows the i-th path of F (one per line, taken round), instead
// of --path for all.
// --reconnect: a viewer whose connection ends before its job did connects again (every 10 ms
// until the server is back) and resumes from the last event it got (`&since=N`), as the
// dashboard and `agentgate tail --follow` do across a server restart. It reports when the
// last viewer got a frame again, and when the last one was live again (a frame less than
// 100 ms old), both on CLOCK_MONOTONIC.
//
// --since-random MAX: each viewer resumes the job at a random event cursor below MAX
// (`&since=N` on PATH), as late viewers of a finished job do; it then counts from the first
// line it gets, and is complete when it got every line from there to COUNT once, in order.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

enum phase { CONNECTING, HANDSHAKE, OPEN, RECONNECTING, DONE };

struct conn {
    int fd;
    enum phase phase;
    int stalled;
    int deflate;
    z_stream inflater;
    unsigned char *in;
    size_t in_len, in_cap;
    unsigned char *message;
    size_t message_len, message_cap;
    int message_compressed;
    unsigned long long next_seq;
    unsigned long long frames;
    /// The first line's seq (--since-random: the viewer starts mid-job), and its cursor.
    unsigned long long first_seq;
    unsigned long long since;
    /// --paths-file: this viewer's path.
    const char *path;
    /// --reconnect: the last event seq it got, how often it connected again, when it was
    /// cut off, when it got a frame again and when one less than 100 ms old.
    unsigned long long event_seq;
    int reconnects;
    unsigned long long down_ns, back_ns, live_ns, retry_ns, open_ns;
};

static int port, conns_wanted, stall_count, want_deflate, idle_seconds, timeout_seconds = 120;
static const char *path = "/ws", *token = "", *ready_file;
static unsigned long long expect_count, since_random_max;
static int want_reconnect;
static char **paths;
static int path_count;
static struct conn *conns;
static int epfd;
static uint32_t *latencies;
static size_t latency_len, latency_cap;
static unsigned long long frames_total, gaps, dups, first_frame_ns, last_frame_ns, failed, done_count;
static unsigned char *scratch;
static size_t scratch_cap;

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void grow(unsigned char **buffer, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t next = *cap ? *cap : 4096;
    while (next < need) next *= 2;
    *buffer = realloc(*buffer, next);
    *cap = next;
}

static void finish(struct conn *c) {
    if (c->phase == DONE) return;
    c->phase = DONE;
    done_count++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

static void send_all(int fd, const void *data, size_t length) {
    const char *p = data;
    while (length > 0) {
        ssize_t n = send(fd, p, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) { usleep(100); continue; }
        if (n <= 0) return;
        p += n;
        length -= (size_t)n;
    }
}

static void send_control(struct conn *c, int opcode, const unsigned char *payload, size_t length) {
    unsigned char frame[6 + 125];
    if (length > 125) length = 125;
    frame[0] = 0x80 | (unsigned char)opcode;
    frame[1] = 0x80 | (unsigned char)length;
    memset(frame + 2, 0, 4);  // a zero masking key: masked, and the payload unchanged
    memcpy(frame + 6, payload, length);
    send_all(c->fd, frame, 6 + length);
}

/// Where `key` first occurs in data[from..<length]: memchr for its first byte, then a compare
/// (glibc's memmem sets up a two-way search per call, which cost more than the rest of the
/// load generator together at 500,000 frames a second).
static const unsigned char *find_key(const unsigned char *data, size_t from, size_t length, const char *key, size_t key_length) {
    while (from + key_length <= length) {
        const unsigned char *hit = memchr(data + from, key[0], length - from - key_length + 1);
        if (!hit) return NULL;
        if (!memcmp(hit + 1, key + 1, key_length - 1)) return hit;
        from = (size_t)(hit - data) + 1;
    }
    return NULL;
}

/// The number after the first `key` followed by a digit, searching from `*from`; on
/// success `*from` moves past it (the load generator must stay cheap per frame).
static unsigned long long number_after(const unsigned char *data, size_t length, const char *key, size_t key_length, size_t *from, int *found) {
    *found = 0;
    while (*from < length) {
        const unsigned char *hit = find_key(data, *from, length, key, key_length);
        if (!hit) return 0;
        size_t i = (size_t)(hit - data) + key_length;
        if (i < length && data[i] >= '0' && data[i] <= '9') {
            unsigned long long value = 0;
            while (i < length && data[i] >= '0' && data[i] <= '9') value = value * 10 + (data[i++] - '0');
            *found = 1;
            *from = i;
            return value;
        }
        *from = i;
    }
    return 0;
}

/// When the bytes being parsed were received (one clock read per recv, not per frame).
static unsigned long long received_ns;
static void drop(struct conn *c);

static void on_message(struct conn *c, const unsigned char *data, size_t length) {
    unsigned long long now = received_ns;
    int has_time, has_seq = 0;
    size_t position = 0;
    if (want_reconnect) {
        int has_event_seq;
        size_t at = 0;
        unsigned long long event_seq = number_after(data, length < 200 ? length : 200, "\"seq\":", 6, &at, &has_event_seq);
        if (has_event_seq) c->event_seq = event_seq;
    }
    unsigned long long stamp = number_after(data, length, "T=", 2, &position, &has_time);
    unsigned long long seq = has_time ? number_after(data, length, "seq=", 4, &position, &has_seq) : 0;
    if (has_time && has_seq) {
        c->frames++;
        frames_total++;
        if (!first_frame_ns) first_frame_ns = now;
        last_frame_ns = now;
        if (latency_len == latency_cap) {
            latency_cap = latency_cap ? latency_cap * 2 : 1 << 20;
            latencies = realloc(latencies, latency_cap * sizeof *latencies);
        }
        unsigned long long micros = now > stamp ? (now - stamp) / 1000 : 0;
        if (c->reconnects && !c->back_ns) c->back_ns = now;
        if (c->reconnects && !c->live_ns && micros < 100000) c->live_ns = now;
        latencies[latency_len++] = micros > 0xffffffffull ? 0xffffffffu : (uint32_t)micros;
        if (!c->first_seq) {
            c->first_seq = seq;
            if (since_random_max) c->next_seq = seq;  // starts mid-job: nothing before is missing
        }
        if (seq > c->next_seq) gaps += seq - c->next_seq;
        if (seq < c->next_seq) dups++;
        if (seq >= c->next_seq) c->next_seq = seq + 1;
    }
    else if (memmem(data, length, "job:completed", 13)) finish(c);  // the end carries no stamp
}

static int inflate_message(struct conn *c, const unsigned char *data, size_t length, size_t *out_length) {
    static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
    grow(&scratch, &scratch_cap, length * 8 + 4096);
    size_t produced = 0;
    for (int part = 0; part < 2; part++) {
        c->inflater.next_in = (unsigned char *)(part == 0 ? data : tail);
        c->inflater.avail_in = (uInt)(part == 0 ? length : 4);
        do {
            if (scratch_cap - produced < 4096) grow(&scratch, &scratch_cap, scratch_cap * 2);
            c->inflater.next_out = scratch + produced;
            c->inflater.avail_out = (uInt)(scratch_cap - produced);
            int rc = inflate(&c->inflater, Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_BUF_ERROR) return -1;
            produced = scratch_cap - c->inflater.avail_out;
        } while (c->inflater.avail_in > 0 || c->inflater.avail_out == 0);
    }
    *out_length = produced;
    return 0;
}

static void parse_frames(struct conn *c) {
    size_t offset = 0;
    while (c->in_len - offset >= 2) {
        unsigned char *p = c->in + offset;
        int fin = p[0] & 0x80, rsv1 = p[0] & 0x40, opcode = p[0] & 0x0f;
        size_t header = 2;
        unsigned long long length = p[1] & 0x7f;
        if (length == 126) {
            if (c->in_len - offset < 4) break;
            length = ((unsigned long long)p[2] << 8) | p[3];
            header = 4;
        } else if (length == 127) {
            if (c->in_len - offset < 10) break;
            length = 0;
            for (int i = 0; i < 8; i++) length = (length << 8) | p[2 + i];
            header = 10;
        }
        if (c->in_len - offset < header + length) break;
        unsigned char *payload = p + header;
        if (opcode == 8) {
            if (want_reconnect) drop(c);
            else finish(c);
            return;
        } else if (opcode == 9) {
            send_control(c, 10, payload, (size_t)length);
        } else if (opcode == 1 || opcode == 2 || opcode == 0) {
            if (opcode != 0) { c->message_len = 0; c->message_compressed = rsv1 != 0; }
            grow(&c->message, &c->message_cap, c->message_len + length);
            memcpy(c->message + c->message_len, payload, length);
            c->message_len += length;
            if (fin) {
                if (c->message_compressed) {
                    size_t produced;
                    if (inflate_message(c, c->message, c->message_len, &produced) == 0) on_message(c, scratch, produced);
                    else { failed++; finish(c); return; }
                } else {
                    on_message(c, c->message, c->message_len);
                }
                c->message_len = 0;
            }
        }
        offset += header + length;
        if (c->phase == DONE) return;
    }
    memmove(c->in, c->in + offset, c->in_len - offset);
    c->in_len -= offset;
}

static void start_handshake(struct conn *c) {
    char request[2048], target[1024];
    if (since_random_max || c->reconnects) snprintf(target, sizeof target, "%s&since=%llu", c->path, c->since);
    else snprintf(target, sizeof target, "%s", c->path);
    int length = snprintf(request, sizeof request,
        "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Authorization: Bearer %s\r\n%s\r\n",
        target, port, token, want_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
    send_all(c->fd, request, (size_t)length);
    c->phase = HANDSHAKE;
}

/// --reconnect: the connection ended before the job did; connect again soon.
static void drop(struct conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->deflate) inflateEnd(&c->inflater);
    c->deflate = 0;
    c->in_len = 0;
    c->message_len = 0;
    c->phase = RECONNECTING;
    if (!c->down_ns) c->down_ns = now_ns();
    c->retry_ns = now_ns();
}

static struct sockaddr_in server_address;

/// A non-blocking, TCP_NODELAY connection for viewer `index`, watched by epoll; -1 when the
/// server refused it.
static int connect_viewer(struct conn *c, int index) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&server_address, sizeof server_address) != 0) {
        if (c->fd >= 0) close(c->fd);
        c->fd = -1;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event event = { .events = EPOLLIN, .data.u32 = (uint32_t)index };
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &event);
    return 0;
}

/// Connects the viewers waiting to reconnect (a refused connect tries again 10 ms later);
/// how many still wait.
static int retry_reconnects(void) {
    int waiting = 0;
    unsigned long long now = now_ns();
    for (int i = 0; i < conns_wanted; i++) {
        struct conn *c = &conns[i];
        if (c->phase != RECONNECTING) continue;
        if (now < c->retry_ns) { waiting++; continue; }
        if (connect_viewer(c, i) != 0) {
            c->retry_ns = now + 10000000ull;
            waiting++;
            continue;
        }
        c->since = c->event_seq;
        c->reconnects++;
        c->back_ns = c->live_ns = c->open_ns = 0;
        start_handshake(c);
    }
    return waiting;
}

static void on_readable(struct conn *c) {
    for (;;) {
        grow(&c->in, &c->in_cap, c->in_len + 65536);
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            if (want_reconnect) { drop(c); return; }
            if (c->phase != OPEN) failed++;
            finish(c);
            return;
        }
        c->in_len += (size_t)n;
        received_ns = now_ns();
        if (c->phase == HANDSHAKE) {
            unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
            if (!end) continue;
            if (c->in_len < 12 || memcmp(c->in + 9, "101", 3) != 0) {
                if (want_reconnect && c->reconnects) { drop(c); return; }  // not ready yet: again
                failed++;
                finish(c);
                return;
            }
            c->deflate = memmem(c->in, (size_t)(end - c->in), "permessage-deflate", 18) != NULL;
            if (c->deflate) inflateInit2(&c->inflater, -15);
            size_t head = (size_t)(end - c->in) + 4;
            memmove(c->in, c->in + head, c->in_len - head);
            c->in_len -= head;
            c->phase = OPEN;
            if (c->reconnects && !c->open_ns) c->open_ns = received_ns;
            if (c->stalled) {
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);  // never read again
                return;
            }
        }
        if (c->phase == OPEN) parse_frames(c);
        if (c->phase == DONE) return;
    }
}

static int compare_u64(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

/// Sorts the latencies in two 16-bit radix passes: qsort of millions of them took longer
/// than a replay it measured.
static void sort_latencies(uint32_t *values, size_t count) {
    uint32_t *scratch_values = malloc((count ? count : 1) * sizeof *values);
    size_t *counts = malloc(65536 * sizeof *counts);
    uint32_t *from = values, *to = scratch_values;
    for (int shift = 0; shift < 32; shift += 16) {
        memset(counts, 0, 65536 * sizeof *counts);
        for (size_t i = 0; i < count; i++) counts[(from[i] >> shift) & 0xffff]++;
        size_t total = 0;
        for (size_t b = 0; b < 65536; b++) { size_t here = counts[b]; counts[b] = total; total += here; }
        for (size_t i = 0; i < count; i++) to[counts[(from[i] >> shift) & 0xffff]++] = from[i];
        uint32_t *swap = from; from = to; to = swap;
    }
    // Two passes: the sorted values are back in `values`.
    free(scratch_values);
    free(counts);
}

int main(int argc, char **argv) {
    srandom((unsigned)getpid() ^ (unsigned)time(NULL));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--path")) path = argv[++i];
        else if (!strcmp(argv[i], "--token")) token = argv[++i];
        else if (!strcmp(argv[i], "--conns")) conns_wanted = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stall")) stall_count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--deflate")) want_deflate = 1;
        else if (!strcmp(argv[i], "--idle")) idle_seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timeout")) timeout_seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ready-file")) ready_file = argv[++i];
        else if (!strcmp(argv[i], "--expect")) expect_count = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--since-random")) since_random_max = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reconnect")) want_reconnect = 1;
        else if (!strcmp(argv[i], "--paths-file")) {
            FILE *file = fopen(argv[++i], "r");
            char line[1024];
            while (file && fgets(line, sizeof line, file)) {
                line[strcspn(line, "\n")] = 0;
                if (!line[0]) continue;
                paths = realloc(paths, (size_t)(path_count + 1) * sizeof *paths);
                paths[path_count++] = strdup(line);
            }
            if (file) fclose(file);
        }
    }
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)conns_wanted, sizeof *conns);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server_address = address;

    // Connect in waves, so the server's accept backlog never overflows.
    int opened = 0;
    struct epoll_event events[1024];
    unsigned long long deadline = now_ns() + (unsigned long long)timeout_seconds * 1000000000ull;
    while (opened < conns_wanted || 1) {
        int in_flight = 0;
        for (int i = 0; i < opened; i++) in_flight += conns[i].phase == HANDSHAKE;
        while (opened < conns_wanted && in_flight < 256) {
            struct conn *c = &conns[opened];
            c->stalled = opened < stall_count;
            c->next_seq = 1;
            c->path = path_count ? paths[opened % path_count] : path;
            if (since_random_max) c->since = ((unsigned long long)random() << 31 ^ (unsigned long long)random()) % since_random_max;
            if (connect_viewer(c, opened) != 0) {
                failed++;
                c->phase = DONE;
                done_count++;
                opened++;
                continue;
            }
            start_handshake(c);
            opened++;
            in_flight++;
        }
        int handshaking = 0;
        for (int i = 0; i < opened; i++) handshaking += conns[i].phase == HANDSHAKE;
        if (opened == conns_wanted && handshaking == 0) break;
        int count = epoll_wait(epfd, events, 1024, 100);
        for (int i = 0; i < count; i++) on_readable(&conns[events[i].data.u32]);
        if (now_ns() > deadline) break;
    }
    if (ready_file) {
        FILE *ready = fopen(ready_file, "w");
        if (ready) fclose(ready);
    }
    unsigned long long idle_until = idle_seconds ? now_ns() + (unsigned long long)idle_seconds * 1000000000ull : 0;
    unsigned long long wanted_done = (unsigned long long)(conns_wanted - stall_count);
    while (now_ns() < deadline) {
        if (idle_until) {
            if (now_ns() >= idle_until) break;
        } else {
            unsigned long long active_done = 0;
            for (int i = stall_count; i < conns_wanted; i++) active_done += conns[i].phase == DONE;
            if (active_done >= wanted_done) break;
        }
        int waiting = want_reconnect ? retry_reconnects() : 0;
        int count = epoll_wait(epfd, events, 1024, waiting ? 2 : 50);
        for (int i = 0; i < count; i++) on_readable(&conns[events[i].data.u32]);
    }
    int complete = 0;
    for (int i = stall_count; i < conns_wanted; i++) {
        unsigned long long wanted = since_random_max && conns[i].first_seq ? expect_count - conns[i].first_seq + 1 : expect_count;
        if (expect_count && conns[i].phase == DONE && conns[i].frames == wanted && conns[i].next_seq == expect_count + 1) complete++;
    }
    sort_latencies(latencies, latency_len);
    uint32_t p50 = latency_len ? latencies[latency_len / 2] : 0;
    uint32_t p99 = latency_len ? latencies[(size_t)((double)latency_len * 0.99)] : 0;
    uint32_t max = latency_len ? latencies[latency_len - 1] : 0;
    double seconds = last_frame_ns > first_frame_ns ? (double)(last_frame_ns - first_frame_ns) / 1e9 : 0;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
    int deflated = 0;
    for (int i = 0; i < conns_wanted; i++) deflated += conns[i].deflate;
    unsigned long long down_first = 0, back_last = 0, live_last = 0;
    int reconnects = 0, viewers_back = 0, viewers_live = 0;
    for (int i = 0; i < conns_wanted; i++) {
        struct conn *c = &conns[i];
        reconnects += c->reconnects;
        if (c->down_ns && (!down_first || c->down_ns < down_first)) down_first = c->down_ns;
        if (c->back_ns) { viewers_back++; if (c->back_ns > back_last) back_last = c->back_ns; }
        if (c->live_ns) { viewers_live++; if (c->live_ns > live_last) live_last = c->live_ns; }
    }
    if (want_reconnect) {
        // Medians too: when half the viewers were open again, getting frames, live.
        unsigned long long *times = calloc((size_t)conns_wanted + 1, sizeof *times);
        unsigned long long medians[3] = {0, 0, 0};
        for (int kind = 0; kind < 3; kind++) {
            int n = 0;
            for (int i = 0; i < conns_wanted; i++) {
                unsigned long long t = kind == 0 ? conns[i].open_ns : kind == 1 ? conns[i].back_ns : conns[i].live_ns;
                if (t) times[n++] = t;
            }
            qsort(times, (size_t)n, sizeof *times, compare_u64);
            medians[kind] = n ? times[n / 2] : 0;
        }
        free(times);
        printf("{\"reconnects\":%d,\"viewers_back\":%d,\"viewers_live\":%d,\"down_first_ns\":%llu,\"back_last_ns\":%llu,\"live_last_ns\":%llu,"
               "\"open_p50_ns\":%llu,\"back_p50_ns\":%llu,\"live_p50_ns\":%llu}\n",
               reconnects, viewers_back, viewers_live, down_first, back_last, live_last, medians[0], medians[1], medians[2]);
    }
    printf("{\"conns\":%d,\"frames\":%llu,\"seconds\":%.3f,\"frames_per_second\":%.0f,\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u,"
           "\"gaps\":%llu,\"dups\":%llu,\"failed\":%llu,\"complete_viewers\":%d,\"deflate_viewers\":%d,\"loadgen_cpu_s\":%.3f}\n",
        conns_wanted, frames_total, seconds, seconds > 0 ? (double)frames_total / seconds : 0, p50, p99, max, gaps, dups, failed,
        complete, deflated, cpu);
    return 0;
}
