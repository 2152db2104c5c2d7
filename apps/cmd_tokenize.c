/* `meshllama tokenize -m MODEL "text"`: text to token ids, or ids back to text (--decode). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli_args.h"
#include "commands.h"
#include "model_options.h"
#include "formats/json_util.h"
#include "meshllama.h"

enum { OPT_DECODE = 1000, OPT_JSON, OPT_SPECIAL, OPT_NO_BOS, OPT_SKIP_SPECIAL, OPT_SHOW };

static const char tokenize_usage[] =
    "usage: meshllama tokenize [-m MODEL] [options] [TEXT]\n"
    "       meshllama tokenize [-m MODEL] --decode 1,2,3\n"
    "Prints the token ids of TEXT (or of -f FILE, or of standard input), comma-separated.\n"
    "  -m, --model PATH      model directory, tokenizer.json, tokenizer.model or .gguf file\n"
    "                        (default: models/" ML_DEFAULT_MODEL_NAME ")\n"
    "  -f, --file FILE       read the text from FILE\n"
    "      --decode IDS      print the text of comma-separated token ids instead\n"
    "      --special         recognise special-token strings in the text (\"<|eot_id|>\" -> one id)\n"
    "      --no-bos          do not add BOS (or the tokenizer's other added tokens)\n"
    "      --skip-special    with --decode: leave special tokens out of the text\n"
    "      --show-tokens     one line per token: id and its text\n"
    "      --json            one JSON object: {\"ids\": [...], \"tokens\": [...], \"text\": \"...\"}\n";

/* Reads all of f; returns a malloc'd buffer or NULL. */
static char *read_all(FILE *f, size_t *size) {
    size_t capacity = 1 << 16, used = 0;
    char *data = malloc(capacity);
    while (data) {
        size_t got = fread(data + used, 1, capacity - used, f);
        used += got;
        if (used < capacity) break;
        char *grown = realloc(data, capacity * 2);
        if (!grown) {
            free(data);
            return NULL;
        }
        data = grown;
        capacity *= 2;
    }
    if (data && ferror(f)) {
        free(data);
        return NULL;
    }
    *size = used;
    return data;
}

/* A token's text for --show-tokens: printable bytes as they are, others as \xNN. */
static void print_piece(FILE *out, const char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c < 0x20 || c == 0x7F) fprintf(out, "\\x%02x", c);
        else fputc(c, out);
    }
}

static int print_result(const ml_tokenizer *tok, const int32_t *ids, size_t n, const char *text, size_t text_length,
                        int json, int show) {
    if (json) {
        /* jansson escapes the strings; bytes that are not UTF-8 (a token cut mid-character)
         * become U+FFFD, and the ids keep the exact tokens */
        json_t *id_list = json_array(), *tokens = json_array();
        for (size_t i = 0; i < n; i++) {
            const char *bytes;
            size_t length;
            if (ml_tokenizer_token_bytes(tok, ids[i], &bytes, &length) != ML_OK) length = 0, bytes = "";
            json_array_append_new(id_list, json_integer(ids[i]));
            json_array_append_new(tokens, ml_json_string_lossy(bytes, length));
        }
        json_t *root = json_pack("{s:o,s:o,s:I,s:o}", "ids", id_list, "tokens", tokens, "n_tokens", (json_int_t)n,
                                 "text", ml_json_string_lossy(text, text_length));
        if (!root || json_dumpf(root, stdout, JSON_COMPACT) != 0) {
            json_decref(root);
            fprintf(stderr, "meshllama tokenize: cannot write the JSON output\n");
            return 1;
        }
        putchar('\n');
        json_decref(root);
    } else if (show) {
        for (size_t i = 0; i < n; i++) {
            const char *bytes;
            size_t length;
            if (ml_tokenizer_token_bytes(tok, ids[i], &bytes, &length) != ML_OK) length = 0, bytes = "";
            printf("%d\t", (int)ids[i]);
            print_piece(stdout, bytes, length);
            putchar('\n');
        }
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", (int)ids[i]);
        putchar('\n');
    }
    return ferror(stdout) ? 1 : 0;
}

