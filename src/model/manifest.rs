//! The TOML manifest that travels beside every ONNX model.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Invalid, Result};
use crate::features::FeatureConfig;
use crate::model::variant::VariantSpec;

/// What the model's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalised scores: genrepi applies a softmax.
    #[default]
    Logits,
    /// Already probabilities summing to one.
    Probabilities,
}

/// Model input tensor: `[1, channels, height, width]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The input shape. `[1, 1, n_mels, frames]` feeds windows as they are;
    /// any other height/width gets a bilinear resize (PyTorch
    /// `interpolate(mode="bilinear", align_corners=False)`), and 3 channels
    /// get the same image in each (the seed's `3×299×299`). Exactly four
    /// numbers: anything else is refused, never cut or padded.
    #[serde(deserialize_with = "four_dims")]
    pub shape: [usize; 4],
}

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec {
            shape: [1, 1, 128, 130],
        }
    }
}

/// Reads an input shape as a list and insists on four dimensions.
fn four_dims<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<[usize; 4], D::Error> {
    let dims = Vec::<usize>::deserialize(d)?;
    <[usize; 4]>::try_from(dims.as_slice()).map_err(|_| {
        serde::de::Error::custom(format!(
            "input shape must have 4 dimensions [1, C, H, W], got {}",
            dims.len()
        ))
    })
}

/// Affine normalisation applied to each dB value: `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Subtracted from each value, in dB.
    pub mean: f32,
    /// Divides each centred value, in dB.
    pub std: f32,
}

impl Default for Normalize {
    fn default() -> Self {
        Normalize {
            mean: 0.0,
            std: 1.0,
        }
    }
}

/// A model manifest, `models/NAME.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short human name of the model.
    pub name: String,
    /// The ONNX file, relative to the manifest's folder.
    pub model: PathBuf,
    /// Hex sha256 of the ONNX file, checked at load.
    pub sha256: String,
    /// Class labels in output order (GTZAN genre folder names).
    pub labels: Vec<String>,
    /// What the output tensor holds.
    #[serde(default)]
    pub output: OutputKind,
    /// Input tensor shape and layout.
    #[serde(default)]
    pub input: InputSpec,
    /// Input normalisation.
    #[serde(default)]
    pub normalize: Normalize,
    /// Front-end parameters the model was trained with.
    #[serde(default)]
    pub features: FeatureConfig,
    /// The same network in other files or arithmetics (`[[variant]]`
    /// tables); `--variant` picks one. When there are any, `model` and
    /// `sha256` above must name one of them (what a genrepi without
    /// variants loads).
    #[serde(default, rename = "variant", skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSpec>,
    /// Where the model came from: data, split, epochs, metrics. Free-form.
    #[serde(default)]
    pub provenance: toml::Table,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::limits::read_text(path).map_err(|e| match e {
            Error::Read { cause, .. } => Error::Manifest {
                path: path.to_path_buf(),
                detail: cause.to_string(),
            },
            other => other,
        })?;
        Self::parse(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// Parses and validates a manifest's text.
    pub fn parse(text: &str) -> std::result::Result<Self, Invalid> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| Invalid::Syntax(e.message().replace('\n', " ")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the manifest on its own (the ONNX file is checked at load).
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        use crate::limits::{INPUT_SIDE, INPUT_VALUES, LABEL_CHARS, LABELS};
        LABELS.check(self.labels.len())?;
        for label in &self.labels {
            LABEL_CHARS.check(label.chars().count())?;
            if label.chars().any(char::is_control) {
                return Err(Invalid::Form(format!(
                    "label {label:?} holds a control character"
                )));
            }
        }
        let mut seen = HashSet::new();
        if let Some(dup) = self.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(Invalid::Inconsistent(format!(
                "label {dup:?} appears twice"
            )));
        }
        let [batch, channels, height, width] = self.input.shape;
        if batch != 1 || !(channels == 1 || channels == 3) || height == 0 || width == 0 {
            return Err(Invalid::Form(format!(
                "input shape must be [1, 1 or 3, H, W], got {:?}",
                self.input.shape
            )));
        }
        INPUT_SIDE.check(height)?;
        INPUT_SIDE.check(width)?;
        INPUT_VALUES.check(channels * height * width)?;
        let Normalize { mean, std } = self.normalize;
        // A tiny std would make every input infinite.
        if !((1e-6..=1e6).contains(&std.abs()) && mean.abs() <= 1e6) {
            return Err(Invalid::Form(format!(
                "normalize: need 1e-6 <= |std| <= 1e6 and |mean| <= 1e6, got mean {mean} std {std}"
            )));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid::Form("sha256 must be 64 hex digits".into()));
        }
        let mut names = HashSet::new();
        for v in &self.variants {
            v.validate()?;
            if !names.insert(v.name.as_str()) {
                return Err(Invalid::Inconsistent(format!(
                    "variant {:?} appears twice",
                    v.name
                )));
            }
        }
        if !self.variants.is_empty()
            && !self
                .variants
                .iter()
                .any(|v| v.model == self.model && v.sha256.eq_ignore_ascii_case(&self.sha256))
        {
            return Err(Invalid::Inconsistent(
                "model and sha256 must name one of the [[variant]] tables".into(),
            ));
        }
        self.features.validate().map_err(|e| match e {
            Invalid::OutOfRange { .. } => e,
            other => Invalid::Inconsistent(format!("features: {other}")),
        })
    }
}

/// Where the Debian package installs the default model's manifest.
pub const PACKAGED_MODEL: &str = "/usr/share/genrepi/models/default.toml";

/// Finds the manifest to load: `explicit` (a manifest or an `.onnx` with a
/// manifest of the same stem beside it), else `$GENREPI_MODEL`, else
/// `models/default.toml` in the working directory or beside the executable,
/// else `share/genrepi/models/default.toml` under the executable's prefix,
/// else [`PACKAGED_MODEL`], else the one in the source tree genrepi was
/// built from.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("GENREPI_MODEL").map(PathBuf::from));
    if let Some(path) = chosen {
        let manifest = if path.extension().is_some_and(|e| e == "onnx") {
            path.with_extension("toml")
        } else {
            path.clone()
        };
        if manifest.is_dir() {
            return Err(Error::Manifest {
                path: manifest,
                detail: "is a folder; give the manifest (.toml) or the .onnx beside it".into(),
            });
        }
        if !manifest.exists() {
            return Err(Error::Manifest {
                path: manifest,
                detail: format!("not found (model given as {})", path.display()),
            });
        }
        return Ok(manifest);
    }
    let mut candidates = vec![PathBuf::from("models/default.toml")];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join("models/default.toml"));
        // An installed tree: PREFIX/bin/genrepi, PREFIX/share/genrepi/models.
        if let Some(prefix) = dir.parent() {
            candidates.push(prefix.join("share/genrepi/models/default.toml"));
        }
    }
    // Where the Debian package puts it.
    candidates.push(PathBuf::from(PACKAGED_MODEL));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.toml"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::Manifest {
            path: candidates[0].clone(),
            detail: "no model given (--model or GENREPI_MODEL) and no default found".into(),
        })
}
