#include "chat_input.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#ifdef MESHLLAMA_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

struct chat_input {
    int interactive;
    int editing;
    char *line; /* getline's buffer */
    size_t capacity;
};

chat_input *chat_input_open(int interactive) {
    chat_input *in = calloc(1, sizeof *in);
    if (!in) return NULL;
    in->interactive = interactive;
#ifdef MESHLLAMA_HAVE_LIBEDIT
    in->editing = interactive;
    if (in->editing) using_history();
#endif
    return in;
}

int chat_input_editing(const chat_input *in) { return in->editing; }

/* One physical line without its newline: 1 read, 0 end of input, -1 error. */
static int read_line(chat_input *in, const char *prompt, char **out) {
#ifdef MESHLLAMA_HAVE_LIBEDIT
    if (in->editing) {
        char *line = readline(prompt);
        if (!line) return 0;
        *out = line;
        return 1;
    }
#endif
    if (in->interactive) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    errno = 0;
    ssize_t n = getline(&in->line, &in->capacity, stdin);
    if (n < 0) {
        if (ferror(stdin)) {
            if (errno == 0) errno = EIO;
            return -1;
        }
        return 0;
    }
    while (n > 0 && (in->line[n - 1] == '\n' || in->line[n - 1] == '\r')) in->line[--n] = '\0';
    *out = strdup(in->line);
    if (!*out) {
        errno = ENOMEM;
        return -1;
    }
    return 1;
}

static int append(char **text, size_t *length, const char *piece, int newline) {
    size_t n = strlen(piece);
    char *grown = realloc(*text, *length + n + 2);
    if (!grown) return -1;
    *text = grown;
    if (newline) grown[(*length)++] = '\n';
    memcpy(grown + *length, piece, n + 1);
    *length += n;
    return 0;
}

int chat_input_read(chat_input *in, char **out) {
    *out = NULL;
    char *text = NULL, *line = NULL;
    size_t length = 0;
    int block = 0, lines = 0, rc;
    while ((rc = read_line(in, lines ? "... " : "> ", &line)) == 1) {
        size_t n = strlen(line);
        if (strcmp(line, "\"\"\"") == 0) {
            free(line);
            if (block) break; /* the block's end */
            block = 1;        /* a block opens: its lines follow */
            continue;
        }
        int more = block;
        if (!block && n > 0 && line[n - 1] == '\\') {
            line[n - 1] = '\0';
            more = 1;
        }
        if (append(&text, &length, line, lines++ > 0) != 0) {
            free(line);
            free(text);
            errno = ENOMEM;
            return -1;
        }
        free(line);
        if (!more) break;
    }
    if (rc < 0 || (rc == 0 && !text)) {
        free(text);
        return rc;
    }
    if (!text && !(text = strdup(""))) return -1;
#ifdef MESHLLAMA_HAVE_LIBEDIT
    if (in->editing && *text) add_history(text);
#endif
    *out = text;
    return 1;
}

void chat_input_close(chat_input *in) {
    if (!in) return;
    free(in->line);
    free(in);
}
