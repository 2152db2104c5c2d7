/* Tokenizer pieces in isolation:
 *  - the rarer tokenizer.json features against HF (tests/fixtures/tokenizer/custom.json): Split
 *    behaviours Removed / MergedWithPrevious / MergedWithNext / Contiguous / invert, Digits runs,
 *    ByteLevel add_prefix_space, TemplateProcessing with EOS, RobertaProcessing, added tokens with
 *    lstrip / rstrip / single_word, non-special added tokens;
 *  - the GPT-2 byte alphabet;
 *  - the heap-based BPE for long pieces against a naive quadratic BPE (seeded random strings);
 *  - 10 MB single-line inputs: bounded time and memory, exact round trip;
 *  - the streaming decoder on split, invalid and special tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <jansson.h>

#include "test_tokenizer_fixtures.h"
#include "test_util.h"
#include "meshllama.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_nfc.h"

static char tmpdir[2048];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long peak_rss_mb(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024;
}

static size_t unhex(const char *hex, uint8_t *out) {
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static int ids_equal(const int32_t *ids, size_t n, json_t *want) {
    if (n != json_array_size(want)) return 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] != json_integer_value(json_array_get(want, i))) return 0;
    return 1;
}

static void custom_variants(void) {
    char path[4096];
    ml_test_fixture_path(path, sizeof path, "tokenizer/custom.json");
    json_error_t error;
    json_t *custom = json_load_file(path, 0, &error);
    CHECK(custom != NULL, "%s: %s", path, error.text);
    if (!custom) return;
    json_t *strings = json_object_get(custom, "strings");
    size_t v;
    json_t *variant;
    printf("tokenizer.json features against HF tokenizers (%zu strings each):\n", json_array_size(strings));
    json_array_foreach(json_object_get(custom, "variants"), v, variant) {
        const char *name = json_string_value(json_object_get(variant, "name"));
        json_t *tok_json = json_deep_copy(json_object_get(custom, "base"));
        json_object_set(tok_json, "pre_tokenizer", json_object_get(variant, "pre_tokenizer"));
        json_object_set(tok_json, "post_processor", json_object_get(variant, "post_processor"));
        json_object_set(tok_json, "added_tokens", json_object_get(variant, "added_tokens"));
        char file[4096];
        snprintf(file, sizeof file, "%s/custom_%s.json", tmpdir, name);
        json_dump_file(tok_json, file, JSON_COMPACT);
        json_decref(tok_json);
        ml_tokenizer *tok = NULL;
        CHECK(ml_tokenizer_open(file, &tok) == ML_OK, "%s: %s", name, ml_last_error());
        if (!tok) continue;
        json_t *prefix = json_object_get(variant, "prefix"), *suffix = json_object_get(variant, "suffix");
        size_t same = 0, total = 0, i;
        json_t *hex;
        json_array_foreach(strings, i, hex) {
            uint8_t text[512];
            size_t n = unhex(json_string_value(hex), text);
            json_t *want = json_array_get(json_object_get(variant, "ids"), i);
            for (int mode = 0; mode < 2; mode++) {
                json_t *expected = json_array_get(want, mode);
                json_t *built = NULL;
                if (mode == 1 && json_is_null(expected)) {
                    built = json_array();
                    json_array_extend(built, prefix);
                    json_array_extend(built, json_array_get(want, 0));
                    json_array_extend(built, suffix);
                    expected = built;
                }
                int32_t *ids;
                size_t n_ids;
                ml_tokenize(tok, (const char *)text, n, mode ? ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL : 0,
                            &ids, &n_ids);
                int ok = ids_equal(ids, n_ids, expected);
                CHECK(ok, "%s: string %zu \"%.*s\" (%s mode) differs from HF", name, i, (int)(n > 40 ? 40 : n),
                      (const char *)text, mode ? "special" : "plain");
                same += ok;
                total++;
                free(ids);
                json_decref(built);
            }
        }
        printf("  %-22s %zu/%zu identical\n", name, same, total);
        ml_tokenizer_close(tok);
    }
    json_decref(custom);
}

static void byte_alphabet(void) {
    int seen[324] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = ml_byte_level_char((uint8_t)b);
        int printable = ml_test_byte_is_printable(b);
        CHECK(printable ? cp == (uint32_t)b : (cp >= 256 && cp < 324), "byte 0x%02x maps to U+%04X", b, cp);
        if (cp < 324) seen[cp]++;
        char utf8[4];
        size_t n = cp < 0x80 ? 1 : 2;
        if (n == 1) utf8[0] = (char)cp;
        else {
            utf8[0] = (char)(0xC0 | (cp >> 6));
            utf8[1] = (char)(0x80 | (cp & 0x3F));
        }
        ml_byte_buf buf = {0};
        CHECK(ml_byte_level_decode(utf8, n, &buf) == 1 && buf.n == 1 && (uint8_t)buf.data[0] == b,
              "U+%04X does not decode back to byte 0x%02x", cp, b);
        free(buf.data);
    }
    int distinct = 0;
    for (int i = 0; i < 324; i++) distinct += seen[i] == 1;
    CHECK(distinct == 256, "byte alphabet is not a bijection (%d distinct)", distinct);
    ml_byte_buf buf = {0};
    CHECK(ml_byte_level_decode("\xc5\x84", 2, &buf) == 0 && buf.n == 0, "U+0144 is outside the alphabet");
    CHECK(ml_byte_level_decode("\xff", 1, &buf) == 0, "invalid UTF-8 accepted as byte-level text");
    free(buf.data);
}

/* The textbook algorithm: rescan all pairs for the lowest (rank, position) after every merge. */
static size_t naive_bpe(const ml_tokenizer *tok, const uint8_t *s, size_t n, int32_t *out) {
    if (tok->ignore_merges) {
        int32_t id = ml_vocab_find(&tok->vocab, s, n);
        if (id >= 0) {
            out[0] = id;
            return 1;
        }
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->vocab.byte_token[s[i]];
        if (id < 0) id = tok->unk_id;
        if (id >= 0) out[count++] = id;
    }
    for (;;) {
        uint32_t best = UINT32_MAX, rank;
        int32_t merged, best_merged = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < count; i++) {
            if (ml_vocab_pair(&tok->vocab, out[i], out[i + 1], &rank, &merged) && rank < best) {
                best = rank;
                best_merged = merged;
                at = i;
            }
        }
        if (best == UINT32_MAX) return count;
        out[at] = best_merged;
        memmove(out + at + 1, out + at + 2, (count - at - 2) * sizeof *out);
        count--;
    }
}

