/* HF tokenizer.json (model type BPE, byte-level) and tokenizer_config.json.
 *
 * Read: model (vocab, merges as "a b" strings or [a, b] pairs, ignore_merges, unk_token),
 * added_tokens, pre_tokenizer (ByteLevel, Split, Digits, Sequence), post_processor
 * (TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence), and the
 * normalizer, which must be absent. Anything else is refused with a message that names the file
 * and the field, never guessed at. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/error.h"
#include "formats/json_util.h"
#include "tokenizer/tokenizer_internal.h"

static int bad(const char *source, const char *fmt, const char *detail) {
    return ml_set_error(ML_ERR_FORMAT, "%s: %s%s", source, fmt, detail ? detail : "");
}

static const char *type_of(json_t *node) {
    json_t *type = json_is_object(node) ? json_object_get(node, "type") : NULL;
    return json_is_string(type) ? json_string_value(type) : NULL;
}

/* Optional boolean field: default when absent or null; ML_ERR_FORMAT when not a boolean. */
static int get_bool(json_t *object, const char *key, int fallback, int *out, const char *source, const char *where) {
    json_t *value = json_object_get(object, key);
    *out = fallback;
    if (!value || json_is_null(value)) return ML_OK;
    if (!json_is_boolean(value)) {
        char found[96];
        ml_json_describe(value, found, sizeof found);
        return ml_set_error(ML_ERR_FORMAT, "%s: %s.%s must be true or false, found %s", source, where, key, found);
    }
    *out = json_is_true(value);
    return ML_OK;
}

/* ---- model.vocab and added_tokens ------------------------------------------------------- */

static int load_vocab(ml_tokenizer *tok, json_t *vocab, const char *source) {
    if (!json_is_object(vocab)) return bad(source, "model.vocab is missing or not an object", NULL);
    ml_byte_buf bytes = {0};
    const char *key;
    json_t *value;
    json_object_foreach(vocab, key, value) {
        /* Ids index arrays; 2^24 is far above any real vocabulary and bounds what a broken file
         * can make us allocate. */
        if (!json_is_integer(value) || json_integer_value(value) < 0 || json_integer_value(value) >= ML_MAX_TOKEN_ID) {
            char found[96];
            ml_json_describe(value, found, sizeof found);
            free(bytes.data);
            return ml_set_error(ML_ERR_FORMAT, "%s: model.vocab[\"%.60s\"] must be a token id (0..2^24-1), found %s",
                                source, key, found);
        }
        int32_t id = (int32_t)json_integer_value(value);
        size_t key_length = strlen(key);
        bytes.n = 0;
        if (tok->spm) {
            int byte, status = ml_spm_token_bytes(key, key_length, &bytes, &byte);
            if (status == ML_OK)
                status = ml_vocab_set(&tok->vocab, id, bytes.data, bytes.n, byte >= 0 ? 0 : ML_TOKF_MERGEABLE);
            if (status == ML_OK && byte >= 0) tok->byte_fallback_id[byte] = id;
            if (status == ML_ERR_ARG) {
                free(bytes.data);
                return ml_set_error(ML_ERR_FORMAT, "%s: model.vocab gives id %d to two tokens (one is \"%.60s\")",
                                    source, (int)id, key);
            }
            if (status != ML_OK) {
                free(bytes.data);
                return ml_set_error(status, "%s: out of memory reading model.vocab", source);
            }
            continue;
        }
        int decoded = ml_byte_level_decode(key, key_length, &bytes);
        if (decoded < 0) {
            free(bytes.data);
            return ml_set_error(ML_ERR_NOMEM, "%s: out of memory reading model.vocab", source);
        }
        /* HF's ByteLevel decoder falls back to a token's UTF-8 text when a character is not
         * in the byte alphabet; such a token can never come out of BPE on bytes. */
        int status = decoded ? ml_vocab_set(&tok->vocab, id, bytes.data, bytes.n, ML_TOKF_MERGEABLE)
                             : ml_vocab_set(&tok->vocab, id, key, key_length, 0);
        if (status == ML_ERR_ARG) {
            free(bytes.data);
            return ml_set_error(ML_ERR_FORMAT, "%s: model.vocab gives id %d to two tokens (one is \"%.60s\")", source,
                                (int)id, key);
        }
        if (status != ML_OK) {
            free(bytes.data);
            return ml_set_error(status, "%s: out of memory reading model.vocab", source);
        }
    }
    free(bytes.data);
    return ML_OK;
}

/* Replaces the bytes of an id already in the vocabulary (an added token whose content differs
 * from its model.vocab entry: HF decodes added tokens by content). */
