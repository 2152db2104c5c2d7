#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { WAIT_SLICE_MS = 50 };

struct ml_http_server {
    struct MHD_Daemon *daemon;
    ml_http_options opts;
    ml_api_context *api;
    ml_scheduler *sched;
    ml_metrics *metrics;
    atomic_int draining;
    atomic_int in_flight; /* requests read and not yet completely answered */
    int port;
};

typedef enum { ROUTE_HEALTH, ROUTE_MODELS, ROUTE_METRICS, ROUTE_COMPLETIONS, ROUTE_CHAT, ROUTE_TOKENIZE,
               ROUTE_DETOKENIZE, N_ROUTES } route_id;

static const struct {
    const char *path;
    const char *method;
} routes[N_ROUTES] = {
    {"/health", "GET"},           {"/v1/models", "GET"},  {"/metrics", "GET"},      {"/v1/completions", "POST"},
    {"/v1/chat/completions", "POST"}, {"/tokenize", "POST"}, {"/detokenize", "POST"},
};

/* What one request has received so far. */
typedef struct {
    route_id route;
    char *body;
    size_t length, capacity;
    int too_large;
    int answered; /* a response was queued on the first call */
} request_state;

static const char *route_name(int route) { return route >= 0 && route < N_ROUTES ? routes[route].path : "other"; }

static enum MHD_Result respond(ml_http_server *srv, struct MHD_Connection *c, int route, int status, char *body,
                               const char *content_type) {
    size_t length = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(length, body ? body : (char *)"", MHD_RESPMEM_MUST_FREE);
    if (!body) {
        MHD_destroy_response(r);
        r = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", content_type);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 405 && route >= 0) MHD_add_response_header(r, "Allow", routes[route].method);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    ml_metrics_request(srv->metrics, route_name(route), status);
    return ok;
}

static enum MHD_Result respond_error(ml_http_server *srv, struct MHD_Connection *c, int route, const ml_api_error *err) {
    return respond(srv, c, route, err->status, ml_api_error_body(err), "application/json");
}

static enum MHD_Result respond_simple_error(ml_http_server *srv, struct MHD_Connection *c, int route, int status,
                                           const char *type, const char *code, const char *message) {
    ml_api_error err;
    ml_api_set_error(&err, status, type, NULL, code, "%s", message);
    return respond_error(srv, c, route, &err);
}

static enum MHD_Result respond_json(ml_http_server *srv, struct MHD_Connection *c, int route, json_t *root) {
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return respond(srv, c, route, text ? 200 : 500, text, "application/json");
}

/* The client closed its end (or the socket failed): its request is cancelled. */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) return 0;
    struct pollfd p = {info->connect_fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Waits up to one slice for the job to change; job->mutex held. */
static void wait_slice(ml_job *job) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&job->changed, &job->mutex, &until);
}

/* ---- streaming (server-sent events) ------------------------------------------------------ */

typedef struct {
    ml_http_server *srv;
    struct MHD_Connection *connection;
    ml_job *job;
    ml_api_options opts;
    int cursor;        /* tokens already sent */
    int sent_role, finished;
    char *out;         /* bytes ready to send */
    size_t out_length, out_sent, out_capacity;
} stream_state;

static int stream_put(stream_state *st, const char *data) {
    size_t n = strlen(data);
    if (st->out_length + n + 9 > st->out_capacity) {
        size_t capacity = (st->out_length + n + 9) * 2;
        char *grown = realloc(st->out, capacity);
        if (!grown) return -1;
        st->out = grown;
        st->out_capacity = capacity;
    }
    st->out_length += (size_t)sprintf(st->out + st->out_length, "data: %s\n\n", data);
    return 0;
}

static void stream_put_owned(stream_state *st, char *data) {
    if (data) stream_put(st, data);
    free(data);
}

/* The final events of a finished job (job->mutex held). */
static void stream_finish(stream_state *st) {
    ml_job *job = st->job;
    if (job->status != ML_OK || job->shutdown) {
        ml_api_error err;
        ml_api_set_error(&err, job->shutdown ? 503 : 500, job->shutdown ? "server_error" : "internal_error", NULL,
                         NULL, "%s", job->error[0] ? job->error : "the generation failed");
        stream_put_owned(st, ml_api_error_body(&err));
    } else {
        stream_put_owned(st, ml_api_chunk(st->srv->api, &st->opts, job, st->cursor, job->n_tokens,
                                          ml_api_finish_reason(job), 0));
        if (st->opts.include_usage) stream_put_owned(st, ml_api_usage_chunk(st->srv->api, &st->opts, job));
    }
    stream_put(st, "[DONE]");
    st->cursor = job->n_tokens;
    st->finished = 1;
}