static void bpe_against_naive(const char *name, const ml_tokenizer *tok) {
    static const char *const alphabets[] = {"ab", "aab ", "the quick brown fox", "0123456789", "e\xcc\x81x",
                                            "\xe6\x97\xa5\xe6\x9c\xac", "aaaaaaaaab", "!?.,;:", "\xff\xfe\x80z"};
    ml_test_rng rng;
    ml_test_rng_seed(&rng, 2024);
    int32_t *want = malloc(4000 * sizeof *want);
    uint8_t *text = malloc(4000);
    int cases = 0, same = 0;
    for (int t = 0; t < 400; t++) {
        const char *alphabet = alphabets[t % 9];
        size_t alphabet_n = strlen(alphabet);
        size_t n = 2 + (size_t)ml_test_uniform(&rng, 0, t < 200 ? 64 : 3000);
        for (size_t i = 0; i < n; i++) text[i] = (uint8_t)alphabet[(size_t)ml_test_uniform(&rng, 0, (float)alphabet_n) % alphabet_n];
        size_t n_want = naive_bpe(tok, text, n, want);
        ml_id_vec got = {0};
        ml_encode_ctx ctx;
        ml_encode_ctx_init(&ctx, tok, &got, 0);
        ml_bpe_encode_piece(&ctx, text, n);
        ml_encode_ctx_free(&ctx);
        int ok = got.n == n_want && memcmp(got.data, want, n_want * sizeof *want) == 0;
        CHECK(ok, "%s: BPE of a %zu-byte piece differs from the naive algorithm", name, n);
        cases++;
        same += ok;
        free(got.data);
    }
    printf("%s: long-piece BPE == naive BPE on %d/%d random pieces (2..3000 bytes)\n", name, same, cases);
    free(want);
    free(text);
}

