//! The reference's inputs and outputs written to disk with a manifest, one directory
//! per validation size, for a check against another implementation
//! (`bench --check-references`).

use super::*;

impl Worker {
    pub(super) fn dump_reference(
        &mut self,
        job: &EvalJob,
        kernel: &str,
        dir: &std::path::Path,
    ) -> Response {
        let reference = match self.load(&job.reference) {
            Ok(k) => Cand::Kernel(k),
            Err(e) => {
                return Response::Error {
                    message: format!("cannot load the reference: {e}"),
                }
            }
        };
        let mut dirs = Vec::new();
        for (si, plan) in job.sizes.iter().enumerate().skip(1) {
            match self.dump_one(job, &reference, kernel, si, plan, dir) {
                Ok(d) => dirs.push(d),
                Err(Stop::Reject(o)) => {
                    return Response::Error {
                        message: format!(
                            "the reference failed at {}: {}",
                            plan.label,
                            o.describe()
                        ),
                    }
                }
                Err(Stop::Infra(message)) => return Response::Error { message },
            }
        }
        Response::Dumped { dirs }
    }

    fn dump_one(
        &mut self,
        job: &EvalJob,
        reference: &Cand,
        kernel: &str,
        si: usize,
        plan: &SizePlan,
        dir: &std::path::Path,
    ) -> Step<PathBuf> {
        let dims = plan.ref_launch.unwrap_or(plan.launch);
        let bufs = self.alloc(plan, 1)?.remove(0);
        let inputs = validate::inputs_for(
            plan,
            TrialKind::Normal,
            validate::trial_seed(job.validation.seed, si, 0),
        );
        self.prepare(plan, &bufs, &inputs)?;
        self.run_once(reference, &dims, plan, &bufs, "reference (dump)", false)?;
        let out = self.download(&bufs, "download reference output")?;
        let name: String = plan
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let d = dir.join(name);
        let io_err = |e: std::io::Error| Stop::Infra(format!("writing {}: {e}", d.display()));
        std::fs::create_dir_all(&d).map_err(io_err)?;
        let mut args = Vec::new();
        for (ai, a) in plan.args.iter().enumerate() {
            match a {
                ArgPlan::Buffer {
                    name,
                    dtype,
                    len,
                    io,
                    ..
                } => {
                    let (bytes, file) = match io {
                        Io::In | Io::Inout => (inputs[ai].as_ref(), format!("{name}.bin")),
                        Io::Out => (out[ai].as_ref(), format!("{name}.ref.bin")),
                        Io::Scratch => continue,
                    };
                    let Some(bytes) = bytes else { continue };
                    std::fs::write(d.join(&file), bytes).map_err(io_err)?;
                    args.push(serde_json::json!({
                        "name": name, "dtype": dtype.name(), "io": io, "len": len, "file": file,
                    }));
                }
                ArgPlan::Scalar {
                    name, dtype, bytes, ..
                } => {
                    let v = dtype.read(bytes, 0);
                    let value = if dtype.is_float() {
                        serde_json::json!(v)
                    } else {
                        serde_json::json!(v as i64)
                    };
                    args.push(serde_json::json!({
                        "name": name, "dtype": dtype.name(), "value": value,
                    }));
                }
            }
        }
        let manifest = serde_json::json!({
            "schema": 1,
            "kernel": kernel,
            "problem": plan.problem,
            "args": args,
        });
        let text = serde_json::to_string_pretty(&manifest).expect("serializable");
        std::fs::write(d.join("manifest.json"), text).map_err(io_err)?;
        Ok(d)
    }
}
