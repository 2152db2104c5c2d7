/* `meshllama serve`: an OpenAI-compatible HTTP server (docs/SERVER.md). The model, its
 * tokenizer and chat template are opened once; the scheduler thread owns the model and runs
 * continuous batching over its KV slots; libmicrohttpd's threads parse, queue and stream. On
 * SIGTERM or SIGINT the server stops accepting, lets the requests in flight finish for up to
 * --drain-timeout seconds, ends the rest with an error answer, and exits 0. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apps/cli_args.h"
#include "apps/commands.h"
#include "apps/model_options.h"
#include "http.h"
#include "metrics.h"
#include "openai.h"
#include "scheduler.h"
#include "sync.h"

enum { OPT_HOST = ML_OPT_FIRST_COMMAND_OPTION, OPT_PORT, OPT_SLOTS, OPT_CTX, OPT_API_KEY, OPT_MAX_QUEUE,
       OPT_PREFILL_CHUNK, OPT_MAX_BODY, OPT_TIMEOUT, OPT_DRAIN_TIMEOUT, OPT_NAME };

static const char serve_usage[] =
    "usage: meshllama serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [--tp N | --mesh RxC] [--slots N]\n"
    "                       [--ctx N] [--api-key KEY] [--max-queue N] [options]\n"
    "An OpenAI-compatible HTTP server with continuous batching (docs/SERVER.md): POST /v1/completions,\n"
    "/v1/chat/completions (stream or not), /tokenize, /detokenize; GET /v1/models, /health, /metrics.\n"
    "      --host ADDR       IPv4 address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)\n"
    "      --port N          TCP port (default 8080; 0 picks a free one, printed at start)\n"
    "      --slots N         sequences generated at once, each in its own KV slot (1..32, default 8)\n"
    "      --ctx N           KV positions per slot: prompt plus answer (same as -c)\n"
    "      --api-key KEY     require Authorization: Bearer KEY (all routes but /health)\n"
    "      --max-queue N     requests waiting for a slot before 503 (default 64)\n"
    "      --prefill-chunk N prompt tokens read per step beside the running answers (default 256)\n"
    "      --max-body BYTES  largest request body (default 4 MiB; larger is 413)\n"
    "      --timeout S       close a connection idle for S seconds (default 60)\n"
    "      --drain-timeout S on SIGTERM, let requests in flight finish for S seconds (default 10)\n"
    "      --name NAME       the model's id in answers and /v1/models (default: the file name)\n"
    ML_MODEL_OPTIONS_HELP;

typedef struct {
    ml_cli_model model;
    ml_http_options http;
    int max_queue, prefill_chunk, drain_timeout_s;
    const char *name;
} serve_options;

static int parse_size(const char *flag, const char *arg, size_t *out) {
    int kib = 0;
    if (ml_cli_parse_int(flag, arg, 1, 1 << 30, &kib) != 0) return -1;
    *out = (size_t)kib;
    return 0;
}

static int serve_option(serve_options *o, int opt, const char *arg) {
    switch (opt) {
    case OPT_HOST: o->http.host = arg; return 0;
    case OPT_PORT: return ml_cli_parse_int("--port", arg, 0, 65535, &o->http.port);
    case OPT_SLOTS: return ml_cli_parse_int("--slots", arg, 1, ML_MAX_BATCH, &o->model.params.max_batch);
    case OPT_CTX: return ml_cli_model_option(&o->model, 'c', arg) == 1 ? 0 : -1;
    case OPT_API_KEY: o->http.api_key = arg; return 0;
    case OPT_MAX_QUEUE: return ml_cli_parse_int("--max-queue", arg, 0, 1 << 20, &o->max_queue);
    case OPT_PREFILL_CHUNK: return ml_cli_parse_int("--prefill-chunk", arg, 1, 1 << 16, &o->prefill_chunk);
    case OPT_MAX_BODY: return parse_size("--max-body", arg, &o->http.max_body);
    case OPT_TIMEOUT: return ml_cli_parse_int("--timeout", arg, 1, 86400, &o->http.timeout_s);
    case OPT_DRAIN_TIMEOUT: return ml_cli_parse_int("--drain-timeout", arg, 0, 86400, &o->drain_timeout_s);
    case OPT_NAME: o->name = arg; return 0;
    default: return ml_cli_model_option(&o->model, opt, arg) == 1 ? 0 : -1; /* 1: taken */
    }
}

static int parse_serve_options(int argc, char **argv, serve_options *o) {
    static const struct option longopts[] = {
        ML_MODEL_LONG_OPTIONS,
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"ctx", required_argument, NULL, OPT_CTX},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
        {"prefill-chunk", required_argument, NULL, OPT_PREFILL_CHUNK},
        {"max-body", required_argument, NULL, OPT_MAX_BODY},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
        {"name", required_argument, NULL, OPT_NAME},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    ml_cli_model_init(&o->model);
    o->model.params.max_batch = 8;
    o->http = (ml_http_options){"127.0.0.1", 8080, NULL, 4u << 20, 60, 256};
    o->max_queue = 64;
    o->prefill_chunk = 256;
    o->drain_timeout_s = 10;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(serve_usage, stdout);
            return 1;
        }
        if (opt == '?' || serve_option(o, opt, optarg) != 0) {
            fputs(serve_usage, stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "meshllama serve: unexpected argument '%s'\n%s", argv[optind], serve_usage);
        return -1;
    }
    o->http.max_connections = o->model.params.max_batch + o->max_queue + 64;
    return 0;
}