static int vocab_replace(ml_vocab *v, int32_t id, const char *content, size_t length, unsigned flags) {
    if (v->length[id] == length && memcmp(v->bytes + v->offset[id], content, length) == 0) {
        v->flags[id] |= (uint8_t)flags;
        return ML_OK;
    }
    /* Re-add under the same id: clear it and store the new bytes at the end of the blob. */
    v->flags[id] = 0;
    return ml_vocab_set(v, id, content, length, flags);
}

/* HF rebuilds the added vocabulary on load and ignores each entry's "id": a token whose content
 * is in model.vocab takes that id, any other takes len(model.vocab), then the highest id given
 * so far + 1 (tokenizers' AddedVocabulary::add_tokens). Consistent files store the same ids. */
static int load_added_tokens(ml_tokenizer *tok, json_t *vocab, json_t *added, const char *source) {
    if (!added || json_is_null(added)) return ML_OK;
    if (!json_is_array(added)) return bad(source, "added_tokens is not an array", NULL);
    int32_t vocab_size = (int32_t)json_object_size(vocab), highest = -1;
    size_t index;
    json_t *entry;
    json_array_foreach(added, index, entry) {
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", index);
        json_t *id_value = json_object_get(entry, "id");
        json_t *content = json_object_get(entry, "content");
        if (!json_is_integer(id_value) || json_integer_value(id_value) < 0 ||
            json_integer_value(id_value) >= ML_MAX_TOKEN_ID || !json_is_string(content))
            return ml_set_error(ML_ERR_FORMAT, "%s: %s needs an integer \"id\" >= 0 and a string \"content\"", source,
                                where);
        int special, lstrip, rstrip, single_word;
        ML_TRY(get_bool(entry, "special", 0, &special, source, where));
        ML_TRY(get_bool(entry, "lstrip", 0, &lstrip, source, where));
        ML_TRY(get_bool(entry, "rstrip", 0, &rstrip, source, where));
        ML_TRY(get_bool(entry, "single_word", 0, &single_word, source, where));
        const char *text = json_string_value(content);
        size_t length = json_string_length(content);
        if (length == 0) continue; /* HF ignores empty added tokens */
        int32_t id = ml_tokenizer_token_id(tok, text, length);
        int known_added = id >= 0 && (tok->vocab.flags[id] & ML_TOKF_ADDED);
        if (!known_added) {
            json_t *in_vocab = json_object_get(vocab, text);
            if (json_is_integer(in_vocab)) id = (int32_t)json_integer_value(in_vocab);
            else id = highest >= vocab_size ? highest + 1 : vocab_size;
        }
        if (id > highest) highest = id;
        unsigned flags = ML_TOKF_ADDED | (special ? ML_TOKF_SPECIAL : 0);
        int status = ML_OK;
        if (known_added) {
            /* the same content again: HF keeps the id and takes the new flags */
            tok->vocab.flags[id] = (uint8_t)((tok->vocab.flags[id] & ~ML_TOKF_SPECIAL) | flags);
            for (int32_t i = 0; i < tok->added.n; i++) {
                ml_added_token *t = &tok->added.tokens[i];
                if (t->id != id) continue;
                t->special = (uint8_t)special;
                t->lstrip = (uint8_t)lstrip;
                t->rstrip = (uint8_t)rstrip;
                t->single_word = (uint8_t)single_word;
            }
            continue;
        }
        status = ml_vocab_has(&tok->vocab, id) ? vocab_replace(&tok->vocab, id, text, length, flags)
                                               : ml_vocab_set(&tok->vocab, id, text, length, flags);
        if (status == ML_OK) status = ml_added_add(&tok->added, &tok->vocab, id, special, lstrip, rstrip, single_word);
        if (status != ML_OK) return ml_set_error(status, "%s: %s: cannot add token %d", source, where, (int)id);
    }
    return ML_OK;
}

/* ---- model.merges ----------------------------------------------------------------------- */

static int32_t vocab_id(json_t *vocab, const char *text) {
    json_t *value = json_object_get(vocab, text);
    return json_is_integer(value) ? (int32_t)json_integer_value(value) : -1;
}

