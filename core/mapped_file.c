#include "core/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

#define ML_HUGE_PAGE ((size_t)2 << 20)

/* Maps fd read-only at a 2 MiB-aligned address and asks for transparent huge pages: where the
 * kernel keeps the file's page cache in 2 MiB folios (ext4 and XFS on Linux 6.x read a file
 * mapped this way into them), each 2 MiB of weights is then one TLB entry and one page fault
 * instead of 512. Elsewhere the advice is ignored and this is an ordinary mapping. */
static void *map_aligned(int fd, size_t size) {
    size_t span = size + ML_HUGE_PAGE;
    char *reserve = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserve == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    char *aligned = (char *)(((uintptr_t)reserve + ML_HUGE_PAGE - 1) & ~(uintptr_t)(ML_HUGE_PAGE - 1));
    void *data = mmap(aligned, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (data == MAP_FAILED) {
        munmap(reserve, span);
        return MAP_FAILED;
    }
    /* give back the reservation around the mapping */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t mapped_end = ((size_t)(aligned - reserve) + size + page - 1) / page * page;
    if (aligned > reserve) munmap(reserve, (size_t)(aligned - reserve));
    if (mapped_end < span) munmap(reserve + mapped_end, span - mapped_end);
#ifdef MADV_HUGEPAGE
    madvise(data, size, MADV_HUGEPAGE);
#endif
    return data;
}

int ml_mapped_file_open(const char *path, ml_mapped_file *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ml_set_error(ML_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return ml_set_error(ML_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ml_set_error(ML_ERR_IO, "%s: not a regular file", path);
    }
    out->path = strdup(path);
    if (!out->path) {
        close(fd);
        return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        void *data = map_aligned(fd, out->size);
        if (data == MAP_FAILED) {
            int err = errno;
            close(fd);
            free(out->path);
            out->path = NULL;
            return ml_set_error(ML_ERR_IO, "%s: cannot map %zu bytes: %s", path, (size_t)st.st_size, strerror(err));
        }
        out->data = data;
    }
    close(fd);
    return ML_OK;
}

void ml_mapped_file_close(ml_mapped_file *file) {
    if (!file) return;
    if (file->data) munmap((void *)file->data, file->size);
    free(file->path);
    memset(file, 0, sizeof *file);
}

int ml_read_text_file(const char *path, char **out_text, size_t *out_size) {
    *out_text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ml_set_error(ML_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t capacity = 4096, size = 0;
    char *text = malloc(capacity);
    while (text) {
        size_t got = fread(text + size, 1, capacity - size - 1, f);
        size += got;
        if (size + 1 < capacity) break;
        char *grown = realloc(text, capacity * 2);
        if (!grown) {
            free(text);
            text = NULL;
            break;
        }
        text = grown;
        capacity *= 2;
    }
    int read_failed = ferror(f);
    fclose(f);
    if (!text) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory reading file", path);
    if (read_failed) {
        free(text);
        return ml_set_error(ML_ERR_IO, "%s: read error", path);
    }
    text[size] = '\0';
    *out_text = text;
    if (out_size) *out_size = size;
    return ML_OK;
}

int ml_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int ml_is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
