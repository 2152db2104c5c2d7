/* Splitting matrix products over the thread pool. All jobs of one step (every device's q, k
 * and v, say) run in one parallel region, so all cores work whatever tp is. A task is a block
 * of rows times a block of tokens; the kernels guarantee that an output does not depend on
 * the blocking, so results are identical for any thread count.
 *
 * Sizes. A task's weight rows are read from memory once for all its tokens (the kernels keep
 * a tile in L2 while the tokens pass), so a decode step of up to ML_TOKENS_PER_TASK sequences
 * reads each weight once. Row blocks are cut "guided": each task takes 1/(ML_GUIDED_SHARE x
 * threads) of the rows still unassigned, so the first tasks are large (long contiguous streams,
 * few claims) and the last ones small (ML_ROW_QUANTUM rows), and the threads finish a region
 * within a small task of each other instead of up to a large one (with equal tasks that tail
 * cost about 7% of a 128-token prefill). Row blocks are multiples of 48 rows (the kernels' 8-,
 * 4- and 3-row blocks and the bf16 row groups of 16 all divide it) and at most
 * ML_MAX_ROWS_PER_TASK; a task never spans two jobs.
 *
 * Each job dispatches on its own weights' dtype (f32, f16, bf16, or a ggml block type), so the
 * matrices of one model may differ (a GGUF's Q4_1 projections beside its Q8_0 LM head; a
 * Q4_K_M file's Q4_K, Q6_K and Q5_0 matrices).
 *
 * Fast mode: a job's x_bf16 holds the bf16 activations and x the same values widened to f32
 * (forward.c keeps both). Unless the kernel table has a bf16 dot-product instruction, its
 * matmul_f32_bf16 on x gives the same bits as matmul_bf16_bf16 on x_bf16 without widening x in the
 * inner loop, so x_bf16 is used only where bf16_dot_product is set. Weights with int8 products
 * take the same activations quantised to int8 (forward.c quantises them where it rounds them
 * to bf16): Q8_0, Q4_0, Q4_1 (ml_q8_supports) x_q8, blocks of 32, through matmul_q8_blocks;
 * Q4_K, Q5_K, Q6_K, Q8_K (ml_q8k_supports) x_q8k, super-blocks of 256, through
 * matmul_q8k_blocks. Other quantised weights, and an input whose int8 rows are missing (a
 * width that the blocks do not tile), take the float32 x in both modes (the bf16-rounded
 * values, widened). */
#include "core/alloc.h"
#include "core/error.h"
#include "model/model_internal.h"

#define ML_MAX_MATMUL_JOBS 256
/* Tokens per task: 128 tokens of a prefill chunk share one pass over the task's weights. */
#define ML_TOKENS_PER_TASK 128
#define ML_GUIDED_SHARE 3
#define ML_ROW_QUANTUM 48
#define ML_MAX_ROWS_PER_TASK 2400
/* Row tasks of one region (> 2 * ML_MAX_MATMUL_JOBS); with more rows than the guided cut would
 * fit, blocks get a larger minimum. */
#define ML_MAX_ROW_TASKS 1024

typedef struct {
    int job;
    int row_begin, row_end;
} row_task;

typedef struct {
    const ml_model *model;
    const ml_matmul_job *jobs;
    int n_row_tasks;
    row_task row_tasks[ML_MAX_ROW_TASKS]; /* in claim order */
    const void *x_interleaved[ML_MAX_MATMUL_JOBS]; /* per job: its x for the row-group kernels, or NULL */
} matmul_plan;

/* y[t, rows] += bias[rows] after the product, as nn.Linear adds it (one rounding after the dot
 * product, whatever the split). */
static void add_bias(const ml_matmul_job *job, float *y, int n_tok, int row_begin, int row_end) {
    for (int t = 0; t < n_tok; t++) {
        float *out = y + (size_t)t * job->ldy;
        for (int r = row_begin; r < row_end; r++) out[r] += job->bias[r];
    }
}

/* Whether a row-group job multiplies bf16 x (matmul_bf16_bf16g) rather than float32 x. */
static int takes_bf16_x(const ml_cpu_kernels *k, const ml_matmul_job *job) {
    return job->x_bf16 && (k->bf16_dot_product || !job->x);
}