/* A 10 MB line: bounded memory, exact round trip (and the time, for the reader). */
static void long_line(const char *name, const ml_tokenizer *tok, const char *kind, const uint8_t *text, size_t n) {
    long rss_before = peak_rss_mb();
    double t0 = now_s();
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int status = ml_tokenize(tok, (const char *)text, n, 0, &ids, &n_ids);
    double seconds = now_s() - t0;
    CHECK(status == ML_OK, "%s %s: %s", name, kind, ml_last_error());
    char *back = NULL;
    size_t back_n = 0;
    if (status == ML_OK) ml_detokenize(tok, ids, n_ids, 0, &back, &back_n);
    /* SmolLM2 has no token for bytes that never occur in UTF-8 (HF drops them too). */
    int must_roundtrip = 1;
    for (int b = 0; b < 256; b++) {
        char byte = (char)b;
        if (ml_tokenizer_token_id(tok, &byte, 1) < 0 && memchr(text, b, n)) must_roundtrip = 0;
    }
    if (must_roundtrip)
        CHECK(back && back_n == n && memcmp(back, text, n) == 0, "%s %s: 10 MB line does not round-trip", name, kind);
    long grown = peak_rss_mb() - rss_before;
    /* Time is printed, never asserted (a shared machine makes any bound flaky; a quadratic
     * blow-up still ends in ctest's timeout). Memory is bounded generously (sanitizers). */
    CHECK(grown < 1024, "%s %s: peak memory grew by %ld MB", name, kind, grown);
    printf("  %-8s %-26s %8zu ids  %6.2f s  %6.1f MB/s  peak RSS +%ld MB\n", name, kind, n_ids, seconds,
           n / 1e6 / seconds, grown);
    free(ids);
    free(back);
}

static void long_lines(const ml_tokenizer *llama, const ml_tokenizer *smol) {
    size_t n = 10u << 20;
    uint8_t *text = malloc(n);
    printf("10 MB single-line inputs:\n");
    struct {
        const char *kind;
        int fill;
    } kinds[] = {{"one letter repeated", 0}, {"words and spaces", 1}, {"spaces", 2}, {"random bytes", 3},
                 {"digits", 4}, {"newlines and tabs", 5}};
    ml_test_rng rng;
    ml_test_rng_seed(&rng, 7);
    static const char *const words[] = {"the", "tokenizer", "of", "a", "quick", "1984", "naïve", "日本", "x+y", "\n"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t i = 0;
        while (i < n) {
            switch (kinds[k].fill) {
            case 0: text[i++] = 'a'; break;
            case 1: {
                const char *w = words[(size_t)ml_test_uniform(&rng, 0, 9.99f)];
                for (size_t j = 0; w[j] && i < n; j++) text[i++] = (uint8_t)w[j];
                if (i < n) text[i++] = ' ';
                break;
            }
            case 2: text[i++] = ' '; break;
            case 3: text[i++] = (uint8_t)ml_test_uniform(&rng, 0, 255.99f); break;
            case 4:
                text[i] = (uint8_t)('0' + i % 10);
                i++;
                break;
            default:
                text[i] = i % 3 ? '\n' : '\t';
                i++;
                break;
            }
        }
        if (kinds[k].fill == 1) {
            /* keep it one line, and valid UTF-8 at the cut */
            for (size_t j = 0; j < n; j++)
                if (text[j] == '\n') text[j] = ' ';
            while (n > 0 && (text[n - 1] & 0x80)) text[--n] = ' ';
            n = 10u << 20;
        }
        if (llama) long_line("llama3", llama, kinds[k].kind, text, n);
        if (smol) long_line("smollm2", smol, kinds[k].kind, text, n);
    }
    free(text);
}