static int load_merges(ml_tokenizer *tok, json_t *vocab, json_t *merges, const char *source) {
    if (!merges || json_is_null(merges)) return ML_OK;
    if (!json_is_array(merges)) return bad(source, "model.merges is not an array", NULL);
    size_t n = json_array_size(merges);
    if (n >= UINT32_MAX) return bad(source, "model.merges has too many entries", NULL);
    int status = ml_vocab_reserve_merges(&tok->vocab, n);
    if (status != ML_OK) return ml_set_error(status, "%s: out of memory for %zu merges", source, n);
    ml_byte_buf pair = {0};
    for (size_t rank = 0; rank < n && status == ML_OK; rank++) {
        json_t *merge = json_array_get(merges, rank);
        const char *left = NULL, *right = NULL;
        size_t left_length = 0, right_length = 0;
        if (json_is_string(merge)) {
            /* "left right": HF requires exactly one space (byte-level tokens hold none). */
            const char *text = json_string_value(merge);
            const char *space = strchr(text, ' ');
            if (space && !strchr(space + 1, ' ')) {
                left = text;
                left_length = (size_t)(space - text);
                right = space + 1;
                right_length = strlen(right);
            }
        } else if (json_is_array(merge) && json_array_size(merge) == 2 && json_is_string(json_array_get(merge, 0)) &&
                   json_is_string(json_array_get(merge, 1))) {
            left = json_string_value(json_array_get(merge, 0));
            left_length = json_string_length(json_array_get(merge, 0));
            right = json_string_value(json_array_get(merge, 1));
            right_length = json_string_length(json_array_get(merge, 1));
        }
        if (!left) {
            char found[96];
            ml_json_describe(merge, found, sizeof found);
            status = ml_set_error(ML_ERR_FORMAT,
                                  "%s: model.merges[%zu] must be \"left right\" or [\"left\", \"right\"], found %s",
                                  source, rank, found);
            break;
        }
        /* NUL-terminated copies: "left\0right\0leftright\0". */
        pair.n = 0;
        if (ml_byte_buf_append(&pair, left, left_length) || ml_byte_buf_append(&pair, "", 1) ||
            ml_byte_buf_append(&pair, right, right_length) || ml_byte_buf_append(&pair, "", 1) ||
            ml_byte_buf_append(&pair, left, left_length) || ml_byte_buf_append(&pair, right, right_length)) {
            status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory reading merges", source);
            break;
        }
        const char *left_text = pair.data, *right_text = pair.data + left_length + 1;
        const char *merged_text = right_text + right_length + 1;
        int32_t left_id = vocab_id(vocab, left_text), right_id = vocab_id(vocab, right_text);
        int32_t merged_id = vocab_id(vocab, merged_text);
        const char *missing = left_id < 0 ? left_text : right_id < 0 ? right_text : merged_id < 0 ? merged_text : NULL;
        if (missing) {
            status = ml_set_error(ML_ERR_FORMAT,
                                  "%s: model.merges[%zu] (\"%.40s\" + \"%.40s\") names the token \"%.80s\", which is "
                                  "not in model.vocab",
                                  source, rank, left_text, right_text, missing);
            break;
        }
        status = ml_vocab_add_merge(&tok->vocab, left_id, right_id, (uint32_t)rank, merged_id);
        if (status != ML_OK) status = ml_set_error(status, "%s: out of memory reading merges", source);
    }
    free(pair.data);
    return status;
}

/* ---- pre_tokenizer ---------------------------------------------------------------------- */

static int parse_behavior(const char *name, int *out) {
    static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    static const int values[] = {ML_SPLIT_ISOLATED, ML_SPLIT_REMOVED, ML_SPLIT_MERGED_WITH_PREVIOUS,
                                 ML_SPLIT_MERGED_WITH_NEXT, ML_SPLIT_CONTIGUOUS};
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = values[i];
            return 1;
        }
    }
    return 0;
}

/* ---- SentencePiece-style BPE: Metaspace, the Prepend + Replace normalizer, the decoder ----- */

/* A string field that must be exactly '▁' (the only replacement real files use). */
static int check_meta_space(json_t *node, const char *key, const char *source, const char *where) {
    json_t *value = json_object_get(node, key);
    if (!json_is_string(value))
        return ml_set_error(ML_ERR_FORMAT, "%s: %s.%s must be a string (\"\u2581\")", source, where, key);
    if (strcmp(json_string_value(value), "\u2581") != 0)
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s.%s is \"%.20s\"; only \"\u2581\" (U+2581) is supported",
                            source, where, key, json_string_value(value));
    return ML_OK;
}

