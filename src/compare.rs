//! The compare job: two sources of layer representations in, tidy rows out.
//!
//! A [`Source`] is a run directory, one `.npy` matrix, or a folder of `.npy`
//! matrices (one per layer, in natural name order). [`compare`] checks that
//! both sides were made on the same stimuli, runs the all-layers grid of
//! [`crate::metrics::compare_grid`] and labels every cell as a
//! [`ResultRow`].

use std::path::{Path, PathBuf};

use log::info;

use crate::capture::{CaptureError, Run};
use crate::metrics::{
    compare_grid, GridOptions, MetricError, MetricKind, MetricSpec, Representation,
};
use crate::npy::NpyError;
use crate::results::ResultRow;
use crate::stimuli::hex_sha256;

/// Errors of the compare job.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Metric(#[from] MetricError),
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{path}: not a run directory, .npy file or folder of .npy files")]
    UnknownSource { path: PathBuf },
    #[error("{path}: not found; give a run directory, .npy file or folder of .npy files")]
    NotFound { path: PathBuf },
    #[error("{path}: --tap and --final-norm apply to run directories, not to .npy inputs")]
    NpyOptions { path: PathBuf },
    #[error("{path}: folder holds no .npy files")]
    EmptyFolder { path: PathBuf },
    #[error("{0}")]
    DifferentStimuli(Box<StimuliMismatch>),
    #[error("{a} has {n_a} rows and {b} has {n_b}; both sides need one row per stimulus, in the same order")]
    RowCount {
        a: PathBuf,
        b: PathBuf,
        n_a: usize,
        n_b: usize,
    },
    #[error("{path}: tap {tap:?} is not stored in this run (stored: {stored}); capture with --tap {tap}")]
    MissingTap {
        path: PathBuf,
        tap: String,
        stored: String,
    },
    #[error("layer {layer} is out of range for {path}, which has layers 0..={max}")]
    LayerOutOfRange {
        path: PathBuf,
        layer: usize,
        max: usize,
    },
    #[error("invalid layer selection {spec:?}: {message}; write indices and ranges like 0,4,8-12")]
    LayerSpec { spec: String, message: String },
}

/// Two runs made on different stimulus sets.
#[derive(Debug)]
pub struct StimuliMismatch {
    pub a: PathBuf,
    pub b: PathBuf,
    pub hash_a: String,
    pub hash_b: String,
    pub n_a: usize,
    pub n_b: usize,
    pub file_a: String,
    pub file_b: String,
}

impl std::fmt::Display for StimuliMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runs were made on different stimuli: {} has stimulus set {} ({} stimuli from {}), {} has {} ({} stimuli from {}); capture both on the same stimulus file and --limit",
            self.a.display(),
            self.hash_a,
            self.n_a,
            self.file_a,
            self.b.display(),
            self.hash_b,
            self.n_b,
            self.file_b
        )
    }
}

/// Source of one side's layers: a run, an .npy file or a folder of them.
pub struct Source {
    pub path: PathBuf,
    pub model: String,
    pub layers: Vec<Representation>,
    /// Relative depth of each layer, 0..1.
    pub depths: Vec<f64>,
    /// Original layer index of each selected layer.
    pub indices: Vec<u32>,
    pub manifest_sha256: String,
    stimuli: Option<StimuliKey>,
}

struct StimuliKey {
    set_sha256: String,
    n: usize,
    file: String,
}

/// Activation site a run contributes to the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TapChoice {
    /// `hidden.0..=N`: embeddings, then the residual stream after each block.
    ResidPost,
    /// `resid_mid.1..=N`, between attention and MLP of each block.
    ResidMid,
    AttnOut,
    MlpOut,
}

/// Settings of one comparison.
pub struct CompareOptions {
    pub metrics: Vec<MetricSpec>,
    pub grid: GridOptions,
    pub tap: TapChoice,
    /// Add the final-norm output as a last layer of each run.
    pub include_final_norm: bool,
    pub layers_a: Option<Vec<usize>>,
    pub layers_b: Option<Vec<usize>>,
}

