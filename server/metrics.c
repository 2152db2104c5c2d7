#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_SERIES = 64, N_BUCKETS = 14 };

/* seconds; Prometheus histograms are cumulative, "+Inf" is the count */
static const double buckets[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                          0.5,   1.0,  2.5,   5.0,  10.0,  30.0, 60.0};

typedef struct {
    unsigned long counts[N_BUCKETS];
    unsigned long count;
    double sum;
} histogram;

typedef struct {
    char route[48];
    int status;
    unsigned long count;
} request_series;

struct ml_metrics {
    pthread_mutex_t mutex;
    request_series requests[MAX_SERIES];
    int n_requests;
    unsigned long prompt_tokens, generated_tokens;
    int queue_depth, slots_in_use, slots_total;
    histogram ttft, inter_token;
};

ml_metrics *ml_metrics_create(void) {
    ml_metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mutex, NULL);
    return m;
}

void ml_metrics_free(ml_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mutex);
    free(m);
}

void ml_metrics_request(ml_metrics *m, const char *route, int status) {
    pthread_mutex_lock(&m->mutex);
    int i = 0;
    while (i < m->n_requests && (m->requests[i].status != status || strcmp(m->requests[i].route, route) != 0)) i++;
    if (i == m->n_requests && i < MAX_SERIES) {
        snprintf(m->requests[i].route, sizeof m->requests[i].route, "%s", route);
        m->requests[i].status = status;
        m->n_requests++;
    }
    if (i < MAX_SERIES) m->requests[i].count++;
    pthread_mutex_unlock(&m->mutex);
}

void ml_metrics_tokens(ml_metrics *m, long prompt_tokens, long generated_tokens) {
    pthread_mutex_lock(&m->mutex);
    m->prompt_tokens += (unsigned long)prompt_tokens;
    m->generated_tokens += (unsigned long)generated_tokens;
    pthread_mutex_unlock(&m->mutex);
}

static void observe(ml_metrics *m, histogram *h, double seconds) {
    pthread_mutex_lock(&m->mutex);
    for (int b = 0; b < N_BUCKETS; b++)
        if (seconds <= buckets[b]) h->counts[b]++;
    h->count++;
    h->sum += seconds;
    pthread_mutex_unlock(&m->mutex);
}

void ml_metrics_ttft(ml_metrics *m, double seconds) { observe(m, &m->ttft, seconds); }
void ml_metrics_inter_token(ml_metrics *m, double seconds) { observe(m, &m->inter_token, seconds); }

void ml_metrics_gauges(ml_metrics *m, int queue_depth, int slots_in_use, int slots_total) {
    pthread_mutex_lock(&m->mutex);
    m->queue_depth = queue_depth;
    m->slots_in_use = slots_in_use;
    m->slots_total = slots_total;
    pthread_mutex_unlock(&m->mutex);
}

typedef struct {
    char *text;
    size_t length, capacity;
    int failed;
} text_buffer;

static void put(text_buffer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_buffer *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->text + b->length, b->capacity - b->length, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->length + (size_t)n < b->capacity) {
            b->length += (size_t)n;
            return;
        }
        size_t capacity = (b->capacity + (size_t)n + 1) * 2;
        char *grown = realloc(b->text, capacity);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->text = grown;
        b->capacity = capacity;
    }
}

static void put_histogram(text_buffer *b, const char *name, const char *help, const histogram *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < N_BUCKETS; i++) put(b, "%s_bucket{le=\"%g\"} %lu\n", name, buckets[i], h->counts[i]);
    put(b, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", name, h->count, name, h->sum, name, h->count);
}

char *ml_metrics_render(ml_metrics *m, size_t *length) {
    text_buffer b = {malloc(4096), 0, 4096, 0};
    if (!b.text) return NULL;
    b.text[0] = '\0';
    pthread_mutex_lock(&m->mutex);
    put(&b, "# HELP meshllama_requests_total HTTP requests answered, by route and status code.\n"
            "# TYPE meshllama_requests_total counter\n");
    for (int i = 0; i < m->n_requests; i++)
        put(&b, "meshllama_requests_total{route=\"%s\",code=\"%d\"} %lu\n", m->requests[i].route,
            m->requests[i].status, m->requests[i].count);
    put(&b, "# HELP meshllama_prompt_tokens_total Prompt tokens of admitted requests.\n"
            "# TYPE meshllama_prompt_tokens_total counter\nmeshllama_prompt_tokens_total %lu\n",
        m->prompt_tokens);
    put(&b, "# HELP meshllama_generation_tokens_total Generated tokens.\n"
            "# TYPE meshllama_generation_tokens_total counter\nmeshllama_generation_tokens_total %lu\n",
        m->generated_tokens);
    put(&b, "# HELP meshllama_queue_depth Requests waiting for a slot.\n"
            "# TYPE meshllama_queue_depth gauge\nmeshllama_queue_depth %d\n", m->queue_depth);
    put(&b, "# HELP meshllama_slots_in_use KV slots held by running sequences.\n"
            "# TYPE meshllama_slots_in_use gauge\nmeshllama_slots_in_use %d\n", m->slots_in_use);
    put(&b, "# HELP meshllama_slots_total KV slots of the model.\n"
            "# TYPE meshllama_slots_total gauge\nmeshllama_slots_total %d\n", m->slots_total);
    put_histogram(&b, "meshllama_time_to_first_token_seconds",
                  "From a request's admission to the queue to its first generated token.", &m->ttft);
    put_histogram(&b, "meshllama_inter_token_latency_seconds", "Between consecutive tokens of a sequence.",
                  &m->inter_token);
    pthread_mutex_unlock(&m->mutex);
    if (b.failed) {
        free(b.text);
        return NULL;
    }
    *length = b.length;
    return b.text;
}
