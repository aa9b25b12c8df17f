//! Model variants: the same trained network stored or computed in another
//! arithmetic (INT8 on integer kernels, FP32 from FP16-on-disk weights, FP16
//! computed by tract where the CPU has FP16 arithmetic), and the choice of
//! the one this machine should run.
//!
//! A manifest lists its variants as `[[variant]]` tables. `--variant auto`
//! (the default) ranks them: first by `genrepi bench`'s measurements on this
//! CPU when they exist (fastest first), else by a static rule (INT8, then
//! FP16, then FP32), keeping only variants whose arithmetic this CPU runs
//! natively. The caller loads the first candidate that fits its memory
//! limit. `--variant NAME` forces one, native or not. Every candidate
//! carries the reason it was ranked where it is, for `info` and the log.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Invalid;
use crate::platform::Platform;

/// The arithmetic a variant's matrix products run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arithmetic {
    /// 8-bit integers (a QOperator int8 ONNX file).
    Int8,
    /// Half precision, derived at load from an FP32 (or FP16-on-disk) file
    /// by tract's `f32_to_f16` transform.
    Fp16,
    /// Single precision.
    Fp32,
}

impl Arithmetic {
    /// Lower names come first in the static rule.
    fn static_rank(self) -> u8 {
        match self {
            Arithmetic::Int8 => 0,
            Arithmetic::Fp16 => 1,
            Arithmetic::Fp32 => 2,
        }
    }

    /// The manifest's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Arithmetic::Int8 => "int8",
            Arithmetic::Fp16 => "fp16",
            Arithmetic::Fp32 => "fp32",
        }
    }
}

/// One `[[variant]]` of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// What `--variant` takes: 1 to 32 characters of `a-z`, `0-9`, `-`.
    pub name: String,
    /// The ONNX file, relative to the manifest's folder.
    pub model: PathBuf,
    /// Hex sha256 of that file, checked at load.
    pub sha256: String,
    /// The arithmetic it runs in.
    pub arithmetic: Arithmetic,
    /// Its measured accuracy (free text: data, split, figures).
    #[serde(default)]
    pub accuracy: Option<String>,
}

impl VariantSpec {
    /// Checks the fields that have a stated range.
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        let ok = (1..=32).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(Invalid::Form(format!(
                "variant name {:?} must be 1 to 32 characters of a-z, 0-9 and -",
                self.name
            )));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid::Form(format!(
                "variant {:?}: sha256 must be 64 hex digits",
                self.name
            )));
        }
        Ok(())
    }
}

/// What `--variant` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Choice {
    /// The best one this CPU runs natively (measured, else the static rule).
    #[default]
    Auto,
    /// This one, whatever the CPU.
    Named(String),
}

impl std::str::FromStr for Choice {
    type Err = Invalid;
    fn from_str(s: &str) -> std::result::Result<Self, Invalid> {
        match s {
            "auto" => Ok(Choice::Auto),
            "" => Err(Invalid::Form("--variant needs a name or auto".into())),
            name => Ok(Choice::Named(name.to_string())),
        }
    }
}

/// A variant with the reason it is where it is in the ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The variant.
    pub spec: VariantSpec,
    /// Why it was chosen (or ranked here), one line.
    pub reason: String,
}

/// Whether this CPU runs an arithmetic on native kernels, and why (not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Native kernels: which ones.
    Native(String),
    /// No native kernels (tract would emulate it, or has none): why.
    Missing(String),
}

