/* libFuzzer harness: the HF logit reference reader (MLHFREF1 versions 1 and 2) on arbitrary
 * bytes. A parse either fails with a message, or every array it returns has the sizes the
 * header claims (read end to end here, so ASan sees any overrun). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_reference.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = fuzz_copy(data, size);
    if (!image) return 0;
    ml_hf_reference ref;
    memset(&ref, 0, sizeof ref);
    if (ml_hf_reference_parse(image, size, "fuzz.bin", &ref) == 0) {
        if (ref.n_prompt < 1 || ref.n_generated < 0 || ref.vocab_size < 1 || ref.logits_first < 0 ||
            ref.logits_first > ref.n_prompt)
            abort();
        size_t rows = (size_t)(ref.n_prompt - ref.logits_first);
        fuzz_touch(ref.prompt_ids, (size_t)ref.n_prompt * sizeof *ref.prompt_ids);
        fuzz_touch(ref.generated_ids, (size_t)ref.n_generated * sizeof *ref.generated_ids);
        fuzz_touch(ref.logits, rows * (size_t)ref.vocab_size * sizeof *ref.logits);
        ml_hf_reference_free(&ref);
    }
    free(image);
    return 0;
}
