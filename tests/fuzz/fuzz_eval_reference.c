/* libFuzzer harness: the eval reference reader (MLEVREF, tools/hf_reference.py) on arbitrary
 * bytes. A parse either fails with a message and leaves nothing allocated, or every array it
 * returns has the sizes the header claims (read end to end here, so ASan sees any overrun). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/eval_reference.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = fuzz_copy(data, size);
    if (!image) return 0;
    ml_eval_reference ref;
    memset(&ref, 0, sizeof ref);
    if (ml_eval_reference_parse(image, size, "fuzz.bin", &ref) == 0) {
        if (ref.n_prompt < 1 || ref.n_decode < 0 || ref.top_k < 0 || ref.n_logit_steps < 0 || ref.vocab_size < 1)
            abort();
        size_t steps = (size_t)ref.n_decode * (size_t)ref.top_k;
        fuzz_touch(ref.prompt, (size_t)ref.n_prompt * sizeof *ref.prompt);
        fuzz_touch(ref.tokens, (size_t)ref.n_decode * sizeof *ref.tokens);
        fuzz_touch(ref.top_ids, steps * sizeof *ref.top_ids);
        fuzz_touch(ref.top_logits, steps * sizeof *ref.top_logits);
        fuzz_touch(ref.logits, (size_t)ref.n_logit_steps * (size_t)ref.vocab_size * sizeof *ref.logits);
        if (ref.meta_json) fuzz_touch(ref.meta_json, strlen(ref.meta_json) + 1);
        ml_eval_reference_free(&ref);
    }
    free(image);
    return 0;
}
