/* kvev_sub: a ZMQ SUB client for KV events, for the integration tests (the system
 * Python has no zmq). Usage: kvev_sub ENDPOINT TOPIC SECONDS
 * Connects, subscribes to TOPIC (a prefix; "" = all), prints "ready", then one JSON line
 * per message until SECONDS pass or stdin closes:
 *   {"topic":..,"seq":N,"ts":..,"dp_rank":N|null,"events":[{"type":..,"block_hashes":[..],
 *    "parent_block_hash":N|null,"token_ids":[..],"block_size":N,"medium":..}]}
 * or {"error":".."} for a message that does not decode. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "sched/kvevents.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_json_str(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_batch(const char *topic, size_t tl, uint64_t seq, const struct kvev_batch *b)
{
    printf("{\"topic\":");
    print_json_str(topic, tl);
    printf(",\"seq\":%llu,\"ts\":%.6f,\"dp_rank\":", (unsigned long long)seq, b->ts);
    if (b->has_dp_rank)
        printf("%lld", (long long)b->dp_rank);
    else
        printf("null");
    printf(",\"events\":[");
    for (size_t i = 0; i < b->n_events; i++) {
        const struct kvev_event *e = &b->events[i];
        printf("%s{\"type\":\"%s\",\"block_hashes\":[", i ? "," : "", kvev_type_name(e->type));
        for (uint32_t k = 0; k < e->n_hashes; k++)
            printf("%s%llu", k ? "," : "", (unsigned long long)e->hashes[k]);
        printf("]");
        if (e->type == KVEV_BLOCK_STORED) {
            printf(",\"parent_block_hash\":");
            if (e->has_parent)
                printf("%llu", (unsigned long long)e->parent);
            else
                printf("null");
            printf(",\"token_ids\":[");
            for (uint32_t k = 0; k < e->n_tokens; k++)
                printf("%s%u", k ? "," : "", e->token_ids[k]);
            printf("],\"block_size\":%u", e->block_size);
        }
        if (e->medium) {
            printf(",\"medium\":");
            print_json_str(e->medium, strlen(e->medium));
        }
        printf("}");
    }
    printf("]}\n");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: kvev_sub ENDPOINT TOPIC SECONDS\n");
        return 2;
    }
    double deadline = now_s() + atof(argv[3]);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    if (zmq_connect(sub, argv[1]) != 0) {
        fprintf(stderr, "kvev_sub: connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, argv[2], strlen(argv[2]));
    printf("ready\n");
    fflush(stdout);
    bool stdin_open = true;
    while (now_s() < deadline) {
        zmq_pollitem_t items[2] = {{sub, 0, ZMQ_POLLIN, 0}, {NULL, 0, POLLIN, 0}};
        int n_items = 1;
        if (stdin_open) {
            items[1].fd = 0;
            n_items = 2;
        }
        int rc = zmq_poll(items, n_items, 100);
        if (rc < 0)
            break;
        if (n_items == 2 && items[1].revents) {
            char tmp[256];
            if (read(0, tmp, sizeof tmp) <= 0)
                break; /* the test is done with us */
        }
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t parts[3];
        int np = 0;
        int more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sub, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (np < 3)
                parts[np++] = m;
            else
                zmq_msg_close(&m);
        }
        if (np != 3) {
            printf("{\"error\":\"expected 3 frames, got %d\"}\n", np);
        } else {
            uint64_t seq = 0;
            struct kvev_batch b;
            char err[160];
            if (!kvev_parse_seq(zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), &seq)) {
                printf("{\"error\":\"sequence frame of %zu bytes\"}\n", zmq_msg_size(&parts[1]));
            } else if (kvev_decode(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), &b, err,
                                   sizeof err) != 0) {
                printf("{\"error\":");
                print_json_str(err, strlen(err));
                printf("}\n");
            } else {
                print_batch(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), seq, &b);
                kvev_batch_free(&b);
            }
        }
        for (int i = 0; i < np; i++)
            zmq_msg_close(&parts[i]);
        fflush(stdout);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}
