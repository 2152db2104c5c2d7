/* Token ids identical to Hugging Face tokenizers / tiktoken for every string of the corpus
 * (tests/fixtures/tokenizer, tools/make_tokenizer_fixtures.py), for each tokenizer and each way of
 * loading it, in both modes (plain; BOS + special tokens parsed). Also: decode(encode(s)) == s for
 * every string (valid UTF-8 or not: every byte has a token), streaming decode == one-shot decode,
 * and the same results from 4 threads sharing one tokenizer. Qwen2's pre-tokenizer: a vocabulary
 * trained under it (tools/make_qwen2_tokenizer_fixtures.py) as tokenizer.json and as a GGUF with
 * tokenizer.ggml.pre = qwen2. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_tokenizer_fixtures.h"
#include "test_util.h"
#include "meshllama.h"
#include "tokenizer/unicode_nfc.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Every byte of s has a token (HF drops bytes a vocabulary lacks: SmolLM2 has no token for the
 * bytes that never occur in UTF-8, 0xC0, 0xC1, 0xF5..0xFF). */
static int all_bytes_known(const ml_tokenizer *tok, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ml_tokenizer_token_id(tok, (const char *)s + i, 1) < 0) return 0;
    return 1;
}

/* decode(encode(s)) == s for valid UTF-8 (and for any bytes the vocabulary covers; NFC(s) for a
 * tokenizer that normalises), and streaming the ids gives the same bytes as one-shot decoding. */
static void check_roundtrip(const char *name, const ml_tokenizer *tok, const tf_corpus *c, int nfc) {
    size_t bad_roundtrip = 0, bad_stream = 0, skipped = 0;
    ml_stream_decoder *dec = NULL;
    CHECK(ml_stream_decoder_create(tok, 0, &dec) == ML_OK, "%s", ml_last_error());
    char *streamed = malloc(1 << 20);
    for (size_t i = 0; i < c->n && dec; i++) {
        int32_t *ids;
        size_t n;
        char *text;
        size_t length;
        if (ml_tokenize(tok, (const char *)c->data[i], c->length[i], ML_TOKENIZE_PARSE_SPECIAL, &ids, &n) != ML_OK) {
            bad_roundtrip++;
            continue;
        }
        int must_roundtrip = tf_utf8_valid(c->data[i], c->length[i]) || all_bytes_known(tok, c->data[i], c->length[i]);
        if (ml_detokenize(tok, ids, n, 0, &text, &length) != ML_OK) {
            bad_roundtrip++;
            free(ids);
            continue;
        }
        const uint8_t *want = c->data[i];
        size_t want_length = c->length[i];
        uint8_t *normal = NULL;
        if (nfc && ml_nfc(c->data[i], c->length[i], &normal, &want_length) == ML_OK && normal) want = normal;
        if (!must_roundtrip) {
            skipped++;
        } else if (length != want_length || memcmp(text, want, length) != 0) {
            if (bad_roundtrip++ < 3) {
                fprintf(stderr, "FAIL %s: decode(encode(s)) != s for string %zu \"", name, i);
                tf_print_escaped(stderr, c->data[i], c->length[i], 60);
                fprintf(stderr, "\"\n");
            }
        }
        /* Streaming: for valid UTF-8 input every piece released must be whole characters. */
        int valid_input = tf_utf8_valid(c->data[i], c->length[i]);
        size_t used = 0;
        int split_char = 0;
        for (size_t k = 0; k < n; k++) {
            const char *piece;
            size_t piece_length;
            if (ml_stream_decoder_push(dec, ids[k], &piece, &piece_length) != ML_OK) break;
            if (valid_input && !tf_utf8_valid((const uint8_t *)piece, piece_length)) split_char = 1;
            memcpy(streamed + used, piece, piece_length);
            used += piece_length;
        }
        const char *rest;
        size_t rest_length;
        ml_stream_decoder_finish(dec, &rest, &rest_length);
        memcpy(streamed + used, rest, rest_length);
        used += rest_length;
        if (used != length || memcmp(streamed, text, length) != 0 || split_char) bad_stream++;
        free(normal);
        free(text);
        free(ids);
    }
    ml_test_checks += 2;
    if (bad_roundtrip) ml_test_failures++;
    if (bad_stream) ml_test_failures++;
    CHECK(bad_stream == 0, "%s: streaming differs from one-shot decode for %zu strings", name, bad_stream);
    printf("  %-34s roundtrip: %zu/%zu (%zu with bytes the vocabulary lacks not required), streaming == one-shot: "
           "%zu/%zu\n",
           name, c->n - skipped - bad_roundtrip, c->n - skipped, skipped, c->n - bad_stream, c->n);
    free(streamed);
    ml_stream_decoder_free(dec);
}