/* The model's name in answers: --name, else the checkpoint's file or directory name. */
static void model_name(const serve_options *o, const ml_model_info *info, char *out, size_t size) {
    const char *path = o->name ? o->name : info->path ? info->path : "model";
    size_t n = strlen(path);
    while (!o->name && n > 1 && path[n - 1] == '/') n--;
    const char *base = path;
    for (size_t i = 0; !o->name && i + 1 < n; i++)
        if (path[i] == '/') base = path + i + 1;
    snprintf(out, size, "%.*s", (int)(n - (size_t)(base - path)), base);
}

/* Blocks until SIGTERM or SIGINT (blocked in every thread, so they wait here). */
static int wait_for_signal(const sigset_t *set) {
    int sig = 0;
    while (sigwait(set, &sig) != 0) {
    }
    return sig;
}

static void drain(ml_http_server *http, ml_scheduler *sched, int drain_timeout_s) {
    ml_http_quiesce(http);
    ml_scheduler_close(sched);
    struct timespec start, now, pause = {0, 20 * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int queued, running;
        ml_scheduler_load(sched, &queued, &running);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) * 1e-9;
        if (queued + running == 0) break;
        if (waited >= drain_timeout_s) {
            fprintf(stderr, "meshllama serve: %d requests still running after %d s: ending them\n", queued + running,
                    drain_timeout_s);
            break;
        }
        nanosleep(&pause, NULL);
    }
}

static int serve(const serve_options *o, ml_model *model, ml_tokenizer *tok, const sigset_t *signals) {
    ml_model_info info;
    ml_model_get_info(model, &info);
    char name[256];
    model_name(o, &info, name, sizeof name);
    pthread_mutex_t tmpl_mutex = PTHREAD_MUTEX_INITIALIZER;
    ml_api_context api = {tok, NULL, &tmpl_mutex, -1, info.vocab_size, info.max_seq_len, name};
    if (ml_chat_template_from_tokenizer(tok, NULL, &api.tmpl) != ML_OK) {
        fprintf(stderr, "meshllama serve: no chat template (%s): /v1/chat/completions answers 400\n", ml_last_error());
        api.tmpl = NULL;
    }
    const char *eot = api.tmpl ? ml_chat_template_end_of_turn(api.tmpl) : NULL;
    if (eot && eot[0]) api.end_of_turn = ml_tokenizer_token_id(tok, eot, strlen(eot));
    ml_metrics *metrics = ml_metrics_create();
    ml_scheduler *sched = NULL;
    int status = metrics ? ml_scheduler_start(model, tok, o->prefill_chunk, o->max_queue, metrics, &sched) : ML_ERR_NOMEM;
    ml_http_server *http = status == ML_OK ? ml_http_start(&o->http, &api, sched, metrics) : NULL;
    if (status != ML_OK) fprintf(stderr, "meshllama serve: %s\n", ml_last_error());
    if (http) {
        fprintf(stderr, "meshllama serve: listening on http://%s:%d (model %s, %d slots of %d positions, tp %d, "
                        "%d rank%s, pid %d)\n",
                o->http.host, ml_http_port(http), name, info.max_batch, info.max_seq_len, info.tp, info.n_ranks,
                info.n_ranks > 1 ? "s" : "", (int)getpid());
        int sig = wait_for_signal(signals);
        fprintf(stderr, "meshllama serve: %s: draining (up to %d s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
                o->drain_timeout_s);
        drain(http, sched, o->drain_timeout_s);
    }
    if (sched) ml_scheduler_stop(sched);
    /* the ended requests' answers are written before the connections close */
    if (http) ml_http_wait_answered(http, 5000);
    ml_http_stop(http);
    ml_scheduler_free(sched);
    ml_metrics_free(metrics);
    ml_chat_template_free(api.tmpl);
    if (http) fprintf(stderr, "meshllama serve: stopped\n");
    return http ? 0 : 1;
}

int ml_cmd_serve(int argc, char **argv) {
    serve_options o;
    int parsed = parse_serve_options(argc, argv, &o);
    if (parsed != 0) return parsed > 0 ? 0 : ML_EXIT_USAGE;
    /* before any thread starts, so every thread inherits the mask and the signals come to sigwait */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    ml_model *model = NULL;
    if (ml_cli_model_open(&o.model, &model) != 0) return 1;
    ml_model_info info;
    ml_model_get_info(model, &info);
    ml_tokenizer *tok = NULL;
    if (ml_model_open_tokenizer(model, &tok) != ML_OK) {
        fprintf(stderr, "meshllama serve: %s\n", ml_last_error());
        ml_model_close(model);
        return 1;
    }
    /* under MPI rank 0 serves and the other ranks follow its steps (server/sync.h) */
    int status = info.rank == 0 ? serve(&o, model, tok, &signals)
                                : (ml_sync_follow(model, tok, o.prefill_chunk) == ML_OK ? 0 : 1);
    ml_tokenizer_close(tok);
    ml_model_close(model);
    return status;
}