/* y = x W^T for rows [rt->row_begin, rt->row_end) of tokens [tok_begin, tok_begin + n_tok). */
static void multiply(const matmul_plan *plan, const row_task *rt, const ml_matmul_job *job, int tok_begin,
                     int n_tok, float *y) {
    const ml_cpu_kernels *k = plan->model->kernels;
    const void *xt = plan->x_interleaved[rt->job];
    if (job->w.grouped) { /* bf16 in row groups: row_begin is a multiple of 16 (ML_ROW_QUANTUM) */
        if (takes_bf16_x(k, job))
            k->matmul_bf16_bf16g(y, job->ldy, job->x_bf16 + (size_t)tok_begin * job->ldx, job->ldx,
                                 xt ? (const uint16_t *)xt + (size_t)tok_begin * job->n_in : NULL, job->w.data,
                                 job->n_in, n_tok, rt->row_begin, rt->row_end);
        else
            k->matmul_f32_bf16g(y, job->ldy, job->x + (size_t)tok_begin * job->ldx, job->ldx,
                                xt ? (const float *)xt + (size_t)tok_begin * job->n_in : NULL, job->w.data, job->n_in,
                                n_tok, rt->row_begin, rt->row_end);
        return;
    }
    if (job->w.dtype == ML_DTYPE_BF16 && job->x_bf16 && (k->bf16_dot_product || !job->x)) {
        k->matmul_bf16_bf16(y, job->ldy, job->x_bf16 + (size_t)tok_begin * job->ldx, job->ldx, job->w.data, job->n_in,
                            n_tok, rt->row_begin, rt->row_end);
        return;
    }
    if (job->x_q8 && ml_q8_supports(job->w.dtype)) {
        k->matmul_q8_blocks(job->w.dtype, y, job->ldy, job->x_q8 + (size_t)tok_begin * job->ldx_q8, job->ldx_q8,
                            job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        return;
    }
    if (job->x_q8k && ml_q8k_supports(job->w.dtype)) {
        k->matmul_q8k_blocks(job->w.dtype, y, job->ldy, job->x_q8k + (size_t)tok_begin * job->ldx_q8k, job->ldx_q8k,
                             job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        return;
    }
    const float *x = job->x + (size_t)tok_begin * job->ldx;
    switch (job->w.dtype) {
    case ML_DTYPE_BF16:
        k->matmul_f32_bf16(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        break;
    case ML_DTYPE_F16:
        k->matmul_f32_f16(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        break;
    case ML_DTYPE_Q8_0:
        k->matmul_f32_q8_0(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        break;
    case ML_DTYPE_Q4_0:
        k->matmul_f32_q4_0(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        break;
    case ML_DTYPE_Q4_1:
        k->matmul_f32_q4_1(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        break;
    case ML_DTYPE_Q5_0:
    case ML_DTYPE_Q5_1:
    case ML_DTYPE_IQ4_NL:
    case ML_DTYPE_Q2_K:
    case ML_DTYPE_Q3_K:
    case ML_DTYPE_Q4_K:
    case ML_DTYPE_Q5_K:
    case ML_DTYPE_Q6_K:
    case ML_DTYPE_Q8_K:
        k->matmul_f32_blocks(job->w.dtype, y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, rt->row_begin,
                             rt->row_end);
        break;
    default:
        k->matmul_f32_f32(y, job->ldy, x, job->ldx, job->w.data, job->n_in, n_tok, rt->row_begin, rt->row_end);
        break;
    }
}

static void matmul_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const matmul_plan *plan = ctx;
    const row_task *rt = &plan->row_tasks[task % plan->n_row_tasks];
    const ml_matmul_job *job = &plan->jobs[rt->job];
    int tok_begin = task / plan->n_row_tasks * ML_TOKENS_PER_TASK;
    if (tok_begin >= job->n_tok) return;
    int n_tok = job->n_tok - tok_begin < ML_TOKENS_PER_TASK ? job->n_tok - tok_begin : ML_TOKENS_PER_TASK;
    float *y = job->y + (size_t)tok_begin * job->ldy;
    multiply(plan, rt, job, tok_begin, n_tok, y);
    if (job->bias) add_bias(job, y, n_tok, rt->row_begin, rt->row_end);
}

/* The bytes per element of the interleaved x a job's row-group kernel reads with 3+ tokens
 * (multiply above): float32 x, or bf16 x as pairs for vdpbf16ps; 0: none. */
static size_t interleaved_elem(const ml_model *model, const ml_matmul_job *job) {
    if (!job->w.grouped || job->n_tok < 3) return 0;
    if (takes_bf16_x(model->kernels, job)) return model->kernels->bf16_dot_product ? sizeof(uint16_t) : 0;
    return job->x ? sizeof(float) : 0;
}

/* The row-group kernels read 3+ tokens' x interleaved (ml_groups_interleave_x, or
 * ml_groups_interleave_pairs for bf16 x), one copy per distinct input made here, once for all
 * the tasks that read it (made per task, the copy cost as much as a 48-row task's product;
 * docs/BENCHMARKS.md). Token blocks restart at every ML_TOKENS_PER_TASK, where the tasks' token
 * ranges start. Without memory, NULL: the kernels read x itself (the same bits). */
static void interleave_inputs(ml_model *model, const ml_matmul_job *jobs, int n_jobs, const void **out) {
    int source[ML_MAX_MATMUL_JOBS]; /* per job: the first job with the same input, or -1 */
    size_t elem[ML_MAX_MATMUL_JOBS], need = 0;
    for (int j = 0; j < n_jobs; j++) {
        out[j] = NULL;
        source[j] = -1;
        elem[j] = interleaved_elem(model, &jobs[j]);
        if (!elem[j]) continue;
        source[j] = j;
        for (int e = 0; e < j && source[j] == j; e++) /* the same input as an earlier job's (q, k, v) */
            if (source[e] == e && elem[e] == elem[j] && jobs[e].x == jobs[j].x && jobs[e].x_bf16 == jobs[j].x_bf16 &&
                jobs[e].ldx == jobs[j].ldx && jobs[e].n_in == jobs[j].n_in && jobs[e].n_tok == jobs[j].n_tok)
                source[j] = e;
        if (source[j] == j) need += (size_t)jobs[j].n_tok * (size_t)jobs[j].n_in * elem[j];
    }
    if (need == 0) return;
    if (model->x_interleaved_bytes < need) {
        ml_free(model->x_interleaved);
        model->x_interleaved = ml_alloc(need, "interleaved matmul inputs");
        model->x_interleaved_bytes = model->x_interleaved ? need : 0;
        if (!model->x_interleaved) return;
    }
    uint8_t *cursor = model->x_interleaved; /* each copy's size a multiple of 4 bytes (n_in even for bf16) */
    for (int j = 0; j < n_jobs; j++) {
        const ml_matmul_job *job = &jobs[j];
        if (source[j] != j) {
            if (source[j] >= 0) out[j] = out[source[j]];
            continue;
        }
        for (int t0 = 0; t0 < job->n_tok; t0 += ML_TOKENS_PER_TASK) {
            int n = job->n_tok - t0 < ML_TOKENS_PER_TASK ? job->n_tok - t0 : ML_TOKENS_PER_TASK;
            size_t at = (size_t)t0 * (size_t)job->n_in;
            if (elem[j] == sizeof(float))
                ml_groups_interleave_x((float *)cursor + at, job->x + (size_t)t0 * job->ldx, job->ldx, job->n_in, n);
            else
                ml_groups_interleave_pairs((uint16_t *)cursor + at, job->x_bf16 + (size_t)t0 * job->ldx, job->ldx,
                                           job->n_in, n);
        }
        out[j] = cursor;
        cursor += (size_t)job->n_tok * (size_t)job->n_in * elem[j];
    }
}

static int round_rows(long long rows) {
    rows = (rows + ML_ROW_QUANTUM / 2) / ML_ROW_QUANTUM * ML_ROW_QUANTUM;
    if (rows < ML_ROW_QUANTUM) rows = ML_ROW_QUANTUM;
    return rows > ML_MAX_ROWS_PER_TASK ? ML_MAX_ROWS_PER_TASK : (int)rows;
}

/* Cuts the jobs' rows into guided row tasks (see the top of the file). */
static void plan_rows(matmul_plan *plan, const ml_matmul_job *jobs, int n_jobs, int threads) {
    long long remaining = 0;
    for (int j = 0; j < n_jobs; j++)
        if (jobs[j].n_tok > 0) remaining += jobs[j].n_rows;
    /* too many rows for the table even at the largest block: equal blocks that fit */
    long long floor_rows = remaining / (ML_MAX_ROW_TASKS - 2 * n_jobs - 1) + 1;
    floor_rows = (floor_rows + ML_ROW_QUANTUM - 1) / ML_ROW_QUANTUM * ML_ROW_QUANTUM; /* row groups of 16 */
    plan->n_row_tasks = 0;
    for (int j = 0; j < n_jobs; j++) {
        if (jobs[j].n_tok <= 0) continue;
        for (int row = 0; row < jobs[j].n_rows;) {
            long long size = round_rows(remaining / ((long long)ML_GUIDED_SHARE * threads));
            if (size < floor_rows) size = floor_rows;
            int end = jobs[j].n_rows - row <= size ? jobs[j].n_rows : row + (int)size;
            row_task *t = &plan->row_tasks[plan->n_row_tasks++];
            t->job = j;
            t->row_begin = row;
            t->row_end = end;
            remaining -= end - row;
            row = end;
        }
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
    interleave_inputs(model, jobs, n_jobs, plan.x_interleaved);
    plan_rows(&plan, jobs, n_jobs, ml_pool_threads(model->pool));
    if (plan.n_row_tasks == 0) return;
    int max_tok = 0;
    for (int j = 0; j < n_jobs; j++) max_tok = jobs[j].n_tok > max_tok ? jobs[j].n_tok : max_tok;
    int tok_blocks = (max_tok + ML_TOKENS_PER_TASK - 1) / ML_TOKENS_PER_TASK;
    /* task = token block * n_row_tasks + row task: a job with fewer tokens skips the empty blocks */
    ml_pool_run(model->pool, matmul_task, &plan, tok_blocks * plan.n_row_tasks);
}
