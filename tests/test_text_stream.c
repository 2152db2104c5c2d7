/* Stop strings on streamed text, hand-checked: a stop string spanning tokens, overlapping
 * prefixes, a false start, a stop string at the very start, inside one token with text after it,
 * the earliest of two, text held at the end released, end-of-generation tokens silent, UTF-8
 * characters split over tokens, and matching switched off (min_tokens). The tokenizer has one
 * token per byte (id = byte) plus a few longer ones, so each case picks its token boundaries. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/text_stream.h"
#include "test_util.h"

enum { TOK_IM_END = 256, TOK_XSTOPY, TOK_ABCD, TOK_HI, N_TOKENS };

static ml_tokenizer *make_tokenizer(void) {
    static char storage[256][4];
    const char *tokens[N_TOKENS];
    int32_t types[N_TOKENS];
    for (int b = 0; b < 256; b++) {
        ml_test_byte_text(b, storage[b]);
        tokens[b] = storage[b];
        types[b] = 6;
    }
    tokens[TOK_IM_END] = "<|im_end|>";
    types[TOK_IM_END] = 3;
    tokens[TOK_XSTOPY] = "xSTOPy";
    tokens[TOK_ABCD] = "abcd";
    tokens[TOK_HI] = "Hi";
    types[TOK_XSTOPY] = types[TOK_ABCD] = types[TOK_HI] = 1;
    ml_tokenizer_arrays a = {.source = "stream-test", .model = "gpt2", .pre = "gpt2", .n_tokens = N_TOKENS,
                             .tokens = tokens, .token_types = types, .n_merges = 0, .merges = NULL, .bos_id = -1,
                             .eos_id = TOK_IM_END, .unk_id = -1, .add_bos = 0, .add_eos = 0};
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_from_arrays(&a, &tok) != ML_OK) fprintf(stderr, "tokenizer: %s\n", ml_last_error());
    return tok;
}

/* A token step: a byte string (each byte one token) or one of the long tokens. */
typedef struct {
    const char *bytes;  /* NULL: use id */
    int id;
    int silent;
    const char *released; /* what this step must release */
    int matched;          /* expected stop index or -1 */
} step;

static void run_steps(const ml_tokenizer *tok, const char *name, const char *const *stops, int n_stops,
                      const step *steps, int n_steps, int match_from, const char *flush_release) {
    ml_text_stream s;
    CHECK(ml_text_stream_init(&s, tok, 0, stops, n_stops) == ML_OK, "%s: init: %s", name, ml_last_error());
    for (int i = 0; i < n_steps; i++) {
        char got[256] = "";
        size_t got_length = 0;
        int matched = -1;
        /* a multi-byte step pushes its bytes one token each; only the last push decides */
        int n = steps[i].bytes ? (int)strlen(steps[i].bytes) : 1;
        for (int j = 0; j < n; j++) {
            int id = steps[i].bytes ? (unsigned char)steps[i].bytes[j] : steps[i].id;
            CHECK(ml_text_stream_push(&s, id, steps[i].silent, i >= match_from, &matched) == ML_OK, "%s: push", name);
            if (s.n_out) memcpy(got + got_length, s.out, s.n_out);
            got_length += s.n_out;
            if (matched >= 0) break;
        }
        got[got_length] = 0;
        CHECK(strcmp(got, steps[i].released) == 0, "%s: step %d released '%s', expected '%s'", name, i, got,
              steps[i].released);
        CHECK(matched == steps[i].matched, "%s: step %d matched %d, expected %d", name, i, matched, steps[i].matched);
        if (matched >= 0) break;
    }
    if (flush_release) {
        ml_text_stream_begin(&s);
        CHECK(ml_text_stream_flush(&s) == ML_OK, "%s: flush", name);
        CHECK(s.n_out == strlen(flush_release) && memcmp(s.out, flush_release, s.n_out) == 0,
              "%s: flush released '%.*s', expected '%s'", name, (int)s.n_out, s.out, flush_release);
    }
    ml_text_stream_free(&s);
}

