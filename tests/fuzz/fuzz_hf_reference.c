/* libFuzzer harness: the HF logit reference reader (MLHFREF1 versions 1 and 2) on arbitrary
 * bytes. A parse either fails with a message, or every array it returns has the sizes the
 * header claims (read end to end here, so ASan sees any overrun). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = malloc(size ? size : 1);
    if (!image) return 0;
    if (size) memcpy(image, data, size);
    ml_hf_reference ref;
    memset(&ref, 0, sizeof ref);
    if (ml_hf_reference_parse(image, size, "fuzz.bin", &ref) == 0) {
        if (ref.n_prompt < 1 || ref.n_generated < 0 || ref.vocab_size < 1 || ref.logits_first < 0 ||
            ref.logits_first > ref.n_prompt)
            abort();
        float acc = 0;
        for (int i = 0; i < ref.n_prompt; i++) acc += (float)ref.prompt_ids[i];
        for (int i = 0; i < ref.n_generated; i++) acc += (float)ref.generated_ids[i];
        size_t rows = (size_t)(ref.n_prompt - ref.logits_first);
        for (size_t i = 0; i < rows * (size_t)ref.vocab_size; i++) acc += ref.logits[i];
        sink = acc;
        ml_hf_reference_free(&ref);
    }
    free(image);
    return 0;
}