int ml_cmd_tokenize(int argc, char **argv) {
    static const struct option options[] = {
        {"model", required_argument, NULL, 'm'},
        {"file", required_argument, NULL, 'f'},
        {"decode", required_argument, NULL, OPT_DECODE},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"no-bos", no_argument, NULL, OPT_NO_BOS},
        {"skip-special", no_argument, NULL, OPT_SKIP_SPECIAL},
        {"show-tokens", no_argument, NULL, OPT_SHOW},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *file = NULL, *decode = NULL;
    int json = 0, special = 0, no_bos = 0, skip_special = 0, show = 0, opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, "m:f:h", options, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case OPT_DECODE: decode = optarg; break;
        case OPT_SPECIAL: special = 1; break;
        case OPT_NO_BOS: no_bos = 1; break;
        case OPT_SKIP_SPECIAL: skip_special = 1; break;
        case OPT_SHOW: show = 1; break;
        case OPT_JSON: json = 1; break;
        case 'h': fputs(tokenize_usage, stdout); return 0;
        default: bad = 1; break;
        }
    }
    const char *text_arg = !bad && optind < argc ? argv[optind++] : NULL;
    char default_path[4200];
    if (!bad && !model) {
        if (!ml_cli_default_model(default_path, sizeof default_path)) {
            fprintf(stderr, "meshllama tokenize: no -m MODEL and the default model %s is missing\n", default_path);
            bad = 1;
        }
        model = default_path;
    }
    if (!bad && optind < argc) {
        fprintf(stderr, "meshllama tokenize: one TEXT argument at most (quote it)\n");
        bad = 1;
    }
    if (!bad && ((text_arg != NULL) + (file != NULL) + (decode != NULL)) > 1) {
        fprintf(stderr, "meshllama tokenize: give only one of TEXT, -f FILE and --decode IDS\n");
        bad = 1;
    }
    int32_t *decode_ids = NULL;
    int n_decode = 0;
    if (!bad && decode && ml_cli_parse_ids("--decode", decode, &decode_ids, &n_decode) != 0) bad = 1;
    if (bad) {
        fputs(tokenize_usage, stderr);
        return ML_EXIT_USAGE;
    }

    ml_tokenizer *tok = NULL;
    int status = ml_tokenizer_open(model, &tok);
    if (status != ML_OK) {
        fprintf(stderr, "meshllama tokenize: %s\n  (%s)\n", ml_last_error(), ml_strerror(status));
        free(decode_ids);
        return 1;
    }
    int exit_code = 0;
    if (decode) {
        char *text = NULL;
        size_t length = 0;
        status = ml_detokenize(tok, decode_ids, (size_t)n_decode, skip_special ? ML_DETOKENIZE_SKIP_SPECIAL : 0, &text,
                               &length);
        if (status != ML_OK) {
            fprintf(stderr, "meshllama tokenize: %s\n", ml_last_error());
            exit_code = 1;
        } else if (json || show) {
            exit_code = print_result(tok, decode_ids, (size_t)n_decode, text, length, json, show);
        } else {
            fwrite(text, 1, length, stdout);
            putchar('\n');
        }
        free(text);
    } else {
        char *owned = NULL;
        const char *text = text_arg;
        size_t length = text ? strlen(text) : 0;
        if (!text) {
            FILE *in = file ? fopen(file, "rb") : stdin;
            if (!in) {
                fprintf(stderr, "meshllama tokenize: %s: cannot open\n", file);
                ml_tokenizer_close(tok);
                return 1;
            }
            owned = read_all(in, &length);
            if (in != stdin) fclose(in);
            if (!owned) {
                fprintf(stderr, "meshllama tokenize: %s: cannot read\n", file ? file : "standard input");
                ml_tokenizer_close(tok);
                return 1;
            }
            text = owned;
        }
        unsigned flags = (no_bos ? 0 : ML_TOKENIZE_ADD_SPECIAL) | (special ? ML_TOKENIZE_PARSE_SPECIAL : 0);
        int32_t *ids = NULL;
        size_t n = 0;
        status = ml_tokenize(tok, text, length, flags, &ids, &n);
        if (status != ML_OK) {
            fprintf(stderr, "meshllama tokenize: %s\n", ml_last_error());
            exit_code = 1;
        } else {
            exit_code = print_result(tok, ids, n, text, length, json, show);
        }
        free(ids);
        free(owned);
    }
    free(decode_ids);
    ml_tokenizer_close(tok);
    return exit_code;
}
