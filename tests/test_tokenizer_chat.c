/* Chat templates: recognised from their Jinja source, rendered character for character as
 * transformers' apply_chat_template (tests/fixtures/tokenizer/chat.json, written by
 * tools/make_tokenizer_fixtures.py), and tokenized to the same ids as apply_chat_template(
 * tokenize=True). Also: templates from the tokenizer files, forcing a format, unknown templates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "test_tokenizer_fixtures.h"
#include "test_util.h"
#include "meshllama.h"

static void print_diff(const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    fprintf(stderr, "   first difference at byte %zu\n   ours: \"", i);
    tf_print_escaped(stderr, (const uint8_t *)got + i, strlen(got + i), 60);
    fprintf(stderr, "\"\n   want: \"");
    tf_print_escaped(stderr, (const uint8_t *)want + i, strlen(want + i), 60);
    fprintf(stderr, "\"\n");
}

static void check_conversations(json_t *chat, const char *name, ml_chat_template *tmpl, const ml_tokenizer *tok) {
    const char *date = json_string_value(json_object_get(chat, "date_string"));
    size_t i;
    json_t *conv;
    int rendered = 0, tokenized = 0, total = 0;
    json_array_foreach(json_object_get(chat, "conversations"), i, conv) {
        json_t *messages = json_object_get(conv, "messages");
        size_t n = json_array_size(messages);
        ml_chat_message list[16];
        for (size_t k = 0; k < n && k < 16; k++) {
            list[k].role = json_string_value(json_object_get(json_array_get(messages, k), "role"));
            list[k].content = json_string_value(json_object_get(json_array_get(messages, k), "content"));
        }
        ml_chat_params params = {json_is_true(json_object_get(conv, "add_generation_prompt")), date};
        const char *want = json_string_value(json_object_get(json_object_get(conv, "expected"), name));
        char *text = NULL;
        size_t length = 0;
        total++;
        int status = ml_chat_template_apply(tmpl, list, n, &params, &text, &length);
        CHECK(status == ML_OK, "%s conversation %zu: %s", name, i, ml_last_error());
        if (status != ML_OK) continue;
        int same = strcmp(text, want) == 0 && length == strlen(want);
        CHECK(same, "%s conversation %zu: rendering differs from transformers", name, i);
        if (!same) print_diff(text, want);
        rendered += same;
        if (tok) {
            json_t *want_ids = json_object_get(json_object_get(conv, "expected_ids"), name);
            int32_t *ids;
            size_t n_ids;
            ml_tokenize(tok, text, length, ML_TOKENIZE_PARSE_SPECIAL, &ids, &n_ids);
            int ok = n_ids == json_array_size(want_ids);
            for (size_t k = 0; ok && k < n_ids; k++) ok = ids[k] == json_integer_value(json_array_get(want_ids, k));
            CHECK(ok, "%s conversation %zu: ids differ from apply_chat_template(tokenize=True)", name, i);
            tokenized += ok;
            free(ids);
        }
        free(text);
    }
    printf("  %-9s rendered identically: %d/%d, ids identical: %d/%d%s\n", name, rendered, total, tokenized, total,
           tok ? "" : " (SKIP: no tokenizer)");
}

int main(void) {
    char path[4096];
    ml_test_fixture_path(path, sizeof path, "tokenizer/chat.json");
    json_error_t error;
    json_t *chat = json_load_file(path, 0, &error);
    if (!chat) {
        CHECK(0, "%s: %s", path, error.text);
        return ml_test_finish("test_tokenizer_chat");
    }
    char tmp[2048];
    int unpacked = tf_unpack_llama3(tmp, sizeof tmp) == 0;
    ml_tokenizer *llama = NULL, *smol = NULL, *tiktoken = NULL;
    char dir[4096];
    if (unpacked) {
        snprintf(dir, sizeof dir, "%s/llama3_json", tmp);
        CHECK(ml_tokenizer_open(dir, &llama) == ML_OK, "%s", ml_last_error());
        snprintf(dir, sizeof dir, "%s/llama3_tiktoken", tmp);
        CHECK(ml_tokenizer_open(dir, &tiktoken) == ML_OK, "%s", ml_last_error());
    } else {
        printf("SKIP: could not gunzip the Llama 3 fixtures; Llama ids not checked\n");
    }
    ml_test_fixture_path(dir, sizeof dir, "tokenizer/smollm2");
    CHECK(ml_tokenizer_open(dir, &smol) == ML_OK, "%s", ml_last_error());

    /* Every stored template runs in the Jinja engine, and its built-in fallback (forced by the
     * name it is filed under) renders the same. */
    printf("transformers' apply_chat_template, %zu conversations (Jinja engine, then built-in):\n",
           json_array_size(json_object_get(chat, "conversations")));
    const char *name;
    json_t *source;
    json_object_foreach(json_object_get(chat, "templates"), name, source) {
        for (int forced = 0; forced < 2; forced++) {
            ml_chat_template *tmpl = NULL;
            int status = ml_chat_template_create(json_string_value(source), forced ? name : NULL, "<|begin_of_text|>", &tmpl);
            CHECK(status == ML_OK, "template %s: %s", name, ml_last_error());
            if (!tmpl) continue;
            const char *want_name = forced ? name : "jinja";
            CHECK(strcmp(ml_chat_template_name(tmpl), want_name) == 0, "template %s named %s, want %s", name,
                  ml_chat_template_name(tmpl), want_name);
            const ml_tokenizer *tok = strcmp(name, "chatml") == 0 ? smol : llama;
            check_conversations(chat, name, tmpl, tok);
            const char *eot = ml_chat_template_end_of_turn(tmpl);
            if (tok) CHECK(ml_tokenizer_token_id(tok, eot, strlen(eot)) >= 0, "%s: end-of-turn %s is not a token", name, eot);
            ml_chat_template_free(tmpl);
        }
    }

    /* The templates the tokenizer files carry. */
    ml_chat_template *tmpl = NULL;
    CHECK(ml_chat_template_from_tokenizer(smol, NULL, &tmpl) == ML_OK && tmpl &&
              strcmp(ml_chat_template_name(tmpl), "jinja") == 0 &&
              strcmp(ml_chat_template_end_of_turn(tmpl), "<|im_end|>") == 0,
          "smollm2 chat_template.jinja: %s", ml_last_error());
    if (tmpl) {
        ml_chat_message hello = {"user", "Hello!"};
        ml_chat_params params = {1, NULL};
        char *text;
        ml_chat_template_apply(tmpl, &hello, 1, &params, &text, NULL);
        json_t *first = json_array_get(json_object_get(chat, "conversations"), 0);
        CHECK(strcmp(text, json_string_value(json_object_get(json_object_get(first, "expected"), "chatml"))) == 0,
              "smollm2 default system prompt not applied: %s", text);
        free(text);
    }
    ml_chat_template_free(tmpl);
    if (llama) {
        tmpl = NULL;
        CHECK(ml_chat_template_from_tokenizer(llama, NULL, &tmpl) == ML_OK && tmpl &&
                  strcmp(ml_chat_template_name(tmpl), "jinja") == 0 &&
                  strcmp(ml_chat_template_end_of_turn(tmpl), "<|eot_id|>") == 0,
              "llama3 tokenizer_config.json template: %s", ml_last_error());
        if (tmpl) {
            /* No date given: the template's own (strftime_now("%d %b %Y") or its default). */
            ml_chat_message hello = {"user", "hi"};
            char *text;
            ml_chat_template_apply(tmpl, &hello, 1, NULL, &text, NULL);
            const char *date = strstr(text, "Today Date: ");
            int day, year;
            char month[4];
            CHECK(date && sscanf(date, "Today Date: %2d %3s %4d", &day, month, &year) == 3 && year >= 2024,
                  "default date missing: %s", text);
            free(text);
        }
        ml_chat_template_free(tmpl);
    }
    if (tiktoken) {
        tmpl = NULL;
        int status = ml_chat_template_from_tokenizer(tiktoken, NULL, &tmpl);
        CHECK(status == ML_ERR_UNSUPPORTED && strstr(ml_last_error(), "--template llama3"),
              "tokenizer.model has no template, want a hint to force one: %s", ml_last_error());
        CHECK(ml_chat_template_from_tokenizer(tiktoken, "llama3.1", &tmpl) == ML_OK, "forcing llama3.1: %s",
              ml_last_error());
        ml_chat_template_free(tmpl);
    }

    /* Unknown, forced and bad names. */
    tmpl = NULL;
    int status = ml_chat_template_create("{% for m in messages %}{{ m.content }}{% endfor %}", NULL, NULL, &tmpl);
    CHECK(status == ML_OK && strcmp(ml_chat_template_name(tmpl), "jinja") == 0, "a plain Jinja template: %s",
          ml_last_error());
    if (tmpl) {
        ml_chat_message m[2] = {{"user", "a"}, {"assistant", "b"}};
        char *text = NULL;
        CHECK(ml_chat_template_apply(tmpl, m, 2, NULL, &text, NULL) == ML_OK && text && strcmp(text, "ab") == 0,
              "plain Jinja template rendered %s", text ? text : ml_last_error());
        free(text);
        ml_chat_template_free(tmpl);
        tmpl = NULL;
    }
    status = ml_chat_template_create("{% for m in messages %}{{ m.content }}", NULL, NULL, &tmpl);
    CHECK(status == ML_ERR_UNSUPPORTED && strstr(ml_last_error(), "not usable") && strstr(ml_last_error(), "line 1") &&
              strstr(ml_last_error(), "--template"),
          "unusable template: %d %s", status, ml_last_error());
    printf("unusable template -> %s\n", ml_last_error());
    /* A template of no built-in format (Zephyr) gets the eos text, and ends turns with it. */
    status = ml_chat_template_create_with_tokens("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content + eos_token }}\n"
                                                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
                                                 NULL, "<s>", "</s>", &tmpl);
    CHECK(status == ML_OK && strcmp(ml_chat_template_end_of_turn(tmpl), "</s>") == 0, "zephyr-like: %s", ml_last_error());
    if (tmpl) {
        ml_chat_message m = {"user", "hi"};
        char *text = NULL;
        CHECK(ml_chat_template_apply(tmpl, &m, 1, NULL, &text, NULL) == ML_OK && text &&
                  strcmp(text, "<|user|>\nhi</s>\n<|assistant|>\n") == 0,
              "zephyr-like rendered %s", text ? text : ml_last_error());
        free(text);
        ml_chat_template_free(tmpl);
        tmpl = NULL;
    }
    /* A template that does not parse but looks like ChatML falls back to the built-in format. */
    status = ml_chat_template_create("{% for m in messages %}<|im_start|>{{ m.role }}<|im_end|>{% endfor", NULL, NULL, &tmpl);
    CHECK(status == ML_OK && strcmp(ml_chat_template_name(tmpl), "chatml") == 0, "ChatML fallback: %d %s", status,
          ml_last_error());
    ml_chat_template_free(tmpl);
    tmpl = NULL;
    /* The template's own errors come back with its message and line. */
    status = ml_chat_template_create("{% if messages[0]['role'] == 'system' %}\n{{ raise_exception('System role not supported') }}"
                                     "{% endif %}{{ messages[0]['content'] }}", NULL, NULL, &tmpl);
    CHECK(status == ML_OK, "raise_exception template: %s", ml_last_error());
    if (tmpl) {
        ml_chat_message m[2] = {{"system", "s"}, {"user", "u"}};
        char *text = NULL;
        status = ml_chat_template_apply(tmpl, m, 2, NULL, &text, NULL);
        CHECK(status == ML_ERR_ARG && !text && strstr(ml_last_error(), "line 2") &&
                  strstr(ml_last_error(), "System role not supported"),
              "raise_exception: %d %s", status, ml_last_error());
        ml_chat_template_free(tmpl);
        tmpl = NULL;
    }
    CHECK(ml_chat_template_create("{{ anything }}", "chatml", NULL, &tmpl) == ML_OK, "forcing chatml");
    if (tmpl) {
        ml_chat_message m[2] = {{"system", "S"}, {"user", "U"}};
        ml_chat_params params = {1, NULL};
        char *text;
        ml_chat_template_apply(tmpl, m, 2, &params, &text, NULL);
        CHECK(strcmp(text, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n") ==
                  0,
              "forced chatml: %s", text);
        free(text);
        CHECK(ml_chat_template_apply(tmpl, m, 0, &params, &text, NULL) == ML_ERR_ARG, "no messages accepted");
        ml_chat_message no_content = {"user", NULL};
        CHECK(ml_chat_template_apply(tmpl, &no_content, 1, &params, &text, NULL) == ML_ERR_ARG, "NULL content accepted");
    }
    ml_chat_template_free(tmpl);
    tmpl = NULL;
    CHECK(ml_chat_template_create(NULL, "vicuna", NULL, &tmpl) == ML_ERR_ARG && strstr(ml_last_error(), "vicuna"),
          "bad forced name: %s", ml_last_error());
    CHECK(ml_chat_template_create(NULL, NULL, NULL, &tmpl) == ML_ERR_UNSUPPORTED, "no template and no name accepted");

    /* A ChatML template whose default system prompt sits in a Jinja literal with \n escapes. */
    static const char qwen_like[] =
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
        "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a \\'helpful\\' bot.<|im_end|>\\n' }}"
        "{%- endif %}{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + "
        "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
    CHECK(ml_chat_template_create(qwen_like, NULL, NULL, &tmpl) == ML_OK, "qwen-like: %s", ml_last_error());
    if (tmpl) {
        ml_chat_message m = {"user", "hi"};
        ml_chat_params params = {1, NULL};
        char *text;
        ml_chat_template_apply(tmpl, &m, 1, &params, &text, NULL);
        CHECK(strcmp(text, "<|im_start|>system\nYou are a 'helpful' bot.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                           "<|im_start|>assistant\n") == 0,
              "qwen-like default system: %s", text);
        free(text);
    }
    ml_chat_template_free(tmpl);

    ml_tokenizer_close(llama);
    ml_tokenizer_close(smol);
    ml_tokenizer_close(tiktoken);
    json_decref(chat);
    return ml_test_finish("test_tokenizer_chat");
}