static int load_metaspace(ml_tokenizer *tok, json_t *node, const char *source, const char *where) {
    if (tok->spm)
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s: a second Metaspace / '\u2581' stage is not supported", source,
                            where);
    ML_TRY(check_meta_space(node, "replacement", source, where));
    json_t *scheme = json_object_get(node, "prepend_scheme");
    int prepend;
    if (scheme && !json_is_null(scheme)) {
        const char *name = json_is_string(scheme) ? json_string_value(scheme) : "";
        if (strcmp(name, "first") == 0) prepend = ML_SPM_PREPEND_FIRST;
        else if (strcmp(name, "always") == 0) prepend = ML_SPM_PREPEND_ALWAYS;
        else if (strcmp(name, "never") == 0) prepend = ML_SPM_PREPEND_NEVER;
        else
            return ml_set_error(ML_ERR_FORMAT, "%s: %s.prepend_scheme must be \"first\", \"always\" or \"never\"",
                                source, where);
    } else {
        int add_prefix_space; /* the field before tokenizers 0.14 */
        ML_TRY(get_bool(node, "add_prefix_space", 1, &add_prefix_space, source, where));
        prepend = add_prefix_space ? ML_SPM_PREPEND_ALWAYS : ML_SPM_PREPEND_NEVER;
    }
    ML_TRY(get_bool(node, "split", 1, &tok->spm_split, source, where));
    tok->spm = 1;
    tok->spm_prepend = prepend;
    return ML_OK;
}

/* A normalizer, pre-tokenizer, decoder or post-processor read by one of the loaders below. */
typedef int (*component_loader)(ml_tokenizer *tok, json_t *node, const char *source, const char *where, int depth);

/* A "Sequence" component: each item of node[key] through load, one level deeper. */
static int load_sequence(ml_tokenizer *tok, json_t *node, const char *key, component_loader load, const char *source,
                         const char *where, int depth) {
    json_t *list = json_object_get(node, key);
    if (!json_is_array(list)) return ml_set_error(ML_ERR_FORMAT, "%s: %s.%s is not an array", source, where, key);
    size_t i;
    json_t *item;
    char inner[64];
    json_array_foreach(list, i, item) {
        snprintf(inner, sizeof inner, "%s.%s[%zu]", where, key, i);
        ML_TRY(load(tok, item, source, inner, depth + 1));
    }
    return ML_OK;
}

/* Llama 2's normalizer, Sequence[Prepend("▁"), Replace(" ", "▁")], and NFC (Qwen2); nothing else
 * is accepted. */
static int load_normalizer(ml_tokenizer *tok, json_t *node, const char *source, const char *where, int depth) {
    if (!node || json_is_null(node)) return ML_OK;
    const char *type = type_of(node);
    if (!type) return ml_set_error(ML_ERR_FORMAT, "%s: %s has no \"type\"", source, where);
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        return load_sequence(tok, node, "normalizers", load_normalizer, source, where, depth);
    }
    if (strcmp(type, "NFC") == 0) {
        tok->nfc = 1;
        return ML_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        ML_TRY(check_meta_space(node, "prepend", source, where));
        tok->spm_prepend = ML_SPM_PREPEND_NORMALIZER;
        return ML_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        json_t *pattern = json_object_get(json_object_get(node, "pattern"), "String");
        if (!json_is_string(pattern) || strcmp(json_string_value(pattern), " ") != 0)
            return ml_set_error(ML_ERR_UNSUPPORTED,
                                "%s: %s: only Replace({\"String\": \" \"}, \"\u2581\") is supported as a normalizer",
                                source, where);
        ML_TRY(check_meta_space(node, "content", source, where));
        tok->spm = 1;
        return ML_OK;
    }
    return ml_set_error(ML_ERR_UNSUPPORTED,
                        "%s: %s: normalizer \"%s\" is not supported (only NFC and Llama 2's Prepend(\"\u2581\") + "
                        "Replace(\" \", \"\u2581\"))",
                        source, where, type);
}

/* Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)] or Metaspace: the tokens'
 * bytes are already decoded; what remains is whether a leading space is stripped. */
