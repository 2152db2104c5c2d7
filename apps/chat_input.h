/* `meshllama chat` input: one message at a time from a terminal (line editing and history with
 * libedit when built with it) or from a pipe (plain reads). A line ending in `\` continues on
 * the next line; a line `"""` opens a block that runs to the next `"""` line. */
#ifndef ML_APPS_CHAT_INPUT_H
#define ML_APPS_CHAT_INPUT_H

typedef struct chat_input chat_input;

/* interactive: standard input is a terminal (prompts are shown, libedit edits). NULL: no memory. */
chat_input *chat_input_open(int interactive);
/* Reads one message into *out (malloc'd, no trailing newline; free() it).
 * Returns 1 for a message, 0 at the end of input, -1 on a read error (errno says why). */
int chat_input_read(chat_input *in, char **out);
void chat_input_close(chat_input *in);
/* Whether line editing (libedit) is in use. */
int chat_input_editing(const chat_input *in);

#endif