impl Source {
    /// Opens a run directory, a `.npy` file or a folder of `.npy` files.
    pub fn open(
        path: &Path,
        opts: &CompareOptions,
        select: Option<&[usize]>,
    ) -> Result<Self, CompareError> {
        if path.join(crate::capture::rundir::MANIFEST).is_file() {
            return Self::from_run(path, opts, select);
        }
        if path.is_file() && path.extension().is_some_and(|e| e == "npy") {
            select_layers(path, &[0], select)?;
            if opts.tap != TapChoice::ResidPost || opts.include_final_norm {
                return Err(CompareError::NpyOptions {
                    path: path.to_path_buf(),
                });
            }
            let data = crate::npy::read_npy(path)?;
            let bytes = std::fs::read(path).map_err(|source| CaptureError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let name = stem(path);
            return Ok(Self {
                path: path.to_path_buf(),
                model: name.clone(),
                layers: vec![Representation { name, data }],
                depths: vec![0.0],
                indices: vec![0],
                manifest_sha256: hex_sha256(&bytes),
                stimuli: None,
            });
        }
        if path.is_dir() {
            if !has_npy(path) && path.extension().is_some_and(|e| e == "partial") {
                return Err(CaptureError::NotARun {
                    path: path.to_path_buf(),
                    message: "it is an unfinished capture; rerun the capture command to resume it"
                        .into(),
                }
                .into());
            }
            if has_npy(path) {
                return Self::from_npy_folder(path, select);
            }
            // A folder that is neither: let Run::open explain what is missing.
            Run::open(path)?;
        }
        if !path.exists() {
            return Err(CompareError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Err(CompareError::UnknownSource {
            path: path.to_path_buf(),
        })
    }

    fn from_run(
        path: &Path,
        opts: &CompareOptions,
        select: Option<&[usize]>,
    ) -> Result<Self, CompareError> {
        let run = Run::open(path)?;
        let n = run.manifest.n_blocks;
        let (prefix, first) = match opts.tap {
            TapChoice::ResidPost => ("hidden", 0),
            TapChoice::ResidMid => ("resid_mid", 1),
            TapChoice::AttnOut => ("attn_out", 1),
            TapChoice::MlpOut => ("mlp_out", 1),
        };
        let stored = run.tensor_names()?;
        let first_tensor = format!("{prefix}.{first}");
        if !stored.contains(&first_tensor) {
            let taps = run.manifest.taps.join(", ");
            return Err(CompareError::MissingTap {
                path: path.to_path_buf(),
                tap: prefix.replace('_', "-"),
                stored: taps,
            });
        }
        let all: Vec<usize> = (first..=n).collect();
        let chosen = select_layers(path, &all, select)?;
        let mut layers = Vec::new();
        let mut depths = Vec::new();
        let mut indices = Vec::new();
        for &i in &chosen {
            let name = match opts.tap {
                TapChoice::ResidPost => run
                    .manifest
                    .layer_names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("hidden.{i}")),
                _ => format!("blocks.{}.{prefix}", i - 1),
            };
            layers.push(Representation {
                name,
                data: run.tensor(&format!("{prefix}.{i}"))?,
            });
            depths.push(i as f64 / n as f64);
            indices.push(i as u32);
        }
        if opts.include_final_norm {
            layers.push(Representation {
                name: "final_norm".into(),
                data: run.tensor("final_norm")?,
            });
            depths.push(1.0);
            indices.push(n as u32 + 1);
        }
        info!(
            "{}: {} layers of {} ({})",
            path.display(),
            layers.len(),
            run.manifest.model_name,
            prefix
        );
        Ok(Self {
            path: path.to_path_buf(),
            model: run.manifest.model_name.clone(),
            layers,
            depths,
            indices,
            manifest_sha256: run.manifest_sha256.clone(),
            stimuli: Some(StimuliKey {
                set_sha256: run.manifest.stimuli.set_sha256.clone(),
                n: run.manifest.stimuli.n_stimuli,
                file: run.manifest.stimuli.file.clone(),
            }),
        })
    }

    fn from_npy_folder(path: &Path, select: Option<&[usize]>) -> Result<Self, CompareError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| CaptureError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .collect();
        if files.is_empty() {
            return Err(CompareError::EmptyFolder {
                path: path.to_path_buf(),
            });
        }
        files.sort_by_key(|p| natural_key(&stem(p)));
        let all: Vec<usize> = (0..files.len()).collect();
        let chosen = select_layers(path, &all, select)?;
        let denom = (files.len() - 1).max(1) as f64;
        let mut hasher_input = Vec::new();
        let mut layers = Vec::new();
        for &i in &chosen {
            let data = crate::npy::read_npy(&files[i])?;
            hasher_input.extend_from_slice(stem(&files[i]).as_bytes());
            hasher_input.extend(data.iter().flat_map(|x| x.to_le_bytes()));
            layers.push(Representation {
                name: stem(&files[i]),
                data,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            model: stem(path),
            layers,
            depths: chosen.iter().map(|&i| i as f64 / denom).collect(),
            indices: chosen.iter().map(|&i| i as u32).collect(),
            manifest_sha256: hex_sha256(&hasher_input),
            stimuli: None,
        })
    }

    fn n_rows(&self) -> usize {
        self.layers.first().map_or(0, |l| l.data.nrows())
    }
}

fn has_npy(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "npy"))
        })
        .unwrap_or(false)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .or_else(|| path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Sort key that orders `layer2` before `layer10`.
fn natural_key(name: &str) -> (String, u64) {
    let digits: String = name
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let prefix = name[..name.len() - digits.len()].to_string();
    (prefix, digits.parse().unwrap_or(0))
}

fn select_layers(
    path: &Path,
    all: &[usize],
    select: Option<&[usize]>,
) -> Result<Vec<usize>, CompareError> {
    let Some(select) = select else {
        return Ok(all.to_vec());
    };
    let max = *all.last().unwrap_or(&0);
    for &l in select {
        if !all.contains(&l) {
            return Err(CompareError::LayerOutOfRange {
                path: path.to_path_buf(),
                layer: l,
                max,
            });
        }
    }
    Ok(select.to_vec())
}

/// Parses a layer selection such as `0,4,8-12`.
pub fn parse_layers(spec: &str) -> Result<Vec<usize>, CompareError> {
    let bad = |message: String| CompareError::LayerSpec {
        spec: spec.to_string(),
        message,
    };
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((lo, hi)) = part.split_once('-') {
            let lo: usize = lo
                .trim()
                .parse()
                .map_err(|_| bad(format!("{lo:?} is not a layer index")))?;
            let hi: usize = hi
                .trim()
                .parse()
                .map_err(|_| bad(format!("{hi:?} is not a layer index")))?;
            if hi < lo {
                return Err(bad(format!("range {part} is empty")));
            }
            out.extend(lo..=hi);
        } else {
            out.push(
                part.parse()
                    .map_err(|_| bad(format!("{part:?} is not a layer index")))?,
            );
        }
    }
    if out.is_empty() {
        return Err(bad("no layers given".into()));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = out.iter().find(|l| !seen.insert(**l)) {
        return Err(bad(format!("layer {dup} is listed twice")));
    }
    Ok(out)
}

/// Compares every selected layer of `a` with every selected layer of `b`.
pub fn compare(
    a_path: &Path,
    b_path: &Path,
    opts: &CompareOptions,
) -> Result<Vec<ResultRow>, CompareError> {
    let a = Source::open(a_path, opts, opts.layers_a.as_deref())?;
    let b = if a_path == b_path && opts.layers_a == opts.layers_b {
        None
    } else {
        Some(Source::open(b_path, opts, opts.layers_b.as_deref())?)
    };
    let b_ref = b.as_ref().unwrap_or(&a);
    check_same_stimuli(&a, b_ref)?;

    let cells = compare_grid(&a.layers, &b_ref.layers, &opts.metrics, &opts.grid)?;
    let n = a.n_rows() as u64;
    let rows = cells
        .into_iter()
        .map(|c| ResultRow {
            model_a: a.model.clone(),
            layer_a: a.indices[c.layer_a],
            layer_a_name: a.layers[c.layer_a].name.clone(),
            depth_a: a.depths[c.layer_a],
            model_b: b_ref.model.clone(),
            layer_b: b_ref.indices[c.layer_b],
            layer_b_name: b_ref.layers[c.layer_b].name.clone(),
            depth_b: b_ref.depths[c.layer_b],
            metric: c.metric,
            metric_kind: match c.kind {
                MetricKind::Similarity => "similarity".into(),
                MetricKind::Distance => "distance".into(),
            },
            value: c.value,
            n_stimuli: n,
            manifest_a: a.manifest_sha256.clone(),
            manifest_b: b_ref.manifest_sha256.clone(),
            p_value: c.p_value,
            ci_low: c.ci_low,
            ci_high: c.ci_high,
            n_permutations: c.n_permutations,
            n_bootstrap: c.n_bootstrap,
        })
        .collect();
    Ok(rows)
}

fn check_same_stimuli(a: &Source, b: &Source) -> Result<(), CompareError> {
    if let (Some(sa), Some(sb)) = (&a.stimuli, &b.stimuli) {
        if sa.set_sha256 != sb.set_sha256 {
            return Err(CompareError::DifferentStimuli(Box::new(StimuliMismatch {
                a: a.path.clone(),
                b: b.path.clone(),
                hash_a: sa.set_sha256.chars().take(12).collect(),
                hash_b: sb.set_sha256.chars().take(12).collect(),
                n_a: sa.n,
                n_b: sb.n,
                file_a: sa.file.clone(),
                file_b: sb.file.clone(),
            })));
        }
    }
    if a.n_rows() != b.n_rows() {
        return Err(CompareError::RowCount {
            a: a.path.clone(),
            b: b.path.clone(),
            n_a: a.n_rows(),
            n_b: b.n_rows(),
        });
    }
    Ok(())
}
