//! The validation kernels checked against their host mirror on this device.

use super::*;

/// Host-built cases for the device comparison: `(dtype, out, reference, tolerance)`.
/// NaN and infinities on either side, poison left in the output, one element off,
/// errors just inside and just outside the tolerance, and zeros in the reference.
fn compare_cases() -> Vec<(DType, Vec<u8>, Vec<u8>, Tolerance)> {
    let tol = Tolerance {
        rtol: 1e-3,
        atol: 1e-4,
    };
    let enc = |d: DType, v: &[f64]| {
        let mut b = Vec::new();
        for x in v {
            validate::device::store(d, *x, &mut b);
        }
        b
    };
    let mut out = Vec::new();
    for d in DType::ALL {
        let want: Vec<f64> = (0..257).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
        let r = enc(d, &want);
        out.push((d, r.clone(), r.clone(), tol));
        let mut off = want.clone();
        off[100] += 3.0;
        out.push((d, enc(d, &off), r.clone(), tol));
        let mut poisoned = r.clone();
        let sz = d.size();
        poisoned[7 * sz..8 * sz].fill(d.poison_byte());
        out.push((d, poisoned, r.clone(), tol));
        if d.is_float() {
            let edge: Vec<f64> = want
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let lim = tol.atol + tol.rtol * w.abs();
                    match i % 3 {
                        0 => w + lim * 0.5,
                        1 => w + lim * 2.0,
                        _ => *w,
                    }
                })
                .collect();
            out.push((d, enc(d, &edge), r.clone(), tol));
            let mut special = want.clone();
            special[3] = f64::NAN;
            special[4] = f64::INFINITY;
            special[5] = f64::NEG_INFINITY;
            let mut wspecial = want.clone();
            wspecial[4] = f64::INFINITY;
            wspecial[6] = f64::NAN;
            wspecial[8] = 0.0;
            out.push((d, enc(d, &special), enc(d, &wspecial), tol));
        }
    }
    out
}

impl Worker {
    /// Runs the validation kernels on host-built cases and compares every result with
    /// the host's: generated inputs bit for bit (every dtype and distribution),
    /// comparison figures, first differences and scrambled bytes.
    pub(super) fn self_check(&mut self) -> Response {
        if let Err(e) = self.builtins() {
            return Response::Error {
                message: match e {
                    Stop::Infra(m) => m,
                    Stop::Reject(o) => o.describe(),
                },
            };
        }
        let mut cases = 0;
        let mut failures = Vec::new();
        let r = self.self_check_cases(&mut cases, &mut failures);
        if let Err(e) = r {
            failures.push(format!("the GPU failed: {e}"));
        }
        Response::SelfChecked { cases, failures }
    }

    fn self_check_cases(
        &mut self,
        cases: &mut usize,
        failures: &mut Vec<String>,
    ) -> Result<(), GpuError> {
        use crate::spec::Init;
        let bi = self.bi()?;
        let gpu = &self.gpu;
        let inits = [
            Init::Normal,
            Init::Uniform {
                low: -3.0,
                high: 5.0,
            },
            Init::Uniform {
                low: 0.0,
                high: 1.0,
            },
            Init::Randint { low: -7, high: 300 },
            Init::Constant { value: 1.0 },
            Init::Constant { value: 0.0 },
        ];
        let n = 10_007u64;
        for d in DType::ALL {
            for (ii, init) in inits.iter().enumerate() {
                for kind in [TrialKind::Normal, TrialKind::Large] {
                    *cases += 1;
                    let p = GenParams::new(d, *init, kind, 1000.0, 0xC0FFEE + ii as u64);
                    let buf = gpu.alloc(n as usize * d.size())?;
                    bi.generate(gpu, &buf, d, n, &p)?;
                    gpu.sync()?;
                    let got = gpu.download(&buf)?;
                    let want = validate::device::generate(d, n, &p);
                    if let Some(i) = validate::first_difference(d, &got, &want) {
                        failures.push(format!(
                            "generate {d} {init:?} {kind:?}: element {i} is {} on the device, {} on the host",
                            d.read(&got, i as usize),
                            d.read(&want, i as usize)
                        ));
                    }
                }
            }
        }
        for (d, out, reference, tol) in compare_cases() {
            *cases += 1;
            let n = (out.len() / d.size()) as u64;
            let (a, b) = (gpu.alloc(out.len())?, gpu.alloc(reference.len())?);
            gpu.upload(&a, &out)?;
            gpu.upload(&b, &reference)?;
            let dev = bi.compare(gpu, &a, &b, d, n, tol)?;
            let host = validate::compare(d, &out, &reference, tol);
            let same_l2 = (dev.rel_l2 == host.rel_l2)
                || (dev.rel_l2 - host.rel_l2).abs() <= 1e-12 * host.rel_l2.abs();
            let same_first = match (dev.first_bad, host.first_bad) {
                (Some(x), Some(y)) => {
                    x.index == y.index
                        && (x.got == y.got || (x.got.is_nan() && y.got.is_nan()))
                        && (x.expected == y.expected
                            || (x.expected.is_nan() && y.expected.is_nan()))
                }
                (x, y) => x.is_none() && y.is_none(),
            };
            if (
                dev.bad,
                dev.unwritten,
                dev.non_finite,
                dev.max_abs,
                dev.max_rel,
            ) != (
                host.bad,
                host.unwritten,
                host.non_finite,
                host.max_abs,
                host.max_rel,
            ) || !same_l2
                || !same_first
            {
                failures.push(format!(
                    "compare {d}: the device found {dev:?}, the host {host:?}"
                ));
            }
            *cases += 1;
            let first = bi.first_diff(gpu, &a, &b, d.size(), n)?;
            if first != validate::first_difference(d, &out, &reference) {
                failures.push(format!(
                    "first difference {d}: {first:?} on the device, {:?} on the host",
                    validate::first_difference(d, &out, &reference)
                ));
            }
        }
        for len in [1usize, 15, 16, 4099] {
            *cases += 1;
            let buf = gpu.alloc(len)?;
            bi.scramble(gpu, &buf, (3, 4))?;
            gpu.sync()?;
            if gpu.download(&buf)? != validate::device::scramble(len, (3, 4)) {
                failures.push(format!("scramble of {len} bytes differs from the host's"));
            }
        }
        Ok(())
    }
}
