//! What this machine offers tract: CPU architecture, the SIMD features that
//! decide which kernels tract picks, and which model variant should be
//! fastest here.
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

    fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.present)
    }

    /// The model variant expected to run fastest here, and why.
    ///
    /// Measured (genrepi eval/bench on x86, tract 0.23.9): FP32 beats tract's
    /// INT8 paths and its f16 path on CPUs without FP16 arithmetic. Where
    /// FP16 arithmetic exists (Pi 5) f16 kernels are available; that it wins
    /// there is expected, not yet measured.
    pub fn expected_fastest_variant(&self) -> (&'static str, &'static str) {
        if self.arch == "aarch64" && self.has("asimdhp") {
            (
                "fp16 or fp32",
                "FP16 arithmetic present (e.g. Pi 5): tract has f16 kernels here; unmeasured on a Pi, compare with `genrepi eval`",
            )
        } else {
            (
                "fp32",
                "no FP16 arithmetic: tract's f16 path is emulated (~250x slower) and its INT8 paths are slower than FP32",
            )
        }
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