static int load_spm_decoder(ml_tokenizer *tok, json_t *node, const char *source, const char *where, int depth) {
    if (!node || json_is_null(node)) return ML_OK;
    const char *type = type_of(node);
    if (!type) return ml_set_error(ML_ERR_FORMAT, "%s: %s has no \"type\"", source, where);
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        return load_sequence(tok, node, "decoders", load_spm_decoder, source, where, depth);
    }
    if (strcmp(type, "ByteFallback") == 0 || strcmp(type, "Fuse") == 0) return ML_OK;
    if (strcmp(type, "Replace") == 0) {
        json_t *pattern = json_object_get(json_object_get(node, "pattern"), "String");
        json_t *content = json_object_get(node, "content");
        if (!json_is_string(pattern) || strcmp(json_string_value(pattern), "\u2581") != 0 || !json_is_string(content) ||
            strcmp(json_string_value(content), " ") != 0)
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s: only the decoder Replace(\"\u2581\", \" \") is supported",
                                source, where);
        return ML_OK;
    }
    if (strcmp(type, "Strip") == 0) {
        json_t *content = json_object_get(node, "content");
        json_t *start = json_object_get(node, "start"), *stop = json_object_get(node, "stop");
        if (!json_is_string(content) || strcmp(json_string_value(content), " ") != 0 || !json_is_integer(start) ||
            json_integer_value(start) < 0 || json_integer_value(start) > 1 || !json_is_integer(stop) ||
            json_integer_value(stop) != 0)
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s: only Strip(\" \", start 0 or 1, stop 0) is supported",
                                source, where);
        tok->spm_strip = json_integer_value(start) == 1;
        return ML_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        ML_TRY(check_meta_space(node, "replacement", source, where));
        json_t *scheme = json_object_get(node, "prepend_scheme");
        int add_prefix_space = 1;
        if (json_is_string(scheme)) add_prefix_space = strcmp(json_string_value(scheme), "never") != 0;
        else ML_TRY(get_bool(node, "add_prefix_space", 1, &add_prefix_space, source, where));
        tok->spm_strip = add_prefix_space;
        return ML_OK;
    }
    return ml_set_error(ML_ERR_UNSUPPORTED,
                        "%s: %s: decoder \"%s\" is not supported for SentencePiece-style BPE (Replace, ByteFallback, "
                        "Fuse, Strip or Metaspace)",
                        source, where, type);
}

static int load_pre_tokenizer(ml_tokenizer *tok, json_t *node, const char *source, const char *where, int depth) {
    if (!node || json_is_null(node)) return ML_OK;
    const char *type = type_of(node);
    if (!type) return ml_set_error(ML_ERR_FORMAT, "%s: %s has no \"type\"", source, where);
    if (depth > 4) return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s: pre-tokenizers nest too deeply", source, where);
    if (strcmp(type, "Sequence") == 0) {
        return load_sequence(tok, node, "pretokenizers", load_pre_tokenizer, source, where, depth);
    }
    if (strcmp(type, "Metaspace") == 0) return load_metaspace(tok, node, source, where);
    if (strcmp(type, "ByteLevel") == 0) {
        int add_prefix_space, use_regex;
        /* HF's defaults when a field is absent: add_prefix_space true, use_regex true. */
        ML_TRY(get_bool(node, "add_prefix_space", 1, &add_prefix_space, source, where));
        ML_TRY(get_bool(node, "use_regex", 1, &use_regex, source, where));
        tok->pre.byte_level = 1;
        if (use_regex) {
            ML_TRY(ml_pretok_add_regex(&tok->pre, ml_pattern_gpt2, strlen(ml_pattern_gpt2), 0, ML_SPLIT_ISOLATED, 0,
                                       source, where));
            tok->pre.stages[tok->pre.n_stages - 1].add_prefix_space = add_prefix_space;
            return ML_OK;
        }
        return add_prefix_space ? ml_pretok_add_plain(&tok->pre, 1, source) : ML_OK;
    }
    if (strcmp(type, "Split") == 0) {
        json_t *pattern = json_object_get(node, "pattern");
        json_t *regex = json_object_get(pattern, "Regex");
        json_t *string = json_object_get(pattern, "String");
        json_t *text = json_is_string(regex) ? regex : string;
        if (!json_is_string(text))
            return ml_set_error(ML_ERR_FORMAT, "%s: %s.pattern must be {\"Regex\": ...} or {\"String\": ...}", source,
                                where);
        json_t *behavior_value = json_object_get(node, "behavior");
        int behavior = ML_SPLIT_ISOLATED, invert;
        if (json_is_string(behavior_value) && !parse_behavior(json_string_value(behavior_value), &behavior))
            return ml_set_error(ML_ERR_FORMAT, "%s: %s.behavior \"%s\" is not a split behaviour", source, where,
                                json_string_value(behavior_value));
        if (behavior_value && !json_is_string(behavior_value))
            return ml_set_error(ML_ERR_FORMAT, "%s: %s.behavior must be a string", source, where);
        ML_TRY(get_bool(node, "invert", 0, &invert, source, where));
        return ml_pretok_add_regex(&tok->pre, json_string_value(text), json_string_length(text), text == string,
                                   behavior, invert, source, where);
    }
    if (strcmp(type, "Digits") == 0) {
        int individual;
        ML_TRY(get_bool(node, "individual_digits", 0, &individual, source, where));
        return ml_pretok_add_digits(&tok->pre, individual, source);
    }
    return ml_set_error(ML_ERR_UNSUPPORTED,
                        "%s: %s: pre-tokenizer type \"%s\" is not supported (byte-level BPE needs ByteLevel, Split, "
                        "Digits or Sequence)",
                        source, where, type);
}

