// A fake Claude Code for the fan-out benchmark: prints COUNT stream-json assistant lines at
// RATE lines per second (0: as fast as it can write), each text carrying
// T=<CLOCK_MONOTONIC ns> and seq=<n>, then a result line. It waits for GO_FILE to exist
// before the first line, so every viewer is subscribed before the clock starts. At a RATE,
// lines go out BURST at a time (default 1: one write per line, a sleep between).
//
// usage: fake_agent COUNT RATE GO_FILE [PAD_BYTES [BURST]]
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static const char line_head[] =
    "{\"type\":\"assistant\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"T=";
static const char line_tail[] = "\"}]},\"session_id\":\"bench\"}\n";

static size_t put(char *to, const char *text) {
    size_t length = strlen(text);
    memcpy(to, text, length);
    return length;
}

static size_t put_number(char *to, unsigned long long value) {
    char digits[24];
    size_t count = 0;
    do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value);
    for (size_t i = 0; i < count; i++) to[i] = digits[count - 1 - i];
    return count;
}

static void write_all(const char *data, size_t length) {
    while (length > 0) {
        ssize_t written = write(1, data, length);
        if (written <= 0) exit(1);
        data += written;
        length -= (size_t)written;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: fake_agent COUNT RATE GO_FILE [PAD_BYTES [BURST]]\n");
        return 2;
    }
    unsigned long long count = strtoull(argv[1], NULL, 10);
    double rate = atof(argv[2]);
    const char *go = argv[3];
    int pad = argc > 4 ? atoi(argv[4]) : 40;
    unsigned long long burst = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
    if (burst < 1) burst = 1;
    char padding[4096];
    if (pad > (int)sizeof padding - 1) pad = (int)sizeof padding - 1;
    memset(padding, 'x', (size_t)pad);
    padding[pad] = 0;

    while (access(go, F_OK) != 0) usleep(2000);

    static char buffer[1 << 16];
    size_t used = 0;
    unsigned long long start = now_ns();
    for (unsigned long long seq = 1; seq <= count; seq++) {
        if (rate > 0 && (seq - 1) % burst == 0) {
            unsigned long long due = start + (unsigned long long)((double)(seq - 1) * 1e9 / rate);
            unsigned long long now = now_ns();
            if (due > now) {
                if (used) { write_all(buffer, used); used = 0; }
                struct timespec wait = { (time_t)((due - now) / 1000000000ull), (long)((due - now) % 1000000000ull) };
                nanosleep(&wait, NULL);
            }
        }
        // By hand, not snprintf: the load's own CPU is taken from the server on a small host.
        used += put(buffer + used, line_head);
        used += put_number(buffer + used, now_ns());
        used += put(buffer + used, " seq=");
        used += put_number(buffer + used, seq);
        buffer[used++] = ' ';
        memcpy(buffer + used, padding, (size_t)pad);
        used += (size_t)pad;
        used += put(buffer + used, line_tail);
        // Rate-limited lines go out one by one; a flat-out agent fills its pipe in 64 KiB writes.
        if ((rate > 0 && seq % burst == 0) || used > sizeof buffer - 8192) { write_all(buffer, used); used = 0; }
    }
    used += (size_t)snprintf(buffer + used, sizeof buffer - used,
        "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"done\",\"num_turns\":1,\"session_id\":\"bench\"}\n");
    write_all(buffer, used);
    return 0;
}
