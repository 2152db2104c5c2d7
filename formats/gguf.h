/* GGUF v2/v3 (the llama.cpp / ggml model file), little-endian, parsed from memory or from a
 * memory-mapped file; see docs/GGUF.md for the layout, the checks and the ownership rules.
 *
 *   magic "GGUF" | u32 version | u64 tensor count | u64 kv count
 *   kv count x   (string key, u32 value type, value)
 *   tensor count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
 *   padding to general.alignment (default 32) | data section (tensor offsets are relative to it)
 *
 * A string is a u64 byte length and that many bytes (no NUL). Every count, length and offset is
 * checked against the bytes that remain before anything is allocated or read, so a malformed
 * file gives ML_ERR_FORMAT (or ML_ERR_UNSUPPORTED for a valid file this reader cannot use) and a
 * message naming the file and the key or tensor, never a crash. */
#ifndef ML_FORMATS_GGUF_H
#define ML_FORMATS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/mapped_file.h"
#include "formats/model_config.h"
#include "formats/weight_set.h"

#define ML_GGUF_MAX_DIMS 4
#define ML_GGUF_DEFAULT_ALIGNMENT 32
#define ML_GGUF_MAX_TENSOR_NAME 64   /* bytes, as the GGUF specification limits tensor names */
#define ML_GGUF_MAX_KEY 65535        /* bytes, as the specification limits keys */
#define ML_GGUF_MAX_NESTING 16       /* arrays of arrays deeper than this are refused */

/* Metadata value types (the numbering is the file's). */
typedef enum {
    ML_GGUF_UINT8 = 0,
    ML_GGUF_INT8 = 1,
    ML_GGUF_UINT16 = 2,
    ML_GGUF_INT16 = 3,
    ML_GGUF_UINT32 = 4,
    ML_GGUF_INT32 = 5,
    ML_GGUF_FLOAT32 = 6,
    ML_GGUF_BOOL = 7,
    ML_GGUF_STRING = 8,
    ML_GGUF_ARRAY = 9,
    ML_GGUF_UINT64 = 10,
    ML_GGUF_INT64 = 11,
    ML_GGUF_FLOAT64 = 12,
    ML_GGUF_TYPE_COUNT
} ml_gguf_type;

/* ggml tensor types this code names (the numbering is ggml's; other ids have traits below or are
 * unknown). */
typedef enum {
    ML_GGML_F32 = 0,
    ML_GGML_F16 = 1,
    ML_GGML_Q4_0 = 2,
    ML_GGML_Q4_1 = 3,
    ML_GGML_Q5_0 = 6,
    ML_GGML_Q5_1 = 7,
    ML_GGML_Q8_0 = 8,
    ML_GGML_Q2_K = 10,
    ML_GGML_Q3_K = 11,
    ML_GGML_Q4_K = 12,
    ML_GGML_Q5_K = 13,
    ML_GGML_Q6_K = 14,
    ML_GGML_Q8_K = 15,
    ML_GGML_IQ4_NL = 20,
    ML_GGML_BF16 = 30
} ml_ggml_type;

/* A string from the file, copied and NUL-terminated; length excludes the NUL (the bytes may
 * themselves hold NULs, so length is authoritative). */
typedef struct {
    const char *text;
    size_t length;
} ml_gguf_string;

typedef struct ml_gguf_value ml_gguf_value;
struct ml_gguf_value {
    ml_gguf_type type;
    union {
        uint64_t u64;          /* UINT8, UINT16, UINT32, UINT64; BOOL as 0 or 1 */
        int64_t i64;           /* INT8, INT16, INT32, INT64 */
        double f64;            /* FLOAT32 (widened exactly), FLOAT64 */
        ml_gguf_string str;    /* STRING */
        struct {
            ml_gguf_type type;        /* element type */
            size_t count;
            const uint8_t *raw;       /* scalar elements: count little-endian values in the image */
            ml_gguf_string *strings;  /* STRING elements [count] */
            ml_gguf_value *arrays;    /* ARRAY elements [count], each of type ML_GGUF_ARRAY */
        } array;               /* ARRAY */
    } as;
};

typedef struct {
    const char *key;       /* NUL-terminated; keys never hold NUL bytes */
    ml_gguf_value value;
} ml_gguf_kv;

