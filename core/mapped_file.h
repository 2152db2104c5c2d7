/* Read-only memory-mapped files. */
#ifndef ML_CORE_MAPPED_FILE_H
#define ML_CORE_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *path;            /* owned copy, for error messages */
    const uint8_t *data;   /* [size] */
    size_t size;
    int fd;                /* kept open (fstat sees the mapped inode, not whatever the path names now) */
    int64_t mtime_ns;      /* st_mtim when mapped */
    int slot;              /* index in the fault registry; -1 when not registered */
} ml_mapped_file;

/* Mappings start on this boundary and ask for pages of this size (MADV_HUGEPAGE), so that huge
 * page-cache folios map as huge pages. */
#define ML_MAPPED_HUGE_PAGE ((size_t)2 << 20)

/* Maps path read-only. An empty file maps to data == NULL, size 0. The mapping is registered
 * with the SIGBUS handler below while it is open. */
int ml_mapped_file_open(const char *path, ml_mapped_file *out);
void ml_mapped_file_close(ml_mapped_file *file);

/* ML_OK while the file is as it was mapped. ML_ERR_IO "PATH changed or was truncated while in
 * use" when a read of the mapping faulted (the file was truncated; the handler below replaced
 * the mapping with zero pages so the read went on) or when the inode's size or modification
 * time differs from when it was mapped (rewritten in place, e.g. by cp). A file replaced by
 * rename keeps the old inode mapped and stays ML_OK. One fstat: cheap enough per forward step. */
int ml_mapped_file_check(const ml_mapped_file *file);
int ml_mapped_files_check(const ml_mapped_file *files, int n_files);

/* Installs the process-wide SIGBUS handler that turns a fault inside a registered mapping into
 * zero pages plus the flag ml_mapped_file_check reports; a fault anywhere else goes to the
 * handler it replaced (or kills the process as SIG_DFL would). Idempotent: does nothing while
 * the handler is already installed. ML_ERR_INTERNAL when sigaction fails. */
int ml_mapped_file_install_sigbus_handler(void);

/* Reads a whole (small) text file into a NUL-terminated malloc'd buffer. */
int ml_read_text_file(const char *path, char **out_text, size_t *out_size);
int ml_file_exists(const char *path);
/* "dir/name" in a new string (free it); NULL when out of memory. */
char *ml_path_join(const char *dir, const char *name);
int ml_is_directory(const char *path);

#endif