typedef struct {
    const ml_tokenizer *tok;
    const tf_corpus *corpus;
    const tf_ids *ref;
    size_t mismatches;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *job = arg;
    for (size_t i = 0; i < job->corpus->n; i++) {
        int32_t *ids;
        size_t n;
        unsigned flags = ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL;
        if (ml_tokenize(job->tok, (const char *)job->corpus->data[i], job->corpus->length[i], flags, &ids, &n) != ML_OK)
            job->mismatches++;
        else if (!tf_same_ids(ids, n, job->ref->special[i], job->ref->n_special[i]))
            job->mismatches++;
        if (ids) free(ids);
    }
    return NULL;
}

static void check_threads(const char *name, const ml_tokenizer *tok, const tf_corpus *c, const tf_ids *ref) {
    enum { N_THREADS = 4 };
    pthread_t threads[N_THREADS];
    thread_job jobs[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        jobs[t] = (thread_job){tok, c, ref, 0};
        pthread_create(&threads[t], NULL, thread_main, &jobs[t]);
    }
    size_t mismatches = 0;
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(threads[t], NULL);
        mismatches += jobs[t].mismatches;
    }
    CHECK(mismatches == 0, "%s: %zu mismatches with %d threads sharing the tokenizer", name, mismatches, N_THREADS);
}

typedef struct {
    const char *name;
    const char *ref;
    int kind; /* 0: ml_tokenizer_open(path), 1: arrays from path */
    char path[4096];
    const char *pre;
    int add_bos;
    int nfc; /* the tokenizer normalises to NFC: decode(encode(s)) is NFC(s) */
} setup;