/// Whether this CPU runs `arithmetic` on native kernels.
pub fn native(arithmetic: Arithmetic, platform: &Platform) -> Support {
    let has = |f: &str| platform.has(f);
    match (arithmetic, platform.arch) {
        (Arithmetic::Fp32, _) => Support::Native("FP32 kernels everywhere".into()),
        (Arithmetic::Int8, "x86_64") if has("avx512vnni") => {
            Support::Native("int8 dot-product kernels (AVX-512 VNNI)".into())
        }
        (Arithmetic::Int8, "x86_64") if has("avx2") => {
            Support::Native("int8 kernels (AVX2)".into())
        }
        (Arithmetic::Int8, "aarch64") if has("asimddp") => {
            Support::Native("int8 dot-product kernels (SDOT, asimddp)".into())
        }
        (Arithmetic::Int8, "aarch64") => Support::Native("int8 kernels (NEON SMLAL)".into()),
        (Arithmetic::Int8, arch) => {
            Support::Missing(format!("no int8 kernels for {arch} without AVX2"))
        }
        (Arithmetic::Fp16, "aarch64") if has("asimdhp") => {
            Support::Native("FP16 arithmetic (asimdhp) and tract's f16 kernels".into())
        }
        (Arithmetic::Fp16, _) => Support::Missing(
            "no FP16 arithmetic: tract would emulate it (~250x slower than FP32)".into(),
        ),
    }
}

/// Median milliseconds per window that `genrepi bench` measured for a
/// variant on this CPU, at the thread count asked for.
pub trait Measured {
    /// `None` when that variant was not measured at that thread count.
    fn median_ms(&self, variant: &str, threads: usize) -> Option<f64>;
}