/* ---- post_processor --------------------------------------------------------------------- */

static int add_template_token(ml_tokenizer *tok, int after, int32_t id, const char *source, const char *where) {
    if (!ml_vocab_has(&tok->vocab, id))
        return ml_set_error(ML_ERR_FORMAT, "%s: %s adds token id %d, which is not in the vocabulary", source, where,
                            (int)id);
    int32_t *list = after ? tok->suffix : tok->prefix;
    int *n = after ? &tok->n_suffix : &tok->n_prefix;
    if (*n >= ML_MAX_TEMPLATE_TOKENS)
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s adds more than %d tokens", source, where,
                            ML_MAX_TEMPLATE_TOKENS);
    list[(*n)++] = id;
    return ML_OK;
}

static int load_template(ml_tokenizer *tok, json_t *node, const char *source, const char *where) {
    json_t *single = json_object_get(node, "single");
    json_t *specials = json_object_get(node, "special_tokens");
    if (!json_is_array(single)) return ml_set_error(ML_ERR_FORMAT, "%s: %s.single is not an array", source, where);
    int after = 0;
    size_t i;
    json_t *item;
    json_array_foreach(single, i, item) {
        json_t *sequence = json_object_get(item, "Sequence");
        json_t *special = json_object_get(item, "SpecialToken");
        if (sequence) {
            json_t *name = json_object_get(sequence, "id");
            if (!json_is_string(name) || strcmp(json_string_value(name), "A") != 0 || after)
                return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s.single[%zu]: only one sequence, \"A\", is supported",
                                    source, where, i);
            after = 1;
            continue;
        }
        json_t *name = json_object_get(special, "id");
        if (!json_is_string(name))
            return ml_set_error(ML_ERR_FORMAT, "%s: %s.single[%zu] is neither a Sequence nor a SpecialToken", source,
                                where, i);
        json_t *entry = json_object_get(specials, json_string_value(name));
        json_t *ids = json_object_get(entry, "ids");
        if (!json_is_array(ids) || json_array_size(ids) == 0)
            return ml_set_error(ML_ERR_FORMAT, "%s: %s.special_tokens has no ids for \"%s\"", source, where,
                                json_string_value(name));
        size_t j;
        json_t *id;
        json_array_foreach(ids, j, id) {
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= ML_MAX_TOKEN_ID)
                return ml_set_error(ML_ERR_FORMAT, "%s: %s.special_tokens[\"%s\"].ids holds a non-id", source, where,
                                    json_string_value(name));
            ML_TRY(add_template_token(tok, after, (int32_t)json_integer_value(id), source, where));
        }
    }
    if (!after) return ml_set_error(ML_ERR_FORMAT, "%s: %s.single has no $A sequence", source, where);
    return ML_OK;
}

/* RobertaProcessing / BertProcessing: "cls": [text, id], "sep": [text, id]. */
static int load_cls_sep(ml_tokenizer *tok, json_t *node, const char *source, const char *where) {
    json_t *cls = json_object_get(node, "cls"), *sep = json_object_get(node, "sep");
    json_t *cls_id = json_array_get(cls, 1), *sep_id = json_array_get(sep, 1);
    if (!json_is_integer(cls_id) || !json_is_integer(sep_id) || json_integer_value(cls_id) < 0 ||
        json_integer_value(sep_id) < 0 || json_integer_value(cls_id) >= ML_MAX_TOKEN_ID ||
        json_integer_value(sep_id) >= ML_MAX_TOKEN_ID)
        return ml_set_error(ML_ERR_FORMAT, "%s: %s needs \"cls\" and \"sep\" as [text, id]", source, where);
    ML_TRY(add_template_token(tok, 0, (int32_t)json_integer_value(cls_id), source, where));
    return add_template_token(tok, 1, (int32_t)json_integer_value(sep_id), source, where);
}

static int load_post_processor(ml_tokenizer *tok, json_t *node, const char *source, const char *where, int depth) {
    if (!node || json_is_null(node)) return ML_OK;
    const char *type = type_of(node);
    if (!type) return ml_set_error(ML_ERR_FORMAT, "%s: %s has no \"type\"", source, where);
    if (depth > 4) return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s: post-processors nest too deeply", source, where);
    if (strcmp(type, "ByteLevel") == 0) return ML_OK; /* offsets only */
    if (strcmp(type, "TemplateProcessing") == 0) return load_template(tok, node, source, where);
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0)
        return load_cls_sep(tok, node, source, where);
    if (strcmp(type, "Sequence") == 0) {
        return load_sequence(tok, node, "processors", load_post_processor, source, where, depth);
    }
    return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s: post-processor type \"%s\" is not supported", source, where, type);
}

