/* Byte-level BPE tokenizer (DESIGN.md layer 3): loaders for HF tokenizer.json, Meta's tiktoken
 * tokenizer.model and GGUF tokenizer metadata; encoding that matches HF `tokenizers` and
 * `tiktoken` token for token; decoding, streaming decoding and chat templates.
 *
 * Every function that can fail returns an ml_status code and records a message for
 * ml_last_error() naming the file and what is wrong. A tokenizer is immutable once loaded, so
 * one handle may be used by several threads at once. Free functions accept NULL.
 * docs/TOKENIZER.md describes the behaviour in detail. */
#ifndef ML_TOKENIZER_TOKENIZER_H
#define ML_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "meshllama.h"

/* The tokenizer's API is part of the public header. */
#endif