static void stream_decoder(const ml_tokenizer *tok) {
    ml_stream_decoder *dec = NULL;
    CHECK(ml_stream_decoder_create(tok, 0, &dec) == ML_OK, "%s", ml_last_error());
    if (!dec) return;
    int32_t c3 = ml_tokenizer_token_id(tok, "\xc3", 1), a9 = ml_tokenizer_token_id(tok, "\xa9", 1);
    int32_t a = ml_tokenizer_token_id(tok, "a", 1), e0 = ml_tokenizer_token_id(tok, "\xe0", 1);
    int32_t x80 = ml_tokenizer_token_id(tok, "\x80", 1), f0 = ml_tokenizer_token_id(tok, "\xf0", 1);
    int32_t x9f = ml_tokenizer_token_id(tok, "\x9f", 1), x98 = ml_tokenizer_token_id(tok, "\x98", 1);
    CHECK(c3 >= 0 && a9 >= 0 && a >= 0 && e0 >= 0 && x80 >= 0 && f0 >= 0 && x9f >= 0 && x98 >= 0,
          "byte tokens missing");
    const char *text;
    size_t n;
    ml_stream_decoder_push(dec, c3, &text, &n);
    CHECK(n == 0, "half of é released");
    ml_stream_decoder_push(dec, a9, &text, &n);
    CHECK(n == 2 && memcmp(text, "\xc3\xa9", 2) == 0, "é not released whole");
    ml_stream_decoder_push(dec, c3, &text, &n);
    ml_stream_decoder_push(dec, a, &text, &n);
    CHECK(n == 2 && memcmp(text, "\xc3" "a", 2) == 0, "a lead byte that cannot complete must be released as is");
    ml_stream_decoder_push(dec, e0, &text, &n);
    ml_stream_decoder_push(dec, x80, &text, &n);
    CHECK(n == 2 && memcmp(text, "\xe0\x80", 2) == 0, "E0 80 (overlong) must be released at once");
    /* 😀 = F0 9F 98 80, one byte per token */
    int32_t emoji[4] = {f0, x9f, x98, x80};
    for (int i = 0; i < 3; i++) {
        ml_stream_decoder_push(dec, emoji[i], &text, &n);
        CHECK(n == 0, "part %d of a 4-byte character released", i);
    }
    ml_stream_decoder_push(dec, emoji[3], &text, &n);
    CHECK(n == 4 && memcmp(text, "\xf0\x9f\x98\x80", 4) == 0, "emoji not released whole");
    ml_stream_decoder_push(dec, f0, &text, &n);
    ml_stream_decoder_push(dec, x9f, &text, &n);
    ml_stream_decoder_finish(dec, &text, &n);
    CHECK(n == 2 && memcmp(text, "\xf0\x9f", 2) == 0, "finish must release held bytes");
    ml_stream_decoder_finish(dec, &text, &n);
    CHECK(n == 0, "finish twice released bytes again");
    ml_stream_decoder_free(dec);

    /* Special tokens: kept by default, dropped with ML_DETOKENIZE_SKIP_SPECIAL. */
    int32_t im_end = ml_tokenizer_token_id(tok, "<|im_end|>", 10);
    CHECK(im_end >= 0 && ml_tokenizer_is_special(tok, im_end), "<|im_end|> is not a special token");
    ml_stream_decoder_create(tok, ML_DETOKENIZE_SKIP_SPECIAL, &dec);
    ml_stream_decoder_push(dec, im_end, &text, &n);
    CHECK(n == 0, "special token not skipped");
    ml_stream_decoder_free(dec);
    char *all;
    int32_t ids[2] = {a, im_end};
    ml_detokenize(tok, ids, 2, 0, &all, &n);
    CHECK(n == 11 && strcmp(all, "a<|im_end|>") == 0, "decode with special: %s", all);
    free(all);
    ml_detokenize(tok, ids, 2, ML_DETOKENIZE_SKIP_SPECIAL, &all, &n);
    CHECK(n == 1 && strcmp(all, "a") == 0, "decode skipping special: %s", all);
    free(all);
}