/* ---- model ------------------------------------------------------------------------------ */

static int check_model_options(ml_tokenizer *tok, json_t *model, const char *source) {
    ML_TRY(get_bool(model, "byte_fallback", 0, &tok->byte_fallback, source, "model"));
    ML_TRY(get_bool(model, "fuse_unk", 0, &tok->fuse_unk, source, "model"));
    static const char *const empty_keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *value = json_object_get(model, empty_keys[i]);
        if (value && !json_is_null(value) && !(json_is_string(value) && json_string_length(value) == 0))
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: model.%s is set; not supported for byte-level BPE", source,
                                empty_keys[i]);
    }
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: model.dropout is set; BPE dropout is not supported", source);
    return ML_OK;
}

static int load_tokenizer_json(ml_tokenizer *tok, json_t *root, const char *source) {
    if (!json_is_object(root)) return bad(source, "the top level is not a JSON object", NULL);
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return bad(source, "\"model\" is missing or not an object", NULL);
    const char *type = type_of(model);
    if (type && strcmp(type, "BPE") != 0)
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: model.type is \"%s\"; only byte-level \"BPE\" is supported",
                            source, type);
    if (!type && !json_object_get(model, "merges"))
        return bad(source, "model has no \"type\" and no \"merges\": not a BPE model", NULL);
    ML_TRY(check_model_options(tok, model, source));

    ML_TRY(load_normalizer(tok, json_object_get(root, "normalizer"), source, "normalizer", 0));
    ML_TRY(load_pre_tokenizer(tok, json_object_get(root, "pre_tokenizer"), source, "pre_tokenizer", 0));
    if (!tok->spm && tok->spm_prepend)
        return ml_set_error(ML_ERR_UNSUPPORTED,
                            "%s: normalizer Prepend(\"\u2581\") without Replace(\" \", \"\u2581\") or a Metaspace "
                            "pre-tokenizer is not supported",
                            source);
    if (tok->spm) {
        if (tok->pre.byte_level || tok->pre.n_stages > 0)
            return ml_set_error(ML_ERR_UNSUPPORTED,
                                "%s: a SentencePiece-style tokenizer (Metaspace / '▁') with other pre-tokenizer "
                                "stages (ByteLevel, Split, Digits) is not supported",
                                source);
        ML_TRY(load_spm_decoder(tok, json_object_get(root, "decoder"), source, "decoder", 0));
        snprintf(tok->pre.name, sizeof tok->pre.name, "%s", "metaspace");
    } else {
        if (tok->byte_fallback)
            return ml_set_error(ML_ERR_UNSUPPORTED,
                                "%s: model.byte_fallback is true but neither a Metaspace pre-tokenizer nor a "
                                "Replace(\" \" -> \"▁\") normalizer turns spaces into '▁'; not supported",
                                source);
        if (!tok->pre.byte_level)
            return ml_set_error(ML_ERR_UNSUPPORTED,
                                "%s: no ByteLevel pre-tokenizer and no Metaspace: neither byte-level nor "
                                "SentencePiece-style BPE",
                                source);
        ml_pretok_identify(&tok->pre);
    }

    json_t *vocab = json_object_get(model, "vocab");
    ML_TRY(load_vocab(tok, vocab, source));
    ML_TRY(load_merges(tok, vocab, json_object_get(model, "merges"), source));
    int ignore_merges;
    ML_TRY(get_bool(model, "ignore_merges", 0, &ignore_merges, source, "model"));
    tok->ignore_merges = ignore_merges;
    json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) {
        tok->unk_id = vocab_id(vocab, json_string_value(unk));
        if (tok->unk_id < 0)
            return ml_set_error(ML_ERR_FORMAT, "%s: model.unk_token \"%.60s\" is not in model.vocab", source,
                                json_string_value(unk));
    } else if (unk && !json_is_null(unk)) {
        return ml_set_error(ML_ERR_FORMAT, "%s: model.unk_token must be a string or null", source);
    }

    ML_TRY(load_added_tokens(tok, vocab, json_object_get(root, "added_tokens"), source));
    int32_t first = -1, second = -1;
    int status = ml_vocab_build_map(&tok->vocab, 0, &first, &second);
    if (status == ML_ERR_FORMAT)
        return ml_set_error(ML_ERR_FORMAT, "%s: model.vocab ids %d and %d are the same bytes", source, (int)first,
                            (int)second);
    if (status != ML_OK) return ml_set_error(status, "%s: out of memory", source);
    return load_post_processor(tok, json_object_get(root, "post_processor"), source, "post_processor", 0);
}

