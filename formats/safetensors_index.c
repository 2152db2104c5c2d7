/* Checkpoint directories: model.safetensors.index.json ({"weight_map": {tensor: shard file}})
 * naming several shards, or a single model.safetensors. Each shard is mapped once; every tensor
 * the index names must be in the shard it names, and no tensor may live in two shards. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/json_util.h"
#include "formats/safetensors.h"

#define ML_INDEX_NAME "model.safetensors.index.json"
#define ML_SINGLE_NAME "model.safetensors"

typedef struct {
    const char *tensor;  /* borrowed from the index JSON */
    const char *shard;   /* borrowed from the index JSON */
    int file_index;
} index_entry;

static int compare_entries_by_shard(const void *a, const void *b) {
    const index_entry *x = a, *y = b;
    int order = strcmp(x->shard, y->shard);
    return order ? order : strcmp(x->tensor, y->tensor);
}

/* Shards must sit beside the index: a plain file name, no directories, no "..". */
static int is_plain_file_name(const char *name) {
    return name[0] != '\0' && strchr(name, '/') == NULL && strstr(name, "..") == NULL && strcmp(name, ".") != 0;
}

/* Reads weight_map into entries (sorted by shard) and numbers the distinct shards. */
static int read_weight_map(const char *index_path, const json_t *root, index_entry **out_entries,
                           size_t *out_count, int *out_n_shards) {
    *out_entries = NULL;
    if (!json_is_object(root)) {
        return ml_set_error(ML_ERR_FORMAT, "%s: expected a JSON object at the top level", index_path);
    }
    const json_t *weight_map = json_object_get(root, "weight_map");
    if (!json_is_object(weight_map) || json_object_size(weight_map) == 0) {
        char found[96] = "nothing";
        if (weight_map) ml_json_describe(weight_map, found, sizeof found);
        return ml_set_error(ML_ERR_FORMAT, "%s: key \"weight_map\": expected a non-empty object {tensor: shard file}, found %s",
                            index_path, found);
    }
    size_t count = json_object_size(weight_map);
    index_entry *entries = calloc(count, sizeof *entries);
    if (!entries) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %zu index entries", index_path, count);
    size_t n = 0;
    const char *tensor;
    json_t *shard;
    json_object_foreach((json_t *)weight_map, tensor, shard) {
        if (!json_is_string(shard) || !is_plain_file_name(json_string_value(shard))) {
            char found[96];
            ml_json_describe(shard, found, sizeof found);
            free(entries);
            return ml_set_error(ML_ERR_FORMAT, "%s: weight_map[\"%s\"]: expected a shard file name in the same directory, found %s",
                                index_path, tensor, found);
        }
        entries[n].tensor = tensor;
        entries[n].shard = json_string_value(shard);
        n++;
    }
    qsort(entries, n, sizeof *entries, compare_entries_by_shard);
    int n_shards = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(entries[i].shard, entries[i - 1].shard) != 0) n_shards++;
        entries[i].file_index = n_shards - 1;
    }
    *out_entries = entries;
    *out_count = n;
    *out_n_shards = n_shards;
    return ML_OK;
}

/* Maps and parses every shard; entries are sorted by shard so each one's first entry opens it. */
static int open_shards(const char *dir, const char *index_path, const index_entry *entries, size_t count,
                       int n_shards, ml_weight_set *out) {
    out->files = calloc((size_t)n_shards, sizeof *out->files);
    if (!out->files) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %d shards", index_path, n_shards);
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && entries[i].file_index == entries[i - 1].file_index) continue;
        char *shard_path = ml_path_join(dir, entries[i].shard);
        if (!shard_path) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", index_path);
        int status;
        if (!ml_file_exists(shard_path)) {
            status = ml_set_error(ML_ERR_IO, "%s: shard \"%s\" (holding tensor \"%s\") is missing: no file %s",
                                  index_path, entries[i].shard, entries[i].tensor, shard_path);
        } else {
            status = ml_mapped_file_open(shard_path, &out->files[out->n_files]);
        }
        free(shard_path);
        if (status != ML_OK) return status;
        ml_mapped_file *file = &out->files[out->n_files++];
        ML_TRY(ml_safetensors_parse(file->data, file->size, file->path, entries[i].file_index, &out->tensors,
                                    &out->n_tensors));
    }
    return ML_OK;
}

static int check_against_index(const char *index_path, const index_entry *entries, size_t count,
                               const ml_weight_set *st) {
    for (int i = 1; i < st->n_tensors; i++) {
        const ml_tensor_view *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (strcmp(a->name, b->name) == 0) {
            return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\" is stored twice: in %s and in %s", index_path, a->name,
                                st->files[a->file_index].path, st->files[b->file_index].path);
        }
    }
    for (size_t i = 0; i < count; i++) {
        const ml_tensor_view *view = ml_weight_set_find(st, entries[i].tensor);
        if (!view) {
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"%s\" is listed for shard \"%s\", but %s does not contain it",
                                index_path, entries[i].tensor, entries[i].shard,
                                st->files[entries[i].file_index].path);
        }
        if (view->file_index != entries[i].file_index) {
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"%s\" is listed for shard \"%s\", but it is in %s", index_path,
                                entries[i].tensor, entries[i].shard, st->files[view->file_index].path);
        }
    }
    return ML_OK;
}

static int open_index(const char *dir, const char *index_path, ml_weight_set *out) {
    char *text;
    size_t size;
    ML_TRY(ml_read_text_file(index_path, &text, &size));
    json_t *root;
    int status = ml_json_load(text, size, index_path, "safetensors index", ML_ERR_FORMAT, &root);
    free(text);
    if (status != ML_OK) return status;
    index_entry *entries = NULL;
    size_t count = 0;
    int n_shards = 0;
    status = read_weight_map(index_path, root, &entries, &count, &n_shards);
    if (status == ML_OK) status = open_shards(dir, index_path, entries, count, n_shards, out);
    if (status == ML_OK) {
        ml_weight_set_sort(out);
        status = check_against_index(index_path, entries, count, out);
    }
    free(entries);
    json_decref(root);
    return status;
}

int ml_safetensors_open_dir(const char *dir, ml_weight_set *out) {
    memset(out, 0, sizeof *out);
    if (!dir) return ml_set_error(ML_ERR_ARG, "ml_safetensors_open_dir: directory is NULL");
    struct stat dir_stat;
    if (stat(dir, &dir_stat) != 0) {
        return ml_set_error(ML_ERR_IO, "%s: model directory does not exist (%s)", dir, strerror(errno));
    }
    if (!S_ISDIR(dir_stat.st_mode)) return ml_set_error(ML_ERR_IO, "%s: expected a model directory, found a file", dir);

    char *index_path = ml_path_join(dir, ML_INDEX_NAME);
    char *single_path = ml_path_join(dir, ML_SINGLE_NAME);
    int status;
    if (!index_path || !single_path) {
        status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory building paths", dir);
    } else if (ml_file_exists(index_path)) {
        status = open_index(dir, index_path, out);
        if (status != ML_OK) ml_weight_set_close(out);
    } else if (ml_file_exists(single_path)) {
        status = ml_safetensors_open_file(single_path, out);
    } else {
        status = ml_set_error(ML_ERR_IO, "%s: no " ML_SINGLE_NAME " or " ML_INDEX_NAME, dir);
    }
    free(index_path);
    free(single_path);
    return status;
}
