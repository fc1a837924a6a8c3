//! `nightshift calibrate`: the A/B rule's error rates, measured on this GPU (the work
//! is `crate::calibrate`'s).

use super::{clear_progress, exit, CalibrateArgs};
use crate::calibrate;
use crate::evaluate::Options;

pub fn run(a: &CalibrateArgs, mut opts: Options) -> i32 {
    opts.measure.energy_ms = 0.0;
    let mut s = match super::start_session(opts) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let r = calibrate::calibrate(&mut s, a.aa, a.ab);
    s.shutdown();
    clear_progress();
    match r {
        Ok(c) => {
            if a.common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&c).expect("serializable")
                );
            } else {
                print!("{}", calibrate::render(&c));
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::NO_GPU
        }
    }
}
