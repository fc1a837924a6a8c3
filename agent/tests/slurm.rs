//! The worker launcher through a real scheduler: a single-node Slurm started by
//! `.ci/slurm.sh`, and `nightshift bench` whose `nightshift.toml` says
//! `[worker] launcher = ["srun", ...]`. The worker's handshake, and its answer that
//! there is no GPU here (or its work where there is one), come back through `srun`.
//! Starting Slurm changes the machine (a munge key, daemons left running), so the
//! test runs only where `NIGHTSHIFT_SLURM_TEST=1` (set by `.ci/run`); elsewhere, and
//! where Slurm cannot start (no root, no slurm-wlm or munge, a machine with its own
//! Slurm), it says `skipped` and why. `NIGHTSHIFT_REQUIRE_SLURM=1` makes a Slurm
//! that cannot start a failure.

mod common;

use std::process::Command;

/// Starts (or finds) the single-node Slurm; its SLURM_CONF, or why not.
fn slurm() -> Result<String, String> {
    let script = common::repo_root().join(".ci/slurm.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        if let Some(conf) = stdout.lines().last().filter(|l| !l.is_empty()) {
            return Ok(conf.to_string());
        }
    }
    Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
}

#[test]
fn the_worker_runs_as_a_slurm_job_step_and_answers_through_srun() {
    if std::env::var("NIGHTSHIFT_SLURM_TEST").as_deref() != Ok("1") {
        println!("skipped: NIGHTSHIFT_SLURM_TEST=1 not set (this test starts a Slurm)");
        return;
    }
    let conf = match slurm() {
        Ok(c) => c,
        Err(why) => {
            assert!(
                std::env::var("NIGHTSHIFT_REQUIRE_SLURM").as_deref() != Ok("1"),
                "Slurm is required here: {why}"
            );
            println!("skipped: no Slurm ({why})");
            return;
        }
    };
    let d = tempfile::tempdir().unwrap();
    // srun starts the worker as a job step; the step leaves its job id beside us.
    std::fs::write(
        d.path().join("nightshift.toml"),
        "[worker]\nlauncher = [\"srun\", \"--ntasks=1\", \"--quiet\", \"sh\", \"-c\", \
         \"echo $SLURM_JOB_ID > job; exec \\\"$@\\\"\", \"worker\"]\n",
    )
    .unwrap();
    let k = common::repo_root().join("kernels/softmax");
    let out = Command::new(common::nightshift_bin())
        .args(["bench", k.to_str().unwrap(), "--validate-only"])
        .current_dir(d.path())
        .env("SLURM_CONF", &conf)
        .output()
        .expect("nightshift runs");
    let code = out.status.code().unwrap_or(-1);
    let err = String::from_utf8_lossy(&out.stderr);
    let job = std::fs::read_to_string(d.path().join("job")).unwrap_or_default();
    assert!(
        job.trim().parse::<u64>().is_ok(),
        "no Slurm job id from the worker's step: {job:?}; {err}"
    );
    if common::no_gpu_reason().is_some() {
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("cannot open CUDA device"), "{err}");
    } else {
        assert_eq!(code, 0, "{err}");
    }
}
