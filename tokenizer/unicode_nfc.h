/* Unicode normalisation form C (UAX #15) of UTF-8 text: HF tokenizers' NFC normalizer (Qwen2's
 * tokenizer.json has one). */
#ifndef ML_TOKENIZER_UNICODE_NFC_H
#define ML_TOKENIZER_UNICODE_NFC_H

#include <stddef.h>
#include <stdint.h>

/* text[0..length) in NFC. *out is NULL when the text is unchanged by NFC for sure (no byte above
 * 0x7F), else a malloc'd buffer of *out_length bytes (free it). Invalid UTF-8 bytes pass through
 * unchanged and, like a starter that composes with nothing, block reordering and composition
 * across them (so each valid run is normalised on its own). Returns ML_OK or ML_ERR_NOMEM. */
int ml_nfc(const uint8_t *text, size_t length, uint8_t **out, size_t *out_length);

#endif
