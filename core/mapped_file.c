#include "core/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

#define ML_HUGE_PAGE ML_MAPPED_HUGE_PAGE

/* ---- the fault registry ------------------------------------------------------------------
 * A file mapped with mmap raises SIGBUS when a page is read past the end of the file, which is
 * what happens to a checkpoint truncated or rewritten in place (cp truncates first) while it is
 * mapped. The handler finds the mapping that holds the faulting address, maps anonymous zero
 * pages over it (the read then completes, with zeros) and flags it; ml_mapped_file_check turns
 * the flag into an error at the next step. The handler reads the registry without a lock: a
 * slot is published by storing its begin address last. */
#define ML_MAX_MAPPINGS 1024

typedef struct {
    _Atomic uintptr_t begin; /* 0: free */
    uintptr_t end;           /* page-rounded */
    volatile sig_atomic_t faulted;
    int used;                /* under registry_lock */
} mapping_slot;

static mapping_slot registry[ML_MAX_MAPPINGS];
static atomic_int registry_high; /* slots [0, registry_high) may be in use */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous_sigbus;

static int registry_add(const void *data, size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    pthread_mutex_lock(&registry_lock);
    int slot = -1;
    for (int i = 0; i < ML_MAX_MAPPINGS && slot < 0; i++)
        if (!registry[i].used) slot = i;
    if (slot >= 0) {
        registry[slot].used = 1;
        registry[slot].end = (uintptr_t)data + (size + page - 1) / page * page;
        registry[slot].faulted = 0;
        atomic_store(&registry[slot].begin, (uintptr_t)data);
        if (slot + 1 > atomic_load(&registry_high)) atomic_store(&registry_high, slot + 1);
    }
    pthread_mutex_unlock(&registry_lock);
    return slot; /* -1 (registry full): the mapping is only checked by fstat */
}

static void registry_remove(int slot) {
    if (slot < 0) return;
    pthread_mutex_lock(&registry_lock);
    atomic_store(&registry[slot].begin, 0);
    registry[slot].used = 0;
    pthread_mutex_unlock(&registry_lock);
}

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    int high = atomic_load(&registry_high);
    for (int i = 0; i < high; i++) {
        uintptr_t begin = atomic_load(&registry[i].begin);
        if (begin == 0 || address < begin || address >= registry[i].end) continue;
        /* mmap is a plain system call on Linux, safe here in practice though POSIX does not list it */
        void *zeros = mmap((void *)begin, registry[i].end - begin, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                           -1, 0);
        if (zeros == MAP_FAILED) break;
        registry[i].faulted = 1;
        return;
    }
    /* Not a checkpoint mapping: whatever handled SIGBUS before us decides. */
    if (previous_sigbus.sa_flags & SA_SIGINFO) {
        previous_sigbus.sa_sigaction(sig, info, context);
    } else if (previous_sigbus.sa_handler != SIG_DFL && previous_sigbus.sa_handler != SIG_IGN) {
        previous_sigbus.sa_handler(sig);
    } else {
        /* Back to the default action; the faulting read runs again and the fault ends the
         * process as it would have without us. */
        struct sigaction fallback;
        memset(&fallback, 0, sizeof fallback);
        fallback.sa_handler = SIG_DFL;
        sigemptyset(&fallback.sa_mask);
        sigaction(SIGBUS, &fallback, NULL);
    }
}

int ml_mapped_file_install_sigbus_handler(void) {
    pthread_mutex_lock(&registry_lock);
    struct sigaction current;
    int status = ML_OK;
    if (sigaction(SIGBUS, NULL, &current) != 0) {
        status = ml_set_error(ML_ERR_INTERNAL, "sigaction(SIGBUS): %s", strerror(errno));
    } else if (!((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigbus)) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = on_sigbus;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&action.sa_mask);
        previous_sigbus = current;
        if (sigaction(SIGBUS, &action, NULL) != 0)
            status = ml_set_error(ML_ERR_INTERNAL, "sigaction(SIGBUS): %s", strerror(errno));
    }
    pthread_mutex_unlock(&registry_lock);
    return status;
}

int ml_install_sigbus_handler(void) { return ml_mapped_file_install_sigbus_handler(); }

static int64_t mtime_ns(const struct stat *st) { return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec; }

int ml_mapped_file_check(const ml_mapped_file *file) {
    if (!file || !file->path || file->fd < 0) return ML_OK;
    int changed = file->slot >= 0 && registry[file->slot].faulted;
    struct stat st;
    if (!changed && fstat(file->fd, &st) == 0)
        changed = (size_t)st.st_size != file->size || mtime_ns(&st) != file->mtime_ns;
    if (changed) return ml_set_error(ML_ERR_IO, "%s changed or was truncated while in use", file->path);
    return ML_OK;
}

int ml_mapped_files_check(const ml_mapped_file *files, int n_files) {
    for (int i = 0; i < n_files; i++) ML_TRY(ml_mapped_file_check(&files[i]));
    return ML_OK;
}

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
    out->fd = -1;
    out->slot = -1;
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
        out->slot = registry_add(data, out->size);
    }
    out->fd = fd;
    out->mtime_ns = mtime_ns(&st);
    return ML_OK;
}

void ml_mapped_file_close(ml_mapped_file *file) {
    if (!file) return;
    if (file->path) {
        registry_remove(file->slot);
        if (file->fd >= 0) close(file->fd);
    }
    if (file->data) munmap((void *)file->data, file->size);
    free(file->path);
    memset(file, 0, sizeof *file);
    file->fd = -1;
    file->slot = -1;
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

char *ml_path_join(const char *dir, const char *name) {
    size_t dir_length = strlen(dir), name_length = strlen(name);
    char *path = malloc(dir_length + 1 + name_length + 1);
    if (!path) return NULL;
    memcpy(path, dir, dir_length);
    path[dir_length] = '/';
    memcpy(path + dir_length + 1, name, name_length + 1);
    return path;
}