typedef struct {
    const char *name;          /* NUL-terminated, 1..64 bytes */
    uint32_t type;             /* ggml type id as stored (ml_ggml_type or another id) */
    int type_known;            /* 0: an id without known block geometry; data/n_bytes are unset */
    int n_dims;                /* 1..4 */
    int64_t ne[ML_GGUF_MAX_DIMS]; /* ne[0] varies fastest (the columns); unused dims are 1. A
                                   * GGUF [ne0, ne1] matrix is Hugging Face's [ne1, ne0]. */
    uint64_t offset;           /* from the start of the data section; a multiple of the alignment */
    size_t n_elements;
    size_t n_bytes;            /* ne[0] / block size * ne[1..] * block bytes */
    const uint8_t *data;       /* [n_bytes] in the image; NULL when n_bytes == 0 or !type_known */
} ml_gguf_tensor;

typedef struct {
    char *source;              /* owned: the path or the caller's name, for messages */
    ml_mapped_file file;       /* owned mapping (ml_gguf_open); all zero after ml_gguf_parse */
    const uint8_t *image;      /* [image_size] the whole file */
    size_t image_size;
    uint32_t version;          /* 2 or 3 */
    uint32_t alignment;        /* general.alignment or 32 */
    size_t data_offset;        /* start of the data section in the image */
    ml_gguf_kv *kvs;           /* [n_kvs] in file order */
    size_t n_kvs;
    ml_gguf_tensor *tensors;   /* [n_tensors] in file order */
    size_t n_tensors;
    size_t *kv_order;          /* [n_kvs] indices sorted by key */
    size_t *tensor_order;      /* [n_tensors] indices sorted by name */
    void *arena;               /* owned: every key, name, string and nested array */
} ml_gguf;

/* Parses a GGUF image held in memory. The image is not copied: tensor data and scalar arrays
 * point into it, so it must outlive *out. source names the file in messages. On failure *out is
 * left empty (ml_gguf_close on it is harmless). */
int ml_gguf_parse(const uint8_t *data, size_t size, const char *source, ml_gguf *out);
/* Maps path read-only and parses it; *out owns the mapping. */
int ml_gguf_open(const char *path, ml_gguf *out);
/* Frees everything (and unmaps an ml_gguf_open file). NULL and empty handles are harmless. */
void ml_gguf_close(ml_gguf *g);

/* Lookups; NULL when absent. */
const ml_gguf_value *ml_gguf_find(const ml_gguf *g, const char *key);
const ml_gguf_tensor *ml_gguf_find_tensor(const ml_gguf *g, const char *name);

/* Typed getters. A missing key or a value of another type gives ML_ERR_CONFIG naming the file
 * and the key (check ml_gguf_find first for optional keys).
 * get_int: any integer type (a UINT64 above INT64_MAX is refused).
 * get_float: FLOAT32, FLOAT64 or any integer type.
 * get_string: *out_length may be NULL. */
int ml_gguf_get_int(const ml_gguf *g, const char *key, int64_t *out);
int ml_gguf_get_float(const ml_gguf *g, const char *key, double *out);
int ml_gguf_get_bool(const ml_gguf *g, const char *key, int *out);
int ml_gguf_get_string(const ml_gguf *g, const char *key, const char **out, size_t *out_length);
/* An array of strings (tokenizer.ggml.tokens, tokenizer.ggml.merges); points into g. */
int ml_gguf_get_string_array(const ml_gguf *g, const char *key, const ml_gguf_string **out, size_t *out_count);
/* An array of any integer type whose values all fit int32 (tokenizer.ggml.token_type), copied to
 * a malloc'd array that the caller frees (NULL when the array is empty). */
int ml_gguf_get_int32_array(const ml_gguf *g, const char *key, int32_t **out, size_t *out_count);
/* Element index of an integer or float array (index < count; 0 on success, -1 otherwise). */
int ml_gguf_array_int(const ml_gguf_value *array, size_t index, int64_t *out);
int ml_gguf_array_float(const ml_gguf_value *array, size_t index, double *out);
/* "UINT8", ..., "FLOAT64"; "unknown" for other ids. */
const char *ml_gguf_type_name(uint32_t type);

/* ggml tensor types (formats/gguf_dequant.c). */
typedef struct {
    const char *name;          /* "F32", "Q4_1", ... */
    uint32_t block_size;       /* elements per block (1 for plain types) */
    uint32_t type_size;        /* bytes per block */
    int can_dequantize;        /* ml_gguf_dequantize supports it */
} ml_ggml_type_traits;

/* Traits of a type id, or NULL for an id this build has no geometry for. */
const ml_ggml_type_traits *ml_ggml_traits(uint32_t type);
/* Name of a type id ("Q4_1"), or "unknown". */
const char *ml_ggml_type_name(uint32_t type);
/* The engine dtype that holds a type id as stored (F32, F16, BF16 and the block types of
 * core/dtype.h: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q8_K); 1 if there is one, else 0. */