/* Fills st->out with the next events; 0, or -1 when the client went away. */
static int stream_refill(stream_state *st) {
    ml_job *job = st->job;
    st->out_length = st->out_sent = 0;
    pthread_mutex_lock(&job->mutex);
    if (!st->sent_role && st->opts.kind == ML_API_CHAT) {
        stream_put_owned(st, ml_api_chunk(st->srv->api, &st->opts, job, 0, 0, NULL, 1));
        st->sent_role = 1;
        pthread_mutex_unlock(&job->mutex);
        return 0;
    }
    while (job->state != ML_JOB_DONE && job->n_tokens == st->cursor) {
        if (client_gone(st->connection)) {
            pthread_mutex_unlock(&job->mutex);
            return -1;
        }
        wait_slice(job);
    }
    if (job->state == ML_JOB_DONE) {
        stream_finish(st);
    } else {
        int to = job->n_tokens;
        size_t text = job->text_length - job->tokens[st->cursor].text_begin;
        if (text > 0 || st->opts.logprobs) {
            stream_put_owned(st, ml_api_chunk(st->srv->api, &st->opts, job, st->cursor, to, NULL, 0));
            st->cursor = to;
        } /* else only held text so far (a possible stop string): the reader waits for more */
    }
    pthread_mutex_unlock(&job->mutex);
    return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_state *st = cls;
    (void)pos;
    while (st->out_sent == st->out_length) {
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (stream_refill(st) != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (st->out_sent == st->out_length && !st->finished) {
            /* held text only: wait for the next token rather than spin */
            pthread_mutex_lock(&st->job->mutex);
            int had = st->job->n_tokens;
            while (st->job->state != ML_JOB_DONE && st->job->n_tokens == had && !client_gone(st->connection))
                wait_slice(st->job);
            pthread_mutex_unlock(&st->job->mutex);
        }
    }
    size_t n = st->out_length - st->out_sent;
    if (n > max) n = max;
    memcpy(buf, st->out + st->out_sent, n);
    st->out_sent += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    if (!st->finished) ml_job_cancel(st->job);
    ml_job_release(st->job);
    free(st->out);
    free(st);
}

static enum MHD_Result start_stream(ml_http_server *srv, struct MHD_Connection *c, int route, ml_job *job,
                                    const ml_api_options *opts) {
    stream_state *st = calloc(1, sizeof *st);
    struct MHD_Response *r = st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, st,
                                                                    stream_free)
                                : NULL;
    if (!r) {
        free(st);
        ml_job_cancel(job);
        ml_job_release(job);
        return MHD_NO;
    }
    st->srv = srv;
    st->connection = c;
    st->job = job;
    st->opts = *opts;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    ml_metrics_request(srv->metrics, route_name(route), 200);
    return ok;
}

/* ---- whole answers ------------------------------------------------------------------------ */

static enum MHD_Result finish_whole(ml_http_server *srv, struct MHD_Connection *c, int route, ml_job *job,
                                    const ml_api_options *opts) {
    pthread_mutex_lock(&job->mutex);
    while (job->state != ML_JOB_DONE) {
        if (client_gone(c)) {
            pthread_mutex_unlock(&job->mutex);
            ml_job_cancel(job);
            ml_job_release(job);
            ml_metrics_request(srv->metrics, route_name(route), 499); /* nginx's "client closed request" */
            return MHD_NO;
        }
        wait_slice(job);
    }
    pthread_mutex_unlock(&job->mutex);
    enum MHD_Result ok;
    if (job->shutdown) {
        ok = respond_simple_error(srv, c, route, 503, "server_error", "shutting_down", job->error);
    } else if (job->status != ML_OK) {
        ok = respond_simple_error(srv, c, route, job->status == ML_ERR_ARG ? 400 : 500,
                                  job->status == ML_ERR_ARG ? "invalid_request_error" : "internal_error", NULL,
                                  job->error);
    } else {
        ok = respond(srv, c, route, 200, ml_api_response(srv->api, opts, job), "application/json");
    }
    ml_job_release(job);
    return ok;
}

