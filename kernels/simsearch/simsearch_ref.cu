// Reference similarity search: one warp per query, every similarity in double, a plain
// sorted insertion for the top k (higher score first, then the lower index).
// Same arguments as the kernel; the workspace and the counter are not touched.
extern "C" __global__ void simsearch_ref(const float* queries, const float* corpus,
                                         float* scores, int* index, float* part_scores,
                                         int* part_index, int* counter, int Q, int N,
                                         int dim, int k) {
    const int gq = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x & 31;
    if (gq >= Q) return;
    const float* q = queries + (size_t)gq * dim;
    double qn = 0.0;
    for (int d = lane; d < dim; d += 32) qn += (double)q[d] * q[d];
    for (int o = 16; o > 0; o >>= 1) qn += __shfl_xor_sync(0xffffffffu, qn, o);
    qn = sqrt(qn);

    double bs[32];
    int bi[32];
    for (int j = 0; j < k; ++j) {
        bs[j] = __longlong_as_double(0xfff0000000000000ull);  // -inf
        bi[j] = 0x7fffffff;
    }
    for (int row = 0; row < N; ++row) {
        const float* c = corpus + (size_t)row * dim;
        double dot = 0.0, cn = 0.0;
        for (int d = lane; d < dim; d += 32) {
            dot += (double)q[d] * c[d];
            cn += (double)c[d] * c[d];
        }
        for (int o = 16; o > 0; o >>= 1) {
            dot += __shfl_xor_sync(0xffffffffu, dot, o);
            cn += __shfl_xor_sync(0xffffffffu, cn, o);
        }
        const double s = (qn > 0.0 && cn > 0.0) ? dot / (qn * sqrt(cn)) : 0.0;
        if (lane == 0 && s > bs[k - 1]) {  // rows arrive in index order: ties keep the older
            int j = k - 1;
            while (j > 0 && s > bs[j - 1]) {
                bs[j] = bs[j - 1];
                bi[j] = bi[j - 1];
                --j;
            }
            bs[j] = s;
            bi[j] = row;
        }
    }
    if (lane == 0)
        for (int j = 0; j < k; ++j) {
            scores[(size_t)gq * k + j] = (float)bs[j];
            index[(size_t)gq * k + j] = bi[j];
        }
}
