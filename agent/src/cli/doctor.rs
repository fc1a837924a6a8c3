//! `nightshift doctor`: what this machine has, what is missing, and the measured ceilings.

use serde::Serialize;

use super::{clear_progress, exit, progress_printer, CommonArgs};
use crate::evaluate::{Options, Session};
use crate::gpu::ceilings::Ceilings;
use crate::gpu::nvml::{Monitor, Snapshot};
use crate::gpu::{self, nvrtc, DeviceInfo};

/// Published figures, for comparison with what is measured. Never used as a result.
struct Datasheet {
    model: &'static str,
    dram_gbs: f64,
    fp32_tflops: f64,
    fp16_tensor_dense_tflops: f64,
}

fn datasheet(name: &str) -> Option<Datasheet> {
    let n = name.to_ascii_uppercase();
    if n.contains("H100") && (n.contains("HBM3") || n.contains("SXM")) {
        Some(Datasheet {
            model: "H100 SXM5 80GB",
            dram_gbs: 3350.0,
            fp32_tflops: 66.9,
            fp16_tensor_dense_tflops: 989.4,
        })
    } else if n.contains("H100") && n.contains("PCIE") {
        Some(Datasheet {
            model: "H100 PCIe 80GB",
            dram_gbs: 2000.0,
            fp32_tflops: 51.2,
            fp16_tensor_dense_tflops: 756.0,
        })
    } else if n.contains("H200") {
        Some(Datasheet {
            model: "H200 SXM 141GB",
            dram_gbs: 4800.0,
            fp32_tflops: 66.9,
            fp16_tensor_dense_tflops: 989.4,
        })
    } else {
        None
    }
}

#[derive(Serialize, Default)]
struct Doctor {
    nightshift: &'static str,
    cuda_driver: Option<i32>,
    nvrtc: Option<(i32, i32)>,
    devices: Option<i32>,
    device: Option<DeviceInfo>,
    nvml: Option<Snapshot>,
    ceilings: Option<Ceilings>,
    /// The validation kernels checked against their host mirror: cases run.
    validation_self_check: Option<usize>,
    problems: Vec<String>,
}

pub fn run(args: &CommonArgs, opts: Options) -> i32 {
    let mut d = Doctor {
        nightshift: env!("CARGO_PKG_VERSION"),
        ..Default::default()
    };
    match gpu::driver_version() {
        Ok(v) => d.cuda_driver = Some(v),
        Err(e) => d.problems.push(e.to_string()),
    }
    match nvrtc::version() {
        Ok(v) => d.nvrtc = Some(v),
        Err(e) => d.problems.push(e),
    }
    if d.cuda_driver.is_some() {
        match gpu::device_count() {
            Ok(0) => d.problems.push("the CUDA driver reports no device".into()),
            Ok(n) => d.devices = Some(n),
            Err(e) => d.problems.push(format!("no usable CUDA device: {e}")),
        }
    }
    if d.devices.is_some() && d.nvrtc.is_some() {
        match Session::start(opts, progress_printer()) {
            Ok(mut s) => {
                match s.self_check() {
                    Ok((cases, failures)) if failures.is_empty() => {
                        d.validation_self_check = Some(cases)
                    }
                    Ok((cases, failures)) => d.problems.push(format!(
                        "the validation kernels disagree with the host in {} of {cases} cases: {}",
                        failures.len(),
                        failures.join("; ")
                    )),
                    Err(e) => d.problems.push(format!("the validation kernels: {e}")),
                }
                let monitor = Monitor::open(&s.device.uuid);
                if let Some(u) = &monitor.unavailable {
                    d.problems.push(u.clone());
                } else {
                    d.nvml = Some(monitor.snapshot());
                }
                d.device = Some(s.device.clone());
                d.ceilings = Some(s.ceilings.clone());
                s.shutdown();
            }
            Err(e) => d.problems.push(e.to_string()),
        }
    }
    clear_progress();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&d).expect("serializable")
        );
    } else {
        print!("{}", render(&d));
    }
    if d.device.is_some() && d.ceilings.is_some() && d.validation_self_check.is_some() {
        exit::OK
    } else {
        exit::NO_GPU
    }
}