static enum MHD_Result serve_generation(ml_http_server *srv, struct MHD_Connection *c, request_state *rs) {
    ml_api_kind kind = rs->route == ROUTE_CHAT ? ML_API_CHAT : ML_API_COMPLETIONS;
    ml_job *job = ml_job_create();
    if (!job) return respond_simple_error(srv, c, rs->route, 500, "internal_error", NULL, "out of memory");
    ml_api_options opts;
    ml_api_error err;
    if (ml_api_parse_request(srv->api, kind, rs->body ? rs->body : "", rs->length, job, &opts, &err) != 0) {
        ml_job_release(job);
        return respond_error(srv, c, rs->route, &err);
    }
    job->sampling.stop_strings = (const char *const *)job->stop_strings;
    if (atomic_load(&srv->draining) || ml_scheduler_submit(srv->sched, job) != ML_OK) {
        ml_job_release(job);
        return respond_simple_error(srv, c, rs->route, 503, "server_error", "overloaded",
                                    atomic_load(&srv->draining) ? "the server is shutting down"
                                                                : "the request queue is full; retry later");
    }
    return opts.stream ? start_stream(srv, c, rs->route, job, &opts) : finish_whole(srv, c, rs->route, job, &opts);
}

/* ---- the other routes --------------------------------------------------------------------- */

