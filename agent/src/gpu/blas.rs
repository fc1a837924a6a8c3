//! cuBLAS, timed as an external baseline: the product a user would otherwise call.
//! It runs on the same context and the null stream as every kernel, through the same
//! buffers, so the validation and measurement protocols apply to it unchanged.

use std::ffi::c_void;

use cudarc::cublas::{result, sys};

use super::{GpuError, Params, Result};
use crate::spec::plan::{BlasCall, BlasOp};

/// A cuBLAS handle on the current context, destroyed on drop.
pub struct Blas {
    handle: sys::cublasHandle_t,
}

fn blas_err(op: &str, e: result::CublasError) -> GpuError {
    GpuError::other(op, format!("{e:?}"))
}

impl Blas {
    /// Creates a handle on the calling thread's current context (the `Gpu`'s).
    pub fn new() -> Result<Blas> {
        let handle = result::create_handle().map_err(|e| blas_err("cublasCreate", e))?;
        Ok(Blas { handle })
    }

    /// Enqueues `call` with the device pointers in `params` (by argument position).
    pub fn run(&self, call: &BlasCall, params: &Params) -> Result<()> {
        let ptr = |i: usize| {
            params
                .pointer(i)
                .ok_or_else(|| GpuError::other("cuBLAS", format!("argument {i} is not a buffer")))
        };
        let (a, b, c) = (ptr(call.a)?, ptr(call.b)?, ptr(call.c)?);
        // Row-major C[m, n] = A[m, k] . B[k, n] is column-major C' = B' . A' with
        // C' n x m, B' n x k and A' k x m: swap the operands, no transposes.
        let no = sys::cublasOperation_t::CUBLAS_OP_N;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the handle is live; a, b and c are live device allocations of the
        // lengths the spec gives for these m, n, k (checked when the spec was parsed:
        // the dtypes match the operation); alpha and beta are host scalars that
        // outlive the call, which reads them before returning.
        unsafe {
            match call.op {
                BlasOp::Sgemm => result::sgemm(
                    self.handle,
                    no,
                    no,
                    call.n,
                    call.m,
                    call.k,
                    &alpha,
                    b as *const f32,
                    call.n,
                    a as *const f32,
                    call.k,
                    &beta,
                    c as *mut f32,
                    call.n,
                ),
                BlasOp::GemmF16F32 => result::gemm_ex(
                    self.handle,
                    no,
                    no,
                    call.n,
                    call.m,
                    call.k,
                    &alpha as *const f32 as *const c_void,
                    b as *const c_void,
                    sys::cudaDataType::CUDA_R_16F,
                    call.n,
                    a as *const c_void,
                    sys::cudaDataType::CUDA_R_16F,
                    call.k,
                    &beta as *const f32 as *const c_void,
                    c as *mut c_void,
                    sys::cudaDataType::CUDA_R_32F,
                    call.n,
                    sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                ),
            }
        }
        .map_err(|e| blas_err("cuBLAS gemm", e))
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: created by cublasCreate, destroyed once.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}
