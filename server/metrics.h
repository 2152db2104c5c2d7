/* The server's counters for GET /metrics (Prometheus text exposition format 0.0.4): requests by
 * route and status, prompt and generated tokens, queue depth, slots in use, and histograms of
 * time to first token and inter-token latency. Thread-safe (one mutex; updates are rare next
 * to a forward step). */
#ifndef ML_SERVER_METRICS_H
#define ML_SERVER_METRICS_H

#include <stddef.h>

typedef struct ml_metrics ml_metrics;

ml_metrics *ml_metrics_create(void);
void ml_metrics_free(ml_metrics *m);
void ml_metrics_request(ml_metrics *m, const char *route, int status);
void ml_metrics_tokens(ml_metrics *m, long prompt_tokens, long generated_tokens);
void ml_metrics_ttft(ml_metrics *m, double seconds);
void ml_metrics_inter_token(ml_metrics *m, double seconds);
void ml_metrics_gauges(ml_metrics *m, int queue_depth, int slots_in_use, int slots_total);
/* The exposition text, malloc'd and NUL-terminated (NULL when out of memory). */
char *ml_metrics_render(ml_metrics *m, size_t *length);

#endif