static enum MHD_Result serve_get(ml_http_server *srv, struct MHD_Connection *c, int route) {
    if (route == ROUTE_HEALTH) {
        int draining = atomic_load(&srv->draining);
        json_t *root = json_pack("{s:s}", "status", draining ? "draining" : "ok");
        char *text = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        return respond(srv, c, route, draining ? 503 : 200, text, "application/json");
    }
    if (route == ROUTE_MODELS) {
        json_t *model = json_pack("{s:s,s:s,s:I,s:s,s:{s:i}}", "id", srv->api->model_name, "object", "model",
                                  "created", (json_int_t)time(NULL), "owned_by", "meshllama", "meta", "n_ctx",
                                  srv->api->max_seq_len);
        return respond_json(srv, c, route, json_pack("{s:s,s:[o]}", "object", "list", "data", model));
    }
    size_t length = 0;
    char *text = ml_metrics_render(srv->metrics, &length);
    ml_metrics_request(srv->metrics, route_name(route), text ? 200 : 500); /* counted before it is rendered next */
    struct MHD_Response *r = MHD_create_response_from_buffer(length, text ? text : (char *)"",
                                                             text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    enum MHD_Result ok = MHD_queue_response(c, text ? 200 : 500, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result serve_post(ml_http_server *srv, struct MHD_Connection *c, request_state *rs) {
    if (rs->too_large) {
        char message[128];
        snprintf(message, sizeof message, "the request body is larger than %zu bytes", srv->opts.max_body);
        return respond_simple_error(srv, c, rs->route, 413, "invalid_request_error", "request_too_large", message);
    }
    if (rs->route == ROUTE_COMPLETIONS || rs->route == ROUTE_CHAT) return serve_generation(srv, c, rs);
    ml_api_error err;
    char *text = rs->route == ROUTE_TOKENIZE ? ml_api_tokenize(srv->api, rs->body ? rs->body : "", rs->length, &err)
                                             : ml_api_detokenize(srv->api, rs->body ? rs->body : "", rs->length, &err);
    if (!text) return respond_error(srv, c, rs->route, &err);
    return respond(srv, c, rs->route, 200, text, "application/json");
}

static int authorised(const ml_http_server *srv, struct MHD_Connection *c) {
    if (!srv->opts.api_key) return 1;
    const char *header = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!header || strncmp(header, "Bearer ", 7) != 0) return 0;
    const char *given = header + 7, *want = srv->opts.api_key;
    size_t n = strlen(want);
    if (strlen(given) != n) return 0;
    unsigned char diff = 0; /* the same time whatever matches */
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(given[i] ^ want[i]);
    return diff == 0;
}

/* The first call of a request: route, method, key and declared size are checked before the body. */
static enum MHD_Result first_call(ml_http_server *srv, struct MHD_Connection *c, const char *url, const char *method,
                                  request_state *rs) {
    int route = -1;
    for (int i = 0; i < N_ROUTES && route < 0; i++)
        if (strcmp(url, routes[i].path) == 0) route = i;
    rs->route = (route_id)route;
    if (route < 0) {
        char message[300];
        snprintf(message, sizeof message, "no route %.200s", url);
        return respond_simple_error(srv, c, -1, 404, "invalid_request_error", "not_found", message);
    }
    if (strcmp(method, routes[route].method) != 0) {
        char message[300];
        snprintf(message, sizeof message, "%s takes %s, not %.20s", routes[route].path, routes[route].method, method);
        return respond_simple_error(srv, c, route, 405, "invalid_request_error", "method_not_allowed", message);
    }
    if (route != ROUTE_HEALTH && !authorised(srv, c))
        return respond_simple_error(srv, c, route, 401, "invalid_request_error", "invalid_api_key",
                                    "a valid API key is required: Authorization: Bearer KEY");
    const char *declared = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (declared && strtoull(declared, NULL, 10) > srv->opts.max_body) {
        rs->too_large = 1;
        return serve_post(srv, c, rs);
    }
    if (strcmp(method, "GET") == 0) return serve_get(srv, c, route);
    rs->answered = 0;
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    ml_http_server *srv = cls;
    (void)version;
    request_state *rs = *con_cls;
    if (!rs) {
        rs = calloc(1, sizeof *rs);
        if (!rs) return MHD_NO;
        *con_cls = rs;
        atomic_fetch_add(&srv->in_flight, 1);
        rs->answered = 1; /* unless first_call waits for the body */
        return first_call(srv, c, url, method, rs);
    }
    if (rs->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rs->too_large || rs->length + n > srv->opts.max_body) {
            rs->too_large = 1;
            return MHD_YES;
        }
        if (rs->length + n + 1 > rs->capacity) {
            size_t capacity = (rs->length + n + 1) * 2;
            if (capacity > srv->opts.max_body + 1) capacity = srv->opts.max_body + 1;
            char *grown = realloc(rs->body, capacity);
            if (!grown) return MHD_NO;
            rs->body = grown;
            rs->capacity = capacity;
        }
        memcpy(rs->body + rs->length, upload_data, n);
        rs->length += n;
        rs->body[rs->length] = '\0';
        return MHD_YES;
    }
    return serve_post(srv, c, rs);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
    ml_http_server *srv = cls;
    (void)c;
    (void)code;
    request_state *rs = *con_cls;
    if (!rs) return;
    atomic_fetch_sub(&srv->in_flight, 1);
    free(rs->body);
    free(rs);
    *con_cls = NULL;
}

ml_http_server *ml_http_start(const ml_http_options *opts, ml_api_context *api, ml_scheduler *sched,
                              ml_metrics *metrics) {
    ml_http_server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->opts = *opts;
    srv->api = api;
    srv->sched = sched;
    srv->metrics = metrics;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opts->port);
    if (inet_pton(AF_INET, opts->host, &addr.sin_addr) != 1) {
        fprintf(stderr, "meshllama serve: --host %s: expected an IPv4 address such as 127.0.0.1 or 0.0.0.0\n",
                opts->host);
        free(srv);
        return NULL;
    }
    /* no MHD_USE_ERROR_LOG: its only messages are clients that went away, which we count */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
    srv->daemon = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, handle, srv, MHD_OPTION_SOCK_ADDR, &addr,
                                   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->timeout_s,
                                   MHD_OPTION_CONNECTION_LIMIT, (unsigned)opts->max_connections,
                                   MHD_OPTION_NOTIFY_COMPLETED, completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        fprintf(stderr, "meshllama serve: cannot listen on %s:%d (in use, or not allowed)\n", opts->host, opts->port);
        free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : opts->port;
    return srv;
}

int ml_http_port(const ml_http_server *srv) { return srv->port; }

void ml_http_quiesce(ml_http_server *srv) {
    atomic_store(&srv->draining, 1);
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void ml_http_wait_answered(ml_http_server *srv, int timeout_ms) {
    struct timespec pause = {0, 10 * 1000000L};
    for (int waited = 0; waited < timeout_ms && atomic_load(&srv->in_flight) > 0; waited += 10) nanosleep(&pause, NULL);
}

void ml_http_stop(ml_http_server *srv) {
    if (!srv) return;
    MHD_stop_daemon(srv->daemon);
    free(srv);
}
