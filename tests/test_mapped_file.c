/* A checkpoint changed while it is mapped (issue 14): truncation raises SIGBUS on the next read
 * of a lost page, which the library's handler turns into zero pages and an ML_ERR_IO "FILE
 * changed or was truncated while in use"; an in-place rewrite of the same size is seen by
 * size and mtime; a replacement by rename is not an error and leaves the mapped bytes as they
 * were; a SIGBUS outside the library's mappings still ends the process. Then the same through
 * ml_forward on a fixture model, for safetensors and GGUF. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "meshllama.h"
#include "test_util.h"

static char tmpdir[2048];

/* File timestamps come from the kernel's coarse clock (one tick, up to 4 ms): a rewrite must
 * come a tick later than the mapping for its mtime to differ, as any real cp does. */
static void next_tick(void) {
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
}

static void write_pattern(const char *path, size_t size, unsigned char seed) {
    unsigned char *bytes = malloc(size);
    for (size_t i = 0; i < size; i++) bytes[i] = (unsigned char)(seed + i * 7 % 251) | 1;
    CHECK(ml_test_write_file(path, bytes, size) == 0, "cannot write %s", path);
    free(bytes);
}

static int names_change(const char *message, const char *path) {
    return strstr(message, path) && strstr(message, "changed or was truncated while in use");
}

static void truncated_while_mapped(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/truncated.bin", tmpdir);
    size_t size = 3 * 65536;
    write_pattern(path, size, 3);
    ml_mapped_file file;
    CHECK(ml_mapped_file_open(path, &file) == ML_OK, "%s", ml_last_error());
    CHECK(ml_mapped_file_check(&file) == ML_OK, "fresh mapping reported changed: %s", ml_last_error());
    CHECK(truncate(path, 0) == 0, "truncate failed");
    /* Without the handler this read is "Bus error", exit 135. */
    volatile unsigned char past_end = file.data[size - 1];
    CHECK(past_end == 0, "a read of a truncated page gave %d, want the handler's zero page", past_end);
    int status = ml_mapped_file_check(&file);
    CHECK(status == ML_ERR_IO && names_change(ml_last_error(), path), "truncation: status %d: %s", status,
          ml_last_error());
    printf("  truncated while mapped      -> %s\n", ml_last_error());
    ml_mapped_file_close(&file);
}

static void rewritten_in_place(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/rewritten.bin", tmpdir);
    size_t size = 65536;
    write_pattern(path, size, 5);
    ml_mapped_file file;
    CHECK(ml_mapped_file_open(path, &file) == ML_OK, "%s", ml_last_error());
    next_tick();
    /* same size, other bytes, same inode: what `cp other file` leaves behind */
    int fd = open(path, O_WRONLY);
    unsigned char other[4096];
    memset(other, 0xEE, sizeof other);
    CHECK(fd >= 0 && pwrite(fd, other, sizeof other, 0) == (ssize_t)sizeof other, "cannot rewrite %s", path);
    if (fd >= 0) close(fd);
    int status = ml_mapped_file_check(&file);
    CHECK(status == ML_ERR_IO && names_change(ml_last_error(), path), "same-size rewrite: status %d: %s", status,
          ml_last_error());
    printf("  rewritten in place          -> %s\n", ml_last_error());
    ml_mapped_file_close(&file);
}

static void replaced_by_rename(void) {
    char path[4096], fresh[4096];
    snprintf(path, sizeof path, "%s/renamed.bin", tmpdir);
    snprintf(fresh, sizeof fresh, "%s/renamed.bin.new", tmpdir);
    size_t size = 65536;
    write_pattern(path, size, 9);
    ml_mapped_file file;
    CHECK(ml_mapped_file_open(path, &file) == ML_OK, "%s", ml_last_error());
    unsigned char before = file.data[size / 2];
    next_tick();
    write_pattern(fresh, size / 2, 77);
    CHECK(rename(fresh, path) == 0, "rename failed");
    CHECK(ml_mapped_file_check(&file) == ML_OK, "replacement by rename reported: %s", ml_last_error());
    CHECK(file.data[size / 2] == before, "the mapped bytes changed after a rename");
    ml_mapped_file_close(&file);
}

