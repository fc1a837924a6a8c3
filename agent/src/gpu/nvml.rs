//! NVML telemetry: SM clock, throttle reasons, power, energy, utilization, temperature.
//! Everything is optional: a machine without NVML still measures, and says so.

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, ClockId, TemperatureSensor};
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

use crate::measure::Telemetry;

/// Throttle reasons that lower the clock under load. Idle and application-clock
/// settings are not throttling of a running kernel.
fn slowing(r: ThrottleReasons) -> Vec<String> {
    let named = [
        (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal"),
        (ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake"),
    ];
    named
        .iter()
        .filter(|(f, _)| r.contains(*f))
        .map(|(_, n)| n.to_string())
        .collect()
}

/// A point-in-time reading for `doctor` and reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub driver_version: Option<String>,
    pub nvml_version: Option<String>,
    pub name: Option<String>,
    pub sm_clock_mhz: Option<u32>,
    pub max_sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub power_w: Option<f64>,
    pub power_limit_w: Option<f64>,
    pub temperature_c: Option<u32>,
    pub utilization_gpu_pct: Option<u32>,
    pub utilization_mem_pct: Option<u32>,
    pub throttle_reasons: Vec<String>,
    pub energy_mj: Option<u64>,
}

/// NVML for one device, found by UUID (CUDA and NVML may number devices differently).
pub struct Monitor {
    nvml: Option<Nvml>,
    uuid: String,
    pub unavailable: Option<String>,
}

impl Monitor {
    pub fn open(uuid: &str) -> Monitor {
        match Nvml::init() {
            Ok(nvml) => {
                let found = nvml
                    .device_by_uuid(uuid)
                    .map(|_| ())
                    .map_err(|e| format!("NVML has no device {uuid}: {e}"));
                match found {
                    Ok(()) => Monitor {
                        nvml: Some(nvml),
                        uuid: uuid.to_string(),
                        unavailable: None,
                    },
                    Err(e) => Monitor {
                        nvml: None,
                        uuid: uuid.to_string(),
                        unavailable: Some(e),
                    },
                }
            }
            Err(e) => Monitor {
                nvml: None,
                uuid: uuid.to_string(),
                unavailable: Some(format!("NVML unavailable: {e}")),
            },
        }
    }

    fn with<T>(&self, f: impl FnOnce(&nvml_wrapper::Device) -> Option<T>) -> Option<T> {
        let nvml = self.nvml.as_ref()?;
        let dev = nvml.device_by_uuid(self.uuid.as_str()).ok()?;
        f(&dev)
    }

    /// The NVIDIA display driver's version (e.g. `580.159.04`).
    pub fn driver_version(&self) -> Option<String> {
        self.nvml.as_ref()?.sys_driver_version().ok()
    }

    /// Clock and throttle state, for samples.
    pub fn telemetry(&self) -> Telemetry {
        self.with(|d| {
            Some(Telemetry {
                sm_clock_mhz: d.clock(Clock::SM, ClockId::Current).ok(),
                throttle_reasons: d
                    .current_throttle_reasons()
                    .map(slowing)
                    .unwrap_or_default(),
            })
        })
        .unwrap_or_default()
    }

    /// Total energy since the driver loaded, millijoules.
    pub fn energy_mj(&self) -> Option<u64> {
        self.with(|d| d.total_energy_consumption().ok())
    }

    pub fn utilization_gpu_pct(&self) -> Option<u32> {
        self.with(|d| d.utilization_rates().ok().map(|u| u.gpu))
    }

    pub fn snapshot(&self) -> Snapshot {
        let Some(nvml) = self.nvml.as_ref() else {
            return Snapshot::default();
        };
        let mut s = Snapshot {
            driver_version: nvml.sys_driver_version().ok(),
            nvml_version: nvml.sys_nvml_version().ok(),
            ..Snapshot::default()
        };
        self.with(|d| {
            s.name = d.name().ok();
            s.sm_clock_mhz = d.clock(Clock::SM, ClockId::Current).ok();
            s.max_sm_clock_mhz = d.max_clock_info(Clock::SM).ok();
            s.mem_clock_mhz = d.clock(Clock::Memory, ClockId::Current).ok();
            s.power_w = d.power_usage().ok().map(|mw| mw as f64 / 1e3);
            s.power_limit_w = d.enforced_power_limit().ok().map(|mw| mw as f64 / 1e3);
            s.temperature_c = d.temperature(TemperatureSensor::Gpu).ok();
            if let Ok(u) = d.utilization_rates() {
                s.utilization_gpu_pct = Some(u.gpu);
                s.utilization_mem_pct = Some(u.memory);
            }
            s.throttle_reasons = d
                .current_throttle_reasons()
                .map(slowing)
                .unwrap_or_default();
            s.energy_mj = d.total_energy_consumption().ok();
            Some(())
        });
        s
    }
}
