/* The conversation of `meshllama chat`: messages with owned role and content, saved to and
 * loaded from JSON ({"messages": [{"role": ..., "content": ...}, ...]}, jansson). */
#ifndef ML_APPS_CHAT_MESSAGES_H
#define ML_APPS_CHAT_MESSAGES_H

#include <stddef.h>

#include "meshllama.h"

typedef struct {
    ml_chat_message *items; /* role and content malloc'd */
    size_t count, capacity;
} chat_messages;

/* Appends a copy; 0 or -1 (no memory). */
int chat_messages_add(chat_messages *list, const char *role, const char *content);
/* Removes n messages from index `at`. */
void chat_messages_remove(chat_messages *list, size_t at, size_t n);
/* Sets the system message (the first message, inserted when there is none). 0 or -1. */
int chat_messages_set_system(chat_messages *list, const char *content);
void chat_messages_free(chat_messages *list);
/* 0, or -1 with a message naming the file in err[size]. */
int chat_messages_save(const chat_messages *list, const char *path, char *err, size_t size);
/* Replaces *list with the file's conversation; on failure *list is unchanged. */
int chat_messages_load(chat_messages *list, const char *path, char *err, size_t size);

#endif