static size_t from_hex(const char *hex, uint8_t *out) {
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned byte;
        sscanf(hex, "%2x", &byte);
        out[n++] = (uint8_t)byte;
    }
    return n;
}

/* NFC (tokenizer/unicode_nfc.c) against Python's unicodedata.normalize("NFC", s) (Unicode 14),
 * UTF-8 in hex: composition, Hangul by formula, reordering before composing, a composition
 * exclusion and a singleton, a non-starter decomposition, starter + starter, two marks; and an
 * invalid byte between a letter and its mark, which blocks them (each valid run is normalised
 * alone, as the corpus references are made). */
static void nfc_cases(void) {
    static const char *const cases[][2] = {
        {"65cc81", "c3a9"},           {"e18480e185a1e186a8", "eab081"}, {"61cca3cc82", "e1baad"},
        {"61cc82cca3", "e1baad"},     {"e0a598", "e0a495e0a4bc"},        {"e284ab", "c385"},
        {"e1ba9bcca3", "e1ba9bcca3"}, {"78cd84", "e1ba8dcc81"},          {"eab080e186a8", "eab081"},
        {"e0ad87e0acbe", "e0ad8b"},   {"41cc8acc81", "c7ba"},            {"65ffcc81", "65ffcc81"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t in[32], want[32], *got = NULL;
        size_t n_in = from_hex(cases[i][0], in), n_want = from_hex(cases[i][1], want), n_got = 0;
        int status = ml_nfc(in, n_in, &got, &n_got);
        CHECK(status == ML_OK && got && n_got == n_want && memcmp(got, want, n_want) == 0, "NFC of %s: want %s",
              cases[i][0], cases[i][1]);
        free(got);
    }
    uint8_t *got = (uint8_t *)"x";
    size_t n_got = 0;
    CHECK(ml_nfc((const uint8_t *)"plain ASCII", 11, &got, &n_got) == ML_OK && !got && n_got == 11,
          "NFC of ASCII: no copy");
}

int main(void) {
    if (ml_test_make_tmpdir(tmpdir, sizeof tmpdir, "tokenizer_unit") != 0) {
        CHECK(0, "cannot make a temporary directory");
        return ml_test_finish("test_tokenizer_unit");
    }
    custom_variants();
    byte_alphabet();
    nfc_cases();

    char path[4096];
    ml_tokenizer *smol = NULL, *llama = NULL;
    ml_test_fixture_path(path, sizeof path, "tokenizer/smollm2");
    CHECK(ml_tokenizer_open(path, &smol) == ML_OK, "%s", ml_last_error());
    char tmp[2048];
    if (tf_unpack_llama3(tmp, sizeof tmp) == 0) {
        snprintf(path, sizeof path, "%s/llama3_tiktoken", tmp);
        CHECK(ml_tokenizer_open(path, &llama) == ML_OK, "%s", ml_last_error());
    } else {
        printf("SKIP: could not gunzip the Llama 3 fixtures\n");
    }
    if (smol) bpe_against_naive("smollm2", smol);
    if (llama) bpe_against_naive("llama3", llama);
    if (smol) stream_decoder(smol);
    long_lines(llama, smol);
    ml_tokenizer_close(smol);
    ml_tokenizer_close(llama);
    return ml_test_finish("test_tokenizer_unit");
}
