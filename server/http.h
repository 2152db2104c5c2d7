/* The HTTP side of `meshllama serve` on libmicrohttpd (docs/DECISIONS.md): routes, limits,
 * authentication, and the answers, streamed (server-sent events) or whole. One thread per
 * connection: a thread parses its request, submits a job to the scheduler and waits for the
 * job's tokens, so a slow client holds only its own thread. */
#ifndef ML_SERVER_HTTP_H
#define ML_SERVER_HTTP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "openai.h"
#include "scheduler.h"

typedef struct {
    const char *host;
    int port;
    const char *api_key;     /* NULL: no authentication */
    size_t max_body;         /* bytes; larger bodies are 413 */
    int timeout_s;           /* an idle connection is closed after this */
    int max_connections;
} ml_http_options;

typedef struct ml_http_server ml_http_server;

/* Starts listening; on failure prints why and returns NULL. */
ml_http_server *ml_http_start(const ml_http_options *opts, ml_api_context *api, ml_scheduler *sched,
                              ml_metrics *metrics);
/* The port actually bound (useful with --port 0). */
int ml_http_port(const ml_http_server *srv);
/* Stop accepting connections; requests in flight go on; new requests on open connections get 503. */
void ml_http_quiesce(ml_http_server *srv);
/* Waits (up to timeout_ms) until every request read so far has been answered completely. */
void ml_http_wait_answered(ml_http_server *srv, int timeout_ms);
/* Closes every connection (waits for their threads) and frees the server. */
void ml_http_stop(ml_http_server *srv);

#endif