int ml_ggml_type_dtype(uint32_t type, ml_dtype *out);
/* The types ml_gguf_dequantize converts, for error messages: "F32, F16, ...". */
#define ML_GGML_SUPPORTED_TYPES "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K"

/* Converts n_elements (a multiple of the block size) of type at src into float32, exactly as
 * gguf-py's quants.dequantize. Returns ML_ERR_UNSUPPORTED for a type it cannot convert. */
int ml_gguf_dequantize(uint32_t type, const void *src, size_t n_elements, float *dst);
/* The same for a whole tensor of g (dst holds t->n_elements floats); errors name file and tensor. */
int ml_gguf_tensor_to_f32(const ml_gguf *g, const ml_gguf_tensor *t, float *dst);

/* The llama architecture mapped to the engine (formats/gguf_llama.c, docs/GGUF.md).
 * Fills an ml_config from general.architecture == "llama" and the llama.* / tokenizer.ggml.*
 * keys, validated as formats/hf_config.c validates config.json. Llama 3 RoPE scaling is taken
 * from llama.rope.scaling.* keys or recovered from the rope_freqs.weight tensor. */
int ml_gguf_llama_config(const ml_gguf *g, ml_config *out);
/* Fills a weight set whose views carry Hugging Face names and shapes, with Q/K rows un-permuted
 * back to HF's rotate-half layout. Matrices (2-D) of a block type (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
 * IQ4_NL, Q2_K..Q8_K) stay in their ggml blocks (view dtype ML_DTYPE_Q8_0, ...: a row is
 * cols / 32 blocks, or cols / 256 super-blocks); F32/F16/BF16 tensors
 * keep their type; quantised 1-D tensors become float32. Tensors that need no change are
 * zero-copy views (quantised blocks at any alignment); the rest, the un-permuted Q/K
 * projections above all (whole rows of blocks copied), are owned buffers (out->owned).
 * out->files[0] is the weight set's own mapping of the same file (ml_gguf_open), or, for an
 * ml_gguf_parse image, an entry with only a path whose views point into the caller's image
 * (which must then outlive *out). Either way *out does not depend on g once this returns, and
 * ml_weight_set_close frees it. */
int ml_gguf_llama_weights(const ml_gguf *g, const ml_config *c, ml_weight_set *out);
/* ML_GGUF_DEQUANTIZE is the earlier behaviour (MESHLLAMA_GGUF_DEQUANTIZE=1, model/checkpoint.c):
 * every quantised tensor becomes float32, and the projections keep their file dtype only when
 * they all share one F32/F16/BF16 type (otherwise they all become float32). */
typedef enum { ML_GGUF_KEEP_QUANTIZED = 0, ML_GGUF_DEQUANTIZE = 1 } ml_gguf_quant_mode;
int ml_gguf_llama_weights_mode(const ml_gguf *g, const ml_config *c, ml_gguf_quant_mode mode, ml_weight_set *out);
/* The same, but the zero-copy views point into g's image (no second mapping of the file): g must
 * stay open until *out is closed. For a holder of both, such as model/checkpoint.c, that opens a
 * GGUF file once for its config, weights and tokenizer. And no matrix is copied here: one that
 * needs changing (Q/K rows un-permuted, a type converted) is a made-on-demand view
 * (formats/weight_set.h) whose rows are made from g's image when the model asks for them, so a
 * process makes only the rows of its own devices. */
int ml_gguf_llama_weights_borrowed(const ml_gguf *g, const ml_config *c, ml_gguf_quant_mode mode,
                                   ml_weight_set *out);

/* Llama 3 RoPE and llama.cpp's per-frequency divisors (formats/gguf_rope.c).
 * The divisors convert_hf_to_gguf.py stores as rope_freqs.weight for c's llama3 parameters
 * (c->head_dim / 2 floats, float32 arithmetic as the converter's). */
void ml_gguf_llama3_rope_factors(const ml_config *c, float *factors);
/* Recovers llama3 rope_factor / low / high / original_max_position from stored divisors (using
 * c->head_dim and c->rope_theta) and sets c->rope_type; all-ones divisors leave plain RoPE.
 * ML_ERR_UNSUPPORTED when no llama3 parameters reproduce every divisor (docs/GGUF.md). */
int ml_gguf_llama3_rope_from_factors(const float *factors, int n_factors, const char *source, ml_config *c);

#endif