int main(void) {
    ml_tokenizer *tok = make_tokenizer();
    if (!tok) return 1;
    const char *stop[] = {"STOP"};
    {   /* spanning three tokens; text before it released, the stop string never */
        step steps[] = {{"ab", 0, 0, "ab", -1}, {NULL, 'S', 0, "", -1}, {"TO", 0, 0, "", -1},
                        {"P", 0, 0, "", 0}};
        run_steps(tok, "spanning", stop, 1, steps, 4, 0, NULL);
    }
    {   /* a false start: "ST" held, then released when "x" shows it is not the stop string */
        step steps[] = {{"ST", 0, 0, "", -1}, {"x", 0, 0, "STx", -1}, {"yz", 0, 0, "yz", -1}};
        run_steps(tok, "false start", stop, 1, steps, 3, 0, "");
    }
    {   /* overlapping prefixes: "aab" in "aaab" starts at the second a */
        const char *aab[] = {"aab"};
        step steps[] = {{"a", 0, 0, "", -1}, {"a", 0, 0, "", -1}, {"a", 0, 0, "a", -1}, {"b", 0, 0, "", 0}};
        run_steps(tok, "overlap", aab, 1, steps, 4, 0, NULL);
    }
    {   /* "abab" then "c" with stop "abc": the first "ab" goes, the second is held, then matches */
        const char *abc[] = {"abc"};
        step steps[] = {{"ab", 0, 0, "", -1}, {"ab", 0, 0, "ab", -1}, {"c", 0, 0, "", 0}};
        run_steps(tok, "repeated prefix", abc, 1, steps, 3, 0, NULL);
    }
    {   /* at the very start: nothing is ever released */
        const char *hi[] = {"Hi"};
        step steps[] = {{NULL, TOK_HI, 0, "", 0}};
        run_steps(tok, "at start", hi, 1, steps, 1, 0, NULL);
    }
    {   /* inside one token, with text after it in the same token */
        step steps[] = {{NULL, TOK_XSTOPY, 0, "x", 0}};
        run_steps(tok, "inside a token", stop, 1, steps, 1, 0, NULL);
    }
    {   /* two stop strings: the earliest in the text wins, whatever the list order */
        const char *two[] = {"cd", "bc"};
        step steps[] = {{NULL, TOK_ABCD, 0, "a", 1}};
        run_steps(tok, "earliest of two", two, 2, steps, 1, 0, NULL);
    }
    {   /* generation ends (length) while "STO" is held: the flush releases it */
        step steps[] = {{"xy", 0, 0, "xy", -1}, {"STO", 0, 0, "", -1}};
        run_steps(tok, "held at the end", stop, 1, steps, 2, 0, "STO");
    }
    {   /* an end-of-generation token gives no text */
        step steps[] = {{"ok", 0, 0, "ok", -1}, {NULL, TOK_IM_END, 1, "", -1}};
        run_steps(tok, "silent eos", NULL, 0, steps, 2, 0, "");
    }
    {   /* without the silent flag the special token's text would show: the flag matters */
        step steps[] = {{NULL, TOK_IM_END, 0, "<|im_end|>", -1}};
        run_steps(tok, "special text", NULL, 0, steps, 1, 0, "");
    }
    {   /* é (C3 A9) split over two tokens; the stop string "é!" spans them */
        const char *e[] = {"\xC3\xA9!"};
        step steps[] = {{"a", 0, 0, "a", -1}, {"\xC3", 0, 0, "", -1}, {"\xA9", 0, 0, "", -1},
                        {"!", 0, 0, "", 0}};
        run_steps(tok, "utf-8 split", e, 1, steps, 4, 0, NULL);
    }
    {   /* é alone, no stop strings: released when complete */
        step steps[] = {{"\xC3", 0, 0, "", -1}, {"\xA9", 0, 0, "\xC3\xA9", -1}};
        run_steps(tok, "utf-8 completes", NULL, 0, steps, 2, 0, "");
    }
    {   /* matching off for the first two steps (min_tokens): "STOP" there is text, later it stops */
        step steps[] = {{NULL, TOK_XSTOPY, 0, "xSTOPy", -1}, {"ST", 0, 0, "", -1}, {"OP", 0, 0, "", 0}};
        run_steps(tok, "min_tokens", stop, 1, steps, 3, 1, NULL);
    }
    /* bad stop lists */
    ml_text_stream s;
    const char *empty[] = {""};
    CHECK(ml_text_stream_init(&s, tok, 0, empty, 1) == ML_ERR_ARG && strstr(ml_last_error(), "stop_strings[0]"),
          "an empty stop string was accepted");
    CHECK(ml_text_stream_init(&s, tok, 0, NULL, 2) == ML_ERR_ARG, "2 stop strings without an array accepted");
    CHECK(ml_text_stream_init(&s, NULL, 0, stop, 1) == ML_ERR_ARG, "no tokenizer accepted");
    ml_tokenizer_close(tok);
    return ml_test_finish("text_stream");
}