/// The variants to try, best first, each with its reason. With
/// [`Choice::Named`] that is the one variant (an error names the ones there
/// are); with [`Choice::Auto`] every variant the CPU runs natively, the
/// measured ones first (fastest first), then the static rule.
pub fn rank(
    variants: &[VariantSpec],
    choice: &Choice,
    platform: &Platform,
    measured: Option<&dyn Measured>,
    threads: usize,
) -> std::result::Result<Vec<Candidate>, Invalid> {
    if let Choice::Named(name) = choice {
        let spec = variants.iter().find(|v| &v.name == name).ok_or_else(|| {
            let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
            Invalid::Inconsistent(format!(
                "no variant {name:?} in this manifest (it has: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })?;
        let reason = match native(spec.arithmetic, platform) {
            Support::Native(why) => format!("asked for with --variant ({why})"),
            Support::Missing(why) => {
                format!("asked for with --variant, although this CPU has {why}")
            }
        };
        return Ok(vec![Candidate {
            spec: spec.clone(),
            reason,
        }]);
    }
    let mut ranked: Vec<(Option<f64>, u8, Candidate)> = Vec::new();
    let mut skipped = Vec::new();
    for spec in variants {
        match native(spec.arithmetic, platform) {
            Support::Native(why) => {
                let ms = measured.and_then(|m| m.median_ms(&spec.name, threads));
                let reason = match ms {
                    Some(ms) => format!(
                        "measured by `genrepi bench` on this CPU: {ms:.1} ms per window at {threads} thread(s); {why}"
                    ),
                    None => format!("static rule (int8, then fp16, then fp32): {why}"),
                };
                ranked.push((
                    ms,
                    spec.arithmetic.static_rank(),
                    Candidate {
                        spec: spec.clone(),
                        reason,
                    },
                ));
            }
            Support::Missing(why) => skipped.push(format!("{}: {why}", spec.name)),
        }
    }
    if ranked.is_empty() {
        return Err(Invalid::Inconsistent(format!(
            "no variant runs natively on this CPU ({}); pick one with --variant",
            skipped.join("; ")
        )));
    }
    // Measured variants first, fastest first; then the static order.
    ranked.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    if let Some(first) = ranked.first_mut()
        && !skipped.is_empty()
    {
        first.2.reason += &format!(" (not native here: {})", skipped.join("; "));
    }
    Ok(ranked.into_iter().map(|(_, _, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(arch: &'static str, features: &[&'static str]) -> Platform {
        Platform::with_features(arch, features)
    }

    fn spec(name: &str, arithmetic: Arithmetic) -> VariantSpec {
        VariantSpec {
            name: name.into(),
            model: format!("{name}.onnx").into(),
            sha256: "0".repeat(64),
            arithmetic,
            accuracy: None,
        }
    }

    fn all() -> Vec<VariantSpec> {
        vec![
            spec("fp32", Arithmetic::Fp32),
            spec("fp16", Arithmetic::Fp16),
            spec("int8", Arithmetic::Int8),
        ]
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.spec.name.as_str()).collect()
    }

    struct Bench(Vec<(&'static str, usize, f64)>);
    impl Measured for Bench {
        fn median_ms(&self, variant: &str, threads: usize) -> Option<f64> {
            self.0
                .iter()
                .find(|(v, t, _)| *v == variant && *t == threads)
                .map(|r| r.2)
        }
    }

    #[test]
    fn static_rule_per_cpu() {
        // (cpu, expected order)
        let cases = [
            (
                platform("x86_64", &["avx2", "avx512vnni"]),
                vec!["int8", "fp32"],
            ),
            (platform("x86_64", &["fma"]), vec!["fp32"]),
            (platform("aarch64", &["asimd"]), vec!["int8", "fp32"]), // Pi 4
            (
                platform("aarch64", &["asimd", "asimdhp", "asimddp"]),
                vec!["int8", "fp16", "fp32"],
            ), // Pi 5
        ];
        for (p, want) in cases {
            let got = rank(&all(), &Choice::Auto, &p, None, 1).unwrap();
            assert_eq!(names(&got), want, "{p:?}");
            assert!(
                got[0].reason.starts_with("static rule"),
                "{}",
                got[0].reason
            );
        }
        let pi4 = rank(
            &all(),
            &Choice::Auto,
            &platform("aarch64", &["asimd"]),
            None,
            1,
        )
        .unwrap();
        assert!(pi4[0].reason.contains("SMLAL") && pi4[0].reason.contains("fp16: no FP16"));
    }

    #[test]
    fn measurements_beat_the_static_rule_at_the_same_thread_count() {
        let pi5 = platform("aarch64", &["asimd", "asimdhp", "asimddp"]);
        let bench = Bench(vec![
            ("fp16", 1, 90.0),
            ("int8", 1, 120.0),
            ("fp32", 4, 10.0),
        ]);
        let got = rank(&all(), &Choice::Auto, &pi5, Some(&bench), 1).unwrap();
        assert_eq!(names(&got), ["fp16", "int8", "fp32"]);
        assert!(got[0].reason.contains("90.0 ms"), "{}", got[0].reason);
        // At 4 threads only fp32 was measured: it leads, the rest follow the rule.
        let got = rank(&all(), &Choice::Auto, &pi5, Some(&bench), 4).unwrap();
        assert_eq!(names(&got), ["fp32", "int8", "fp16"]);
        // A measured variant the CPU cannot run natively is still left out.
        let x86 = platform("x86_64", &["avx2"]);
        let got = rank(&all(), &Choice::Auto, &x86, Some(&bench), 1).unwrap();
        assert_eq!(names(&got), ["int8", "fp32"]);
    }

    #[test]
    fn named_variant_is_forced_and_unknown_names_list_the_others() {
        let x86 = platform("x86_64", &["avx2"]);
        let got = rank(&all(), &Choice::Named("fp16".into()), &x86, None, 1).unwrap();
        assert_eq!(names(&got), ["fp16"]);
        assert!(got[0].reason.contains("no FP16 arithmetic"));
        let err = rank(&all(), &Choice::Named("int4".into()), &x86, None, 1).unwrap_err();
        assert!(err.to_string().contains("fp32, fp16, int8"), "{err}");
        let err = rank(
            &[spec("fp16", Arithmetic::Fp16)],
            &Choice::Auto,
            &x86,
            None,
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("--variant"), "{err}");
    }

    #[test]
    fn names_and_checksums_have_a_range() {
        assert!(spec("int8-qat", Arithmetic::Int8).validate().is_ok());
        for bad in ["", "Int8", "a b", &"x".repeat(33), "ünï"] {
            assert!(spec(bad, Arithmetic::Int8).validate().is_err(), "{bad:?}");
        }
        let mut s = spec("int8", Arithmetic::Int8);
        s.sha256 = "zz".into();
        assert!(s.validate().is_err());
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert_eq!("int8".parse::<Choice>(), Ok(Choice::Named("int8".into())));
    }
}