/* ---- tokenizer_config.json -------------------------------------------------------------- */

/* bos_token / eos_token: a string, or an AddedToken object {"content": ...}. */
static int config_token(ml_tokenizer *tok, json_t *config, const char *key, int32_t *out) {
    json_t *value = json_object_get(config, key);
    if (json_is_object(value)) value = json_object_get(value, "content");
    if (!json_is_string(value)) return 0;
    int32_t id = ml_tokenizer_token_id(tok, json_string_value(value), json_string_length(value));
    if (id < 0) return 0;
    *out = id;
    return 1;
}

int ml_tokenizer_apply_config(ml_tokenizer *tok, const char *json, size_t length, const char *source,
                              int has_post_processor) {
    /* Real configs hold "model_max_length": 1000000000000000019884624838656, beyond 64 bits:
     * read numbers as reals (only strings and booleans are used here). */
    json_error_t error;
    json_t *config = json_loadb(json, length, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &error);
    if (!config)
        return ml_set_error(ML_ERR_FORMAT, "%s: tokenizer config is not valid JSON: %s (line %d, column %d)", source,
                            error.text, error.line, error.column);
    int status = ML_OK;
    if (!json_is_object(config)) {
        status = bad(source, "the top level is not a JSON object", NULL);
        goto done;
    }
    config_token(tok, config, "bos_token", &tok->bos_id);
    config_token(tok, config, "eos_token", &tok->eos_id);
    /* transformers >= 5 ignores add_bos_token/add_eos_token when tokenizer.json has a
     * post-processor; without one they decide (as in transformers 4 and llama.cpp), each only
     * when present. */
    if (!has_post_processor) {
        static const char *const keys[2] = {"add_bos_token", "add_eos_token"};
        for (int which = 0; which < 2; which++) {
            if (!json_object_get(config, keys[which])) continue;
            int add;
            if ((status = get_bool(config, keys[which], 0, &add, source, "tokenizer_config")) != ML_OK) goto done;
            int32_t id = which == 0 ? tok->bos_id : tok->eos_id;
            int32_t *list = which == 0 ? tok->prefix : tok->suffix;
            int *n = which == 0 ? &tok->n_prefix : &tok->n_suffix;
            *n = 0;
            if (add && id >= 0) list[(*n)++] = id;
        }
    }
    json_t *tmpl = json_object_get(config, "chat_template");
    if (json_is_array(tmpl)) {
        /* [{"name": "default", "template": ...}, {"name": "tool_use", ...}] */
        json_t *chosen = NULL;
        size_t i;
        json_t *item;
        json_array_foreach(tmpl, i, item) {
            json_t *name = json_object_get(item, "name");
            if (!chosen || (json_is_string(name) && strcmp(json_string_value(name), "default") == 0)) chosen = item;
        }
        tmpl = json_object_get(chosen, "template");
    }
    if (json_is_string(tmpl) && !tok->chat_template) {
        tok->chat_template = strdup(json_string_value(tmpl));
        if (!tok->chat_template) status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
    }
done:
    json_decref(config);
    return status;
}

int ml_tokenizer_load_hf_files(const char *json, size_t json_length, const char *source, const char *config_json,
                               size_t config_length, const char *config_source, ml_tokenizer **out) {
    *out = NULL;
    json_t *root;
    ML_TRY(ml_json_load(json, json_length, source, "tokenizer.json", ML_ERR_FORMAT, &root));
    ml_tokenizer *tok = NULL;
    int status = ml_tokenizer_alloc(source, "tokenizer.json", &tok);
    if (status == ML_OK) status = load_tokenizer_json(tok, root, source);
    int has_post_processor = json_is_object(json_object_get(root, "post_processor"));
    json_decref(root);
    if (status == ML_OK && tok->n_prefix > 0) tok->bos_id = tok->prefix[0];
    if (status == ML_OK && config_json)
        status = ml_tokenizer_apply_config(tok, config_json, config_length, config_source, has_post_processor);
    if (status == ML_OK) status = ml_tokenizer_finish(tok);
    if (status != ML_OK) {
        ml_tokenizer_close(tok);
        return status;
    }
    *out = tok;
    return ML_OK;
}

int ml_tokenizer_load_hf(const char *json, size_t json_length, const char *config_json, size_t config_length,
                         const char *source, ml_tokenizer **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_load_hf: out is NULL");
    *out = NULL;
    if (!json && json_length) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_load_hf: json is NULL");
    return ml_tokenizer_load_hf_files(json ? json : "", json_length, source ? source : "tokenizer.json", config_json,
                                      config_length, "tokenizer_config.json", out);
}
