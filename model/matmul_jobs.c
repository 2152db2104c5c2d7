/* Splitting matrix products over the thread pool. All jobs of one step (every device's q, k
 * and v, say) run in one parallel region, so all cores work whatever tp is. A task is a block
 * of rows times a block of tokens; the kernels guarantee that an output does not depend on
 * the blocking, so results are identical for any thread count.
 *
 * Sizes. A task's weight rows are read from memory once for all its tokens (the kernels keep
 * a tile in L2 while the tokens pass), so a decode step of up to ML_TOKENS_PER_TASK sequences
 * reads each weight once. Rows are split into about ML_TASKS_PER_THREAD blocks per thread:
 * enough that a thread slowed by another process does not hold the region up by much, few
 * enough that each task streams a long contiguous run of memory. Row blocks are multiples of
 * 48 rows (the kernels' 8-, 4- and 3-row blocks all divide it), at most ML_MAX_ROWS_PER_TASK.
 *
 * Fast mode: a job's x_bf16 holds the bf16 activations and x the same values widened to f32
 * (forward.c keeps both). Unless the kernel table has a bf16 dot-product instruction, its
 * matmul_bf16 on x gives the same bits as matmul_bf16_bf16 on x_bf16 without widening x in the
 * inner loop, so x_bf16 is used only where bf16_dot_product is set. */
#include "core/error.h"
#include "model/model_internal.h"

#define ML_MAX_MATMUL_JOBS 256

/* Tokens per task: 128 tokens of a prefill chunk share one pass over the task's weights. */
#define ML_TOKENS_PER_TASK 128
#ifndef ML_TASKS_PER_THREAD
#define ML_TASKS_PER_THREAD 6
#endif
#ifndef ML_ROW_QUANTUM
#define ML_ROW_QUANTUM 48
#endif
#define ML_MAX_ROWS_PER_TASK 2400

typedef struct {
    const ml_model *model;
    const ml_matmul_job *jobs;
    int n_jobs;
    int rows_per_task;
    int task_begin[ML_MAX_MATMUL_JOBS + 1]; /* first task index of each job */
    int row_blocks[ML_MAX_MATMUL_JOBS];
} matmul_plan;

static void matmul_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const matmul_plan *plan = ctx;
    int j = 0;
    while (task >= plan->task_begin[j + 1]) j++;
    const ml_matmul_job *job = &plan->jobs[j];
    int local = task - plan->task_begin[j];
    int row_block = local % plan->row_blocks[j];
    int tok_block = local / plan->row_blocks[j];
    int row_begin = row_block * plan->rows_per_task;
    int row_end = row_begin + plan->rows_per_task < job->n_rows ? row_begin + plan->rows_per_task : job->n_rows;
    int tok_begin = tok_block * ML_TOKENS_PER_TASK;
    int n_tok = job->n_tok - tok_begin < ML_TOKENS_PER_TASK ? job->n_tok - tok_begin : ML_TOKENS_PER_TASK;
    float *y = job->y + (size_t)tok_begin * job->ldy;
    const ml_cpu_kernels *k = plan->model->kernels;
    if (job->w.dtype == ML_DTYPE_BF16 && job->x_bf16 && (k->bf16_dot_product || !job->x)) {
        k->matmul_bf16_bf16(y, job->ldy, job->x_bf16 + (size_t)tok_begin * job->ldx, job->ldx, job->w.data, job->n_in,
                            n_tok, row_begin, row_end);
        return;
    }
    const float *x = job->x + (size_t)tok_begin * job->ldx;
    switch (job->w.dtype) {
    case ML_DTYPE_BF16:
        k->matmul_bf16(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, row_begin, row_end);
        break;
    case ML_DTYPE_F16:
        k->matmul_f16(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, row_begin, row_end);
        break;
    default:
        k->matmul_f32(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, row_begin, row_end);
        break;
    }
}

void ml_run_matmuls(ml_model *model, const ml_matmul_job *jobs, int n_jobs) {
    /* Callers pass at most 3 jobs per device and tp <= n_heads; larger lists run in batches. */
    while (n_jobs > ML_MAX_MATMUL_JOBS) {
        ml_run_matmuls(model, jobs, ML_MAX_MATMUL_JOBS);
        jobs += ML_MAX_MATMUL_JOBS;
        n_jobs -= ML_MAX_MATMUL_JOBS;
    }
    matmul_plan plan;
    plan.model = model;
    plan.jobs = jobs;
    plan.n_jobs = n_jobs;
    long long total_rows = 0;
    for (int j = 0; j < n_jobs; j++) total_rows += jobs[j].n_rows;
    int threads = ml_pool_threads(model->pool);
    long long rows = total_rows / ((long long)threads * ML_TASKS_PER_THREAD);
    rows = (rows + ML_ROW_QUANTUM / 2) / ML_ROW_QUANTUM * ML_ROW_QUANTUM;
    if (rows < ML_ROW_QUANTUM) rows = ML_ROW_QUANTUM;
    if (rows > ML_MAX_ROWS_PER_TASK) rows = ML_MAX_ROWS_PER_TASK;
    plan.rows_per_task = (int)rows;
    plan.task_begin[0] = 0;
    for (int j = 0; j < n_jobs; j++) {
        int row_blocks = (jobs[j].n_rows + plan.rows_per_task - 1) / plan.rows_per_task;
        int tok_blocks = (jobs[j].n_tok + ML_TOKENS_PER_TASK - 1) / ML_TOKENS_PER_TASK;
        if (jobs[j].n_rows == 0 || jobs[j].n_tok == 0) row_blocks = tok_blocks = 0;
        plan.row_blocks[j] = row_blocks > 0 ? row_blocks : 1;
        plan.task_begin[j + 1] = plan.task_begin[j] + row_blocks * tok_blocks;
    }
    ml_pool_run(model->pool, matmul_task, &plan, plan.task_begin[n_jobs]);
}
