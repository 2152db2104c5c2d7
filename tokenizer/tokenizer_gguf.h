/* The tokenizer stored in a GGUF file, for code that already holds the parsed file (the model
 * loader). ml_tokenizer_open() reads .gguf paths by itself. */
#ifndef ML_TOKENIZER_GGUF_H
#define ML_TOKENIZER_GGUF_H

#include "formats/gguf.h"
#include "meshllama.h"

/* Reads tokenizer.ggml.model / pre / tokens / token_type / merges / bos_token_id /
 * eos_token_id / unknown_token_id / add_bos_token / add_eos_token and tokenizer.chat_template,
 * and builds the tokenizer with ml_tokenizer_from_arrays. The tokenizer copies what it needs, so
 * g may be closed afterwards. */
int ml_tokenizer_from_gguf(const ml_gguf *g, ml_tokenizer **out);

#endif
