/* libFuzzer harness: the eval reference reader (MLEVREF, tools/hf_reference.py) on arbitrary
 * bytes. A parse either fails with a message and leaves nothing allocated, or every array it
 * returns has the sizes the header claims (read end to end here, so ASan sees any overrun). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/eval_reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = malloc(size ? size : 1);
    if (!image) return 0;
    if (size) memcpy(image, data, size);
    ml_eval_reference ref;
    memset(&ref, 0, sizeof ref);
    if (ml_eval_reference_parse(image, size, "fuzz.bin", &ref) == 0) {
        if (ref.n_prompt < 1 || ref.n_decode < 0 || ref.top_k < 0 || ref.n_logit_steps < 0 || ref.vocab_size < 1)
            abort();
        float acc = 0;
        for (int i = 0; i < ref.n_prompt; i++) acc += (float)ref.prompt[i];
        for (int i = 0; i < ref.n_decode; i++) acc += (float)ref.tokens[i];
        for (size_t i = 0; i < (size_t)ref.n_decode * (size_t)ref.top_k; i++) acc += (float)ref.top_ids[i] + ref.top_logits[i];
        for (size_t i = 0; i < (size_t)ref.n_logit_steps * (size_t)ref.vocab_size; i++) acc += ref.logits[i];
        if (ref.meta_json) acc += (float)strlen(ref.meta_json);
        sink = acc;
        ml_eval_reference_free(&ref);
    }
    free(image);
    return 0;
}