fn render(d: &Doctor) -> String {
    let mut o = format!("nightshift {}\n", d.nightshift);
    let unknown = || "not found".to_string();
    o.push_str(&format!(
        "CUDA driver API: {}\n",
        d.cuda_driver
            .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10))
            .unwrap_or_else(unknown)
    ));
    o.push_str(&format!(
        "NVRTC: {}\n",
        d.nvrtc
            .map(|(a, b)| format!("{a}.{b}"))
            .unwrap_or_else(unknown)
    ));
    o.push_str(&format!(
        "CUDA devices: {}\n",
        d.devices.map(|n| n.to_string()).unwrap_or_else(unknown)
    ));
    if let Some(dev) = &d.device {
        o.push_str(&format!(
            "device {}: {} ({}), {}, {} SMs, L2 {} MiB, {:.1} GiB, max SM clock {} MHz\n",
            dev.ordinal,
            dev.name,
            dev.uuid,
            dev.arch,
            dev.sms,
            dev.l2_bytes >> 20,
            dev.total_mem_bytes as f64 / (1u64 << 30) as f64,
            dev.sm_clock_khz / 1000
        ));
    }
    if let Some(n) = &d.nvml {
        let f = |v: Option<u32>, unit: &str| {
            v.map(|x| format!("{x} {unit}"))
                .unwrap_or_else(|| "?".into())
        };
        o.push_str(&format!(
            "NVML: driver {}, SM clock {} (max {}), memory clock {}, power {} of {} W limit, {} C, utilization {}\n",
            n.driver_version.clone().unwrap_or_else(|| "?".into()),
            f(n.sm_clock_mhz, "MHz"),
            f(n.max_sm_clock_mhz, "MHz"),
            f(n.mem_clock_mhz, "MHz"),
            n.power_w.map(|p| format!("{p:.0}")).unwrap_or_else(|| "?".into()),
            n.power_limit_w.map(|p| format!("{p:.0}")).unwrap_or_else(|| "?".into()),
            n.temperature_c.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
            f(n.utilization_gpu_pct, "%"),
        ));
        o.push_str(&format!(
            "throttling now: {}\n",
            if n.throttle_reasons.is_empty() {
                "none".to_string()
            } else {
                n.throttle_reasons.join(", ")
            }
        ));
    }
    if let (Some(c), Some(dev)) = (&d.ceilings, &d.device) {
        let ds = datasheet(&dev.name);
        let sheet = |f: &dyn Fn(&Datasheet) -> f64| {
            ds.as_ref()
                .map(|x| format!("{:.1}", f(x)))
                .unwrap_or_else(|| "unknown".into())
        };
        if let Some(n) = d.validation_self_check {
            o.push_str(&format!(
                "validation kernels: input generation, comparison and guards agree with the host bit for bit ({n} cases)\n"
            ));
        }
        o.push_str(&format!(
            "\nceilings measured on this device{}:\n",
            ds.as_ref()
                .map(|x| format!(" (datasheet: {})", x.model))
                .unwrap_or_default()
        ));
        o.push_str(&format!(
            "  DRAM bandwidth      {:>9.1} GB/s      datasheet {} GB/s; memory clock x bus width gives {:.1} GB/s\n",
            c.dram_gbs,
            sheet(&|x| x.dram_gbs),
            dev.theoretical_dram_gbs()
        ));
        for (m, v) in &c.dram_by_method {
            o.push_str(&format!("    {m}: {v:.1} GB/s\n"));
        }
        o.push_str(&format!(
            "  FP32 FMA            {:>9.1} TFLOP/s   datasheet {} TFLOP/s\n",
            c.fp32_gflops / 1e3,
            sheet(&|x| x.fp32_tflops)
        ));
        o.push_str(&format!(
            "  FP16 tensor (dense) {:>9.1} TFLOP/s   datasheet {} TFLOP/s; measured with {}\n",
            c.tensor_f16_gflops / 1e3,
            sheet(&|x| x.fp16_tensor_dense_tflops),
            c.tensor_method
        ));
        for (m, v) in &c.tensor_by_method {
            o.push_str(&format!("    {m}: {:.1} TFLOP/s\n", v / 1e3));
        }
    }
    if !d.problems.is_empty() {
        o.push_str("\nproblems:\n");
        for p in &d.problems {
            o.push_str(&format!("  - {p}\n"));
        }
    }
    o
}
