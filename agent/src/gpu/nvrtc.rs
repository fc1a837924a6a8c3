//! NVRTC compilation to CUBIN for the device's architecture, with an on-disk cache
//! keyed by a hash of source, options, NVRTC version and architecture.

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cudarc::nvrtc::result as rtc;
use cudarc::nvrtc::sys;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when the cache layout or the way options are built changes.
const CACHE_FORMAT: &str = "nightshift-cubin-v1";

/// Why NVRTC cannot be used here, or `Ok`.
pub fn nvrtc_present() -> Result<(), String> {
    // SAFETY: only probes whether the shared library can be opened.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "NVRTC not found: libnvrtc.so could not be loaded (install the CUDA toolkit's NVRTC)"
                .into(),
        )
    }
}

/// NVRTC's version, e.g. (13, 0).
pub fn version() -> Result<(i32, i32), String> {
    nvrtc_present()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: two valid out pointers; the library was found above.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtcVersion: {e:?}"))?;
    Ok((major, minor))
}

/// One compilation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileRequest {
    /// File name shown in the log, e.g. `softmax.cu`.
    pub name: String,
    pub source: String,
    /// `-D...` and other NVRTC options; the architecture is added here.
    pub options: Vec<String>,
    /// e.g. `sm_90`.
    pub arch: String,
}

/// The result of a compilation. A failed compile is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Compiled {
    Ok {
        cubin: PathBuf,
        log: String,
        cached: bool,
        ms: f64,
    },
    Failed {
        log: String,
        cached: bool,
        ms: f64,
    },
}

fn c_string(buf: Vec<c_char>) -> String {
    let bytes: Vec<u8> = buf
        .into_iter()
        .take_while(|&c| c != 0)
        .map(|c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

impl CompileRequest {
    /// All options passed to NVRTC, architecture included.
    pub fn full_options(&self) -> Vec<String> {
        let mut o = vec![
            format!("--gpu-architecture={}", self.arch),
            "--std=c++17".to_string(),
            "-lineinfo".to_string(),
        ];
        o.extend(self.options.iter().cloned());
        o
    }

    /// Cache key: source, options, NVRTC version, architecture.
    pub fn key(&self, nvrtc: (i32, i32)) -> String {
        let mut h = Sha256::new();
        for part in [
            CACHE_FORMAT,
            &self.name,
            &self.source,
            &self.arch,
            &format!("{}.{}", nvrtc.0, nvrtc.1),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        for o in self.full_options() {
            h.update(o.as_bytes());
            h.update([0u8]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Compiles `req`, reusing `cache_dir/<key>.cubin` (or `.fail`) when present.
pub fn compile(req: &CompileRequest, cache_dir: &Path) -> Result<Compiled, String> {
    let start = Instant::now();
    let nv = version()?;
    let key = req.key(nv);
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| format!("cannot create compile cache {}: {e}", cache_dir.display()))?;
    let cubin = cache_dir.join(format!("{key}.cubin"));
    let log_path = cache_dir.join(format!("{key}.log"));
    let fail_path = cache_dir.join(format!("{key}.fail"));
    if cubin.exists() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Ok(Compiled::Ok {
            cubin,
            log,
            cached: true,
            ms: start.elapsed().as_secs_f64() * 1e3,
        });
    }
    if let Ok(log) = std::fs::read_to_string(&fail_path) {
        return Ok(Compiled::Failed {
            log,
            cached: true,
            ms: start.elapsed().as_secs_f64() * 1e3,
        });
    }
    let src = CString::new(req.source.as_str())
        .map_err(|_| format!("{}: source contains a NUL byte", req.name))?;
    let name =
        CString::new(req.name.as_str()).map_err(|_| "file name contains a NUL byte".to_string())?;
    let options = req.full_options();
    if options.iter().any(|o| o.contains('\0')) {
        return Err("a compile option contains a NUL byte".into());
    }
    let prog =
        rtc::create_program(&src, Some(&name)).map_err(|e| format!("nvrtcCreateProgram: {e:?}"))?;
    // SAFETY: `prog` was created above and is destroyed once at the end of this block;
    // `src` and `name` outlive it.
    let result = unsafe {
        let compiled = rtc::compile_program(prog, &options);
        let log = rtc::get_program_log(prog).map(c_string).unwrap_or_default();
        let out = match compiled {
            Ok(()) => {
                let mut size = 0usize;
                sys::nvrtcGetCUBINSize(prog, &mut size)
                    .result()
                    .map_err(|e| format!("nvrtcGetCUBINSize: {e:?}"))?;
                let mut bin = vec![0 as c_char; size];
                sys::nvrtcGetCUBIN(prog, bin.as_mut_ptr())
                    .result()
                    .map_err(|e| format!("nvrtcGetCUBIN: {e:?}"))?;
                Ok((bin.into_iter().map(|c| c as u8).collect::<Vec<u8>>(), log))
            }
            Err(_) => Err(log),
        };
        let _ = rtc::destroy_program(prog);
        out
    };
    let ms = start.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok((bin, log)) => {
            // Write to temporary names and rename, so a crash never leaves half a
            // cubin, and two threads compiling the same key (a prefetch and the
            // evaluation itself) never write into each other's file.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tag = format!("tmp{}-{n}", std::process::id());
            // The log first: a cubin that exists is a cache hit, and its log must be there.
            for (bytes, path) in [(log.as_bytes(), &log_path), (&bin[..], &cubin)] {
                let tmp = path.with_extension(format!(
                    "{}.{tag}",
                    path.extension().and_then(|e| e.to_str()).unwrap_or("")
                ));
                std::fs::write(&tmp, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, path)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            Ok(Compiled::Ok {
                cubin,
                log,
                cached: false,
                ms,
            })
        }
        Err(log) => {
            let _ = std::fs::write(&fail_path, &log);
            Ok(Compiled::Failed {
                log,
                cached: false,
                ms,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(src: &str, opts: &[&str], arch: &str) -> CompileRequest {
        CompileRequest {
            name: "k.cu".into(),
            source: src.into(),
            options: opts.iter().map(|s| s.to_string()).collect(),
            arch: arch.into(),
        }
    }

    #[test]
    fn cache_key_changes_with_every_input() {
        let base = req("a", &["-DX=1"], "sm_90");
        let k = base.key((13, 0));
        assert_eq!(k, base.key((13, 0)));
        assert_ne!(k, req("b", &["-DX=1"], "sm_90").key((13, 0)));
        assert_ne!(k, req("a", &["-DX=2"], "sm_90").key((13, 0)));
        assert_ne!(k, req("a", &["-DX=1"], "sm_80").key((13, 0)));
        assert_ne!(k, base.key((12, 8)));
        assert!(base
            .full_options()
            .contains(&"--gpu-architecture=sm_90".to_string()));
    }
}
