#include "chat_messages.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

int chat_messages_add(chat_messages *list, const char *role, const char *content) {
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        ml_chat_message *grown = realloc(list->items, capacity * sizeof *grown);
        if (!grown) return -1;
        list->items = grown;
        list->capacity = capacity;
    }
    char *role_copy = strdup(role), *content_copy = strdup(content);
    if (!role_copy || !content_copy) {
        free(role_copy);
        free(content_copy);
        return -1;
    }
    list->items[list->count].role = role_copy;
    list->items[list->count].content = content_copy;
    list->count++;
    return 0;
}

void chat_messages_remove(chat_messages *list, size_t at, size_t n) {
    if (at >= list->count) return;
    if (n > list->count - at) n = list->count - at;
    for (size_t i = at; i < at + n; i++) {
        free((char *)list->items[i].role);
        free((char *)list->items[i].content);
    }
    memmove(list->items + at, list->items + at + n, (list->count - at - n) * sizeof *list->items);
    list->count -= n;
}

int chat_messages_set_system(chat_messages *list, const char *content) {
    if (list->count > 0 && strcmp(list->items[0].role, "system") == 0) {
        char *copy = strdup(content);
        if (!copy) return -1;
        free((char *)list->items[0].content);
        list->items[0].content = copy;
        return 0;
    }
    if (chat_messages_add(list, "system", content) != 0) return -1;
    ml_chat_message system = list->items[list->count - 1];
    memmove(list->items + 1, list->items, (list->count - 1) * sizeof *list->items);
    list->items[0] = system;
    return 0;
}

void chat_messages_free(chat_messages *list) {
    chat_messages_remove(list, 0, list->count);
    free(list->items);
    list->items = NULL;
    list->capacity = 0;
}

int chat_messages_save(const chat_messages *list, const char *path, char *err, size_t size) {
    json_t *messages = json_array();
    for (size_t i = 0; messages && i < list->count; i++)
        json_array_append_new(messages, json_pack("{s:s,s:s}", "role", list->items[i].role, "content",
                                                  list->items[i].content));
    json_t *root = json_pack("{s:o}", "messages", messages);
    errno = 0;
    int rc = root ? json_dump_file(root, path, JSON_INDENT(2) | JSON_ENSURE_ASCII) : -1;
    if (rc != 0) snprintf(err, size, "cannot write %s: %s", path, errno ? strerror(errno) : "no memory");
    json_decref(root);
    return rc == 0 ? 0 : -1;
}

int chat_messages_load(chat_messages *list, const char *path, char *err, size_t size) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(err, size, "cannot read %s: %s (line %d)", path, jerr.text, jerr.line);
        return -1;
    }
    json_t *messages = json_is_array(root) ? root : json_object_get(root, "messages");
    chat_messages loaded = {NULL, 0, 0};
    int rc = json_is_array(messages) ? 0 : -1;
    if (rc != 0) snprintf(err, size, "%s: expected {\"messages\": [...]}", path);
    for (size_t i = 0; rc == 0 && i < json_array_size(messages); i++) {
        const char *role = NULL, *content = NULL;
        if (json_unpack(json_array_get(messages, i), "{s:s,s:s}", "role", &role, "content", &content) != 0) {
            snprintf(err, size, "%s: message %zu: expected {\"role\": TEXT, \"content\": TEXT}", path, i);
            rc = -1;
        } else if (chat_messages_add(&loaded, role, content) != 0) {
            snprintf(err, size, "%s: out of memory", path);
            rc = -1;
        }
    }
    json_decref(root);
    if (rc != 0) {
        chat_messages_free(&loaded);
        return -1;
    }
    chat_messages_free(list);
    *list = loaded;
    return 0;
}
