//! What this machine offers tract: CPU architecture and the SIMD features
//! that decide which kernels tract picks (and so which model variant runs
//! natively: see `model::variant`).
//!
//! Raspberry Pi 4 (Cortex-A72) has NEON only; Pi 5 (Cortex-A76) adds FP16
//! arithmetic (`asimdhp`) and the int8 dot product (`asimddp`), which tract
//! uses when detected (SDOT int8 kernels, f16 kernels).

/// A CPU feature and whether this machine has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// Name as in `/proc/cpuinfo` (aarch64) or the x86 CPUID flag.
    pub name: &'static str,
    /// What it buys tract.
    pub meaning: &'static str,
    /// Present on this CPU.
    pub present: bool,
}

/// This machine's CPU, as it matters to inference.
#[derive(Debug, Clone)]
pub struct Platform {
    /// `std::env::consts::ARCH`.
    pub arch: &'static str,
    /// Board model from the device tree (e.g. "Raspberry Pi 5 Model B"), if any.
    pub board: Option<String>,
    /// The relevant features.
    pub features: Vec<Feature>,
}

impl Platform {
    /// A made-up machine for tests: `arch` with `features` present.
    #[cfg(test)]
    pub(crate) fn with_features(arch: &'static str, features: &[&'static str]) -> Self {
        Platform {
            arch,
            board: None,
            features: features
                .iter()
                .map(|&name| Feature {
                    name,
                    meaning: "",
                    present: true,
                })
                .collect(),
        }
    }

    /// Detects the running machine.
    pub fn detect() -> Self {
        let board = std::fs::read_to_string("/proc/device-tree/model")
            .ok()
            .map(|m| m.trim_end_matches('\0').trim().to_string())
            .filter(|m| !m.is_empty());
        Platform {
            arch: std::env::consts::ARCH,
            board,
            features: detect_features(),
        }
    }

    /// What identifies this CPU for cached measurements: architecture, CPU
    /// model (from `/proc/cpuinfo`) and the features above.
    pub fn signature(&self) -> String {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name") || l.starts_with("CPU part"))
            .and_then(|l| l.split(':').nth(1))
            .map(str::trim)
            .unwrap_or("unknown");
        let features: Vec<&str> = self
            .features
            .iter()
            .filter(|f| f.present)
            .map(|f| f.name)
            .collect();
        format!("{} {model} [{}]", self.arch, features.join(" "))
    }

    /// Whether the feature `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.present)
    }
}

#[cfg(target_arch = "aarch64")]
fn detect_features() -> Vec<Feature> {
    use std::arch::is_aarch64_feature_detected as has;
    vec![
        Feature {
            name: "asimd",
            meaning: "NEON f32 kernels",
            present: has!("neon"),
        },
        Feature {
            name: "asimdhp",
            meaning: "FP16 arithmetic (f16 kernels)",
            present: has!("fp16"),
        },
        Feature {
            name: "asimddp",
            meaning: "int8 dot product (SDOT int8 kernels; else SMLAL)",
            present: has!("dotprod"),
        },
    ]
}

#[cfg(target_arch = "x86_64")]
fn detect_features() -> Vec<Feature> {
    use std::arch::is_x86_feature_detected as has;
    vec![
        Feature {
            name: "fma",
            meaning: "fused multiply-add f32 kernels",
            present: has!("fma"),
        },
        Feature {
            name: "avx2",
            meaning: "256-bit f32 and int8 kernels",
            present: has!("avx2"),
        },
        Feature {
            name: "avx512f",
            meaning: "512-bit f32 kernels",
            present: has!("avx512f"),
        },
        Feature {
            name: "avx512vnni",
            meaning: "int8 dot product (VNNI)",
            present: has!("avx512vnni"),
        },
        Feature {
            name: "f16c",
            meaning: "f16 <-> f32 conversion only (no FP16 arithmetic)",
            present: has!("f16c"),
        },
    ]
}

#[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
fn detect_features() -> Vec<Feature> {
    Vec::new()
}

/// This process's resident memory (`VmRSS`) and its peak (`VmHWM`), in
/// bytes, from `/proc/self/status`; `None` where that is unavailable.
pub fn resident_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
