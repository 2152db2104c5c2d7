/* libFuzzer harness: the input is a whole safetensors image. Every view handed out must lie
 * inside the image and agree with its shape and dtype; anything else is a reader bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = fuzz_copy(data, size);
    if (!image) return 0;

    ml_tensor_view *views = NULL;
    int n_views = 0;
    int status = ml_safetensors_parse(image, size, "fuzz.safetensors", 0, &views, &n_views);
    if (status != 0 && (views != NULL || n_views != 0)) abort(); /* failures append nothing */
    for (int i = 0; i < n_views; i++) {
        const ml_tensor_view *view = &views[i];
        size_t elements = 1;
        for (int d = 0; d < view->n_dims; d++) elements *= (size_t)view->shape[d];
        if (view->n_dims < 0 || view->n_dims > ML_MAX_DIMS) abort();
        if (elements * ml_dtype_size(view->dtype) != view->n_bytes) abort();
        if (view->n_bytes == 0) {
            if (view->data != NULL) abort();
            continue;
        }
        const uint8_t *begin = view->data;
        if (begin < image + 8 || view->n_bytes > size || begin > image + size - view->n_bytes) abort();
        /* Touch the first and last byte so that the sanitizer checks the bounds as well. */
        volatile uint8_t sink = begin[0] ^ begin[view->n_bytes - 1];
        (void)sink;
    }
    /* Sorted, every name must be found again (names are unique within one file). */
    ml_weight_set st = {.files = NULL, .n_files = 0, .tensors = views, .n_tensors = n_views};
    ml_weight_set_sort(&st);
    for (int i = 0; i < n_views; i++) {
        if (ml_weight_set_find(&st, views[i].name) != &views[i]) abort();
    }
    ml_weight_set_close(&st); /* frees the names and the array; no files to unmap */
    free(image);
    return 0;
}