/* A SIGBUS that is not in a checkpoint mapping is not ours to hide: the process still dies. */
static void foreign_fault_still_fatal(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/foreign.bin", tmpdir);
    write_pattern(path, 65536, 11);
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        ml_mapped_file_install_sigbus_handler();
        int fd = open(path, O_RDONLY);
        const volatile unsigned char *raw = mmap(NULL, 65536, PROT_READ, MAP_PRIVATE, fd, 0);
        if (raw == MAP_FAILED || truncate(path, 0) != 0) _exit(2);
        unsigned char value = raw[65535];
        _exit(value == 0 ? 3 : 4); /* reached only if the fault was swallowed */
    }
    int wstatus = 0;
    waitpid(child, &wstatus, 0);
    /* SIGBUS, or SIGABRT when a sanitizer's handler (chained to) reports it */
    CHECK(WIFSIGNALED(wstatus), "a foreign SIGBUS did not end the process (exit %d)",
          WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buf[65536];
    size_t got;
    while (ok && (got = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, got, out) == got;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok ? 0 : -1;
}

static int forward_one(ml_model *model, float *logits) {
    int slot = 0, start = 0, n = 3;
    int32_t tokens[3] = {1, 2, 3};
    ml_batch batch = {1, &slot, &start, &n, tokens, 0};
    ml_reset_slot(model, 0);
    return ml_forward(model, &batch, logits);
}

/* model_file: the checkpoint file inside dir that gets truncated (dir itself for a GGUF). */
static void model_case(const char *what, const char *fixture, const char *const *files, int n_files,
                       const char *victim, int open_dir) {
    char dir[3072], from[8192], to[8192];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, what);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    for (int i = 0; i < n_files; i++) {
        snprintf(from, sizeof from, "%s/%s", fixture, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        CHECK(copy_file(from, to) == 0, "copy %s", from);
    }
    char open_path[4096], victim_path[4096];
    snprintf(victim_path, sizeof victim_path, "%s/%s", dir, victim);
    snprintf(open_path, sizeof open_path, "%s", open_dir ? dir : victim_path);
    ml_model_params params = ml_model_default_params();
    params.n_threads = 2;
    params.max_seq_len = 16;

    /* replaced by rename while open: nothing changes for the open model */
    ml_model *model = NULL;
    CHECK(ml_model_open(open_path, &params, &model) == ML_OK, "%s: %s", what, ml_last_error());
    if (!model) return;
    ml_model_info info;
    ml_model_get_info(model, &info);
    float *logits = malloc((size_t)info.vocab_size * sizeof *logits);
    float *before = malloc((size_t)info.vocab_size * sizeof *before);
    CHECK(forward_one(model, before) == ML_OK, "%s: first forward: %s", what, ml_last_error());
    char fresh[4200];
    snprintf(fresh, sizeof fresh, "%s.new", victim_path);
    next_tick();
    CHECK(copy_file(victim_path, fresh) == 0 && rename(fresh, victim_path) == 0, "%s: replace by rename", what);
    CHECK(forward_one(model, logits) == ML_OK, "%s: forward after a rename-replacement: %s", what, ml_last_error());
    CHECK(memcmp(logits, before, (size_t)info.vocab_size * sizeof *logits) == 0,
          "%s: logits changed after a rename-replacement", what);
    ml_model_close(model);

    /* truncated in place while open: an error naming the file, not a crash */
    model = NULL;
    CHECK(ml_model_open(open_path, &params, &model) == ML_OK, "%s: %s", what, ml_last_error());
    if (model) {
        CHECK(forward_one(model, logits) == ML_OK, "%s: forward: %s", what, ml_last_error());
        next_tick();
        CHECK(truncate(victim_path, 0) == 0, "%s: truncate", what);
        int status = forward_one(model, logits);
        CHECK(status == ML_ERR_IO && names_change(ml_last_error(), victim_path),
              "%s: forward after truncation: %d: %s", what, status, ml_last_error());
        printf("  %-27s -> %s\n", what, ml_last_error());
        ml_model_close(model);
    }
    free(logits);
    free(before);
}

int main(void) {
    if (ml_test_make_tmpdir(tmpdir, sizeof tmpdir, "mapped_file") != 0) {
        CHECK(0, "cannot make a temporary directory");
        return ml_test_finish("test_mapped_file");
    }
    CHECK(ml_mapped_file_install_sigbus_handler() == ML_OK, "%s", ml_last_error());
    CHECK(ml_install_sigbus_handler() == ML_OK, "second install: %s", ml_last_error());
    printf("mapped files:\n");
    truncated_while_mapped();
    rewritten_in_place();
    replaced_by_rename();
    foreign_fault_still_fatal();

    printf("models:\n");
    char fixture[4096];
    ml_test_fixture_path(fixture, sizeof fixture, "gqa_tied_bf16");
    static const char *const safetensors_files[] = {"config.json", "generation_config.json", "model.safetensors"};
    model_case("safetensors", fixture, safetensors_files, 3, "model.safetensors", 1);
    ml_test_fixture_path(fixture, sizeof fixture, "gguf");
    static const char *const gguf_files[] = {"gqa_tied_q8_0.gguf"};
    model_case("gguf q8_0", fixture, gguf_files, 1, "gqa_tied_q8_0.gguf", 0);
    ml_shutdown();
    return ml_test_finish("test_mapped_file");
}