int main(void) {
    tf_corpus corpus;
    if (tf_load_corpus(&corpus) != 0) {
        CHECK(0, "corpus fixture missing");
        return ml_test_finish("test_tokenizer_corpus");
    }
    CHECK(corpus.n >= 2000, "corpus has %zu strings, want >= 2000", corpus.n);
    printf("corpus: %zu strings in %d categories\n", corpus.n, corpus.n_names);

    char tmp[2048];
    int unpacked = tf_unpack_llama3(tmp, sizeof tmp) == 0;
    if (!unpacked) printf("SKIP: could not gunzip the Llama 3 fixtures (is gzip installed?)\n");

    setup setups[8] = {
        {"llama3 tokenizer.model (tiktoken)", "llama3", 0, "", NULL, 0, 0},
        {"llama3 tokenizer.json", "llama3", 0, "", NULL, 0, 0},
        {"llama3 arrays (pre llama-bpe)", "llama3", 1, "", "llama-bpe", -1, 0},
        {"smollm2 tokenizer.json", "smollm2", 0, "", NULL, 0, 0},
        {"smollm2 arrays (pre smollm)", "smollm2_digits", 1, "", "smollm", 0, 0},
        {"smollm2 GGUF (the default model)", "smollm2_digits", 0, "", NULL, 0, 0},
        {"qwen2 tokenizer.json", "qwen2", 0, "", NULL, 0, 1},
        {"qwen2 GGUF (gpt2, pre qwen2)", "qwen2", 0, "", NULL, 0, 1},
    };
    snprintf(setups[0].path, sizeof setups[0].path, "%s/llama3_tiktoken", tmp);
    snprintf(setups[1].path, sizeof setups[1].path, "%s/llama3_json", tmp);
    snprintf(setups[2].path, sizeof setups[2].path, "%s/llama3_json/tokenizer.json", tmp);
    ml_test_fixture_path(setups[3].path, sizeof setups[3].path, "tokenizer/smollm2");
    ml_test_fixture_path(setups[4].path, sizeof setups[4].path, "tokenizer/smollm2/tokenizer.json");
    /* The default model's GGUF is git-ignored (scripts fetch it into models/) */
    int have_gguf = ml_test_default_model(setups[5].path, sizeof setups[5].path) == 0;
    /* tools/make_qwen2_tokenizer_fixtures.py: Qwen2's pre-tokenizer over a small trained vocabulary */
    ml_test_fixture_path(setups[6].path, sizeof setups[6].path, "tokenizer/qwen2");
    ml_test_fixture_path(setups[7].path, sizeof setups[7].path, "tokenizer/qwen2/qwen2.gguf");

    for (int s = 0; s < 8; s++) {
        setup *su = &setups[s];
        if (s < 3 && !unpacked) continue;
        if (s == 5 && !have_gguf) continue;
        tf_ids ref;
        if (tf_load_ids(su->ref, &ref) != 0) {
            CHECK(0, "reference ids %s missing", su->ref);
            continue;
        }
        ml_tokenizer *tok = NULL;
        double t0 = now_s();
        int status = su->kind == 0 ? ml_tokenizer_open(su->path, &tok) : tf_open_arrays(su->path, su->pre, su->add_bos, &tok);
        double load_s = now_s() - t0;
        CHECK(status == ML_OK && tok, "%s: open %s: %s", su->name, su->path, ml_last_error());
        if (tok) {
            CHECK(ref.n == corpus.n, "%s: %zu references for %zu strings", su->name, ref.n, corpus.n);
            printf("%s (loaded in %.2f s)\n", su->name, load_s);
            t0 = now_s();
            tf_check_ids(su->name, tok, &corpus, &ref);
            printf("  encoded the corpus twice in %.3f s\n", now_s() - t0);
            check_roundtrip(su->name, tok, &corpus, su->nfc);
            check_threads(su->name, tok, &corpus, &ref);
        }
        ml_tokenizer_close(tok);
        tf_free_ids(&ref);
    }

    /* The two SmolLM2 pre-tokenizers must really differ (on digits), or the arrays test proves
     * nothing about "smollm". */
    tf_ids plain, digits;
    if (tf_load_ids("smollm2", &plain) == 0 && tf_load_ids("smollm2_digits", &digits) == 0) {
        size_t differ = 0;
        for (size_t i = 0; i < plain.n && i < digits.n; i++)
            differ += !tf_same_ids(plain.plain[i], plain.n_plain[i], digits.plain[i], digits.n_plain[i]);
        CHECK(differ > 20, "smollm2 and smollm2_digits references differ on only %zu strings", differ);
        printf("smollm2 vs smollm2 with Digits: %zu strings tokenize differently\n", differ);
        tf_free_ids(&plain);
        tf_free_ids(&digits);
    }
    /* Likewise Qwen2's pattern and Llama 3's (digit runs of one vs up to three) on the qwen2
     * vocabulary, or the qwen2 fixtures would not tell the two apart. */
    tf_ids qwen2;
    ml_tokenizer *as_llama3 = NULL;
    char qwen2_json[4096];
    ml_test_fixture_path(qwen2_json, sizeof qwen2_json, "tokenizer/qwen2/tokenizer.json");
    if (tf_load_ids("qwen2", &qwen2) == 0 && tf_open_arrays(qwen2_json, "llama-bpe", 0, &as_llama3) == ML_OK) {
        size_t differ = 0;
        for (size_t i = 0; i < qwen2.n && i < corpus.n; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (ml_tokenize(as_llama3, (const char *)corpus.data[i], corpus.length[i], 0, &ids, &n) == ML_OK)
                differ += !tf_same_ids(qwen2.plain[i], qwen2.n_plain[i], ids, n);
            free(ids);
        }
        CHECK(differ > 20, "qwen2 with Llama 3's pattern differs on only %zu strings", differ);
        printf("qwen2 vs the same vocabulary with Llama 3's pattern: %zu strings tokenize differently\n", differ);
        tf_free_ids(&qwen2);
    } else {
        CHECK(0, "qwen2 fixtures: %s", ml_last_error());
    }
    ml_tokenizer_close(as_llama3);
    tf_free_corpus(&corpus);
    return ml_test_finish("test_tokenizer_corpus");
}
