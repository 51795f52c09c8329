//! The run directory: what a capture writes, and how it is read back.
//!
//! A capture works in `<out>.partial/`. Each finished batch is written to
//! `chunks/NNNNN.safetensors` (atomically, so an interrupted capture resumes
//! from the last whole batch). When every batch is done the chunks are
//! assembled into `activations.safetensors`, `stimuli.parquet` and
//! `manifest.json` are written, and the folder is renamed to `<out>`. A
//! directory without `manifest.json` is never a complete run.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::CaptureError;

/// Name of the manifest file in a run directory.
pub const MANIFEST: &str = "manifest.json";
/// Name of the activations file in a run directory.
pub const ACTIVATIONS: &str = "activations.safetensors";
/// Name of the stimulus table in a run directory.
pub const STIMULI: &str = "stimuli.parquet";

/// One weight file of the model, with its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeightFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Origin of the model: its kind, path, Hub id and weight files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelSource {
    /// `gguf`, `hf-folder` or `hub`.
    pub kind: String,
    /// Local path of the GGUF file or folder.
    pub path: String,
    pub hub_id: Option<String>,
    pub revision: Option<String>,
    pub files: Vec<WeightFile>,
}

/// The stimulus set a run was made on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StimuliInfo {
    pub file: String,
    pub file_sha256: String,
    /// Hash of the selected records; runs compare only when it is equal.
    pub set_sha256: String,
    pub n_stimuli: usize,
}

/// `manifest.json` of a run directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub tool_version: String,
    /// Short model name used in tables and figures.
    pub model_name: String,
    pub source: ModelSource,
    pub architecture: String,
    pub n_blocks: usize,
    pub d_model: usize,
    /// dtype of the forward computation and of the stored activations.
    pub dtype: String,
    /// GGUF tensor types present in the file, e.g. `Q4_1, Q8_0, F32`.
    pub quantization: String,
    /// `dequantize` or `quantized`.
    pub weight_mode: String,
    pub pooling: String,
    pub padding: String,
    pub taps: Vec<String>,
    pub stimuli: StimuliInfo,
    pub tokenizer: serde_json::Value,
    /// Names of `hidden.0..=n_blocks`.
    pub layer_names: Vec<String>,
    pub total_tokens: usize,
    pub max_tokens: Option<usize>,
    pub n_truncated: usize,
    pub config: serde_json::Value,
    pub created: String,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self, CaptureError> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|e| CaptureError::NotARun {
            path: dir.to_path_buf(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| CaptureError::NotARun {
            path: dir.to_path_buf(),
            message: format!("{} is not a valid manifest: {e}", path.display()),
        })
    }
}

/// sha256 of a run's manifest file, used to tie results to their inputs.
pub fn manifest_sha256(dir: &Path) -> Result<String, CaptureError> {
    let path = dir.join(MANIFEST);
    crate::stimuli::file_sha256(&path).map_err(|source| CaptureError::Io { path, source })
}

/// Layer names for `hidden.0..=n_blocks`: the embedding output, then the
/// residual stream after each block in TransformerLens's numbering.
pub fn layer_names(n_blocks: usize) -> Vec<String> {
    std::iter::once("embed".to_string())
        .chain((0..n_blocks).map(|b| format!("blocks.{b}.resid_post")))
        .collect()
}

/// Writes bytes to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CaptureError> {
    let tmp = tmp_path(path);
    let io = |source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        // Delete the half-written file, which would only take disk space.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Returns the temporary sibling used while `path` is being written.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// An f32 tensor to be written: name, shape and row-major data.
pub struct F32Tensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// An i64 tensor to be written.
pub struct I64Tensor<'a> {
    pub name: String,
    pub data: &'a [i64],
}

/// Writes a safetensors file atomically from f32 and i64 tensors.
pub fn write_safetensors(
    path: &Path,
    f32s: &[F32Tensor],
    i64s: &[I64Tensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), CaptureError> {
    let f32_bytes: Vec<Vec<u8>> = f32s
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let i64_bytes: Vec<Vec<u8>> = i64s
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::new();
    let bad = |e: safetensors::SafeTensorError| CaptureError::InvalidModelFile {
        path: path.to_path_buf(),
        message: format!("cannot encode safetensors: {e}"),
    };
    for (t, bytes) in f32s.iter().zip(&f32_bytes) {
        views.push((
            t.name.clone(),
            TensorView::new(Dtype::F32, t.shape.clone(), bytes).map_err(bad)?,
        ));
    }
    for (t, bytes) in i64s.iter().zip(&i64_bytes) {
        views.push((
            t.name.clone(),
            TensorView::new(Dtype::I64, vec![t.data.len()], bytes).map_err(bad)?,
        ));
    }
    let tmp = tmp_path(path);
    if let Err(e) = safetensors::serialize_to_file(views, metadata, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        let source = match e {
            safetensors::SafeTensorError::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        };
        return Err(CaptureError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    std::fs::rename(&tmp, path).map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Streams a large safetensors file tensor by tensor: the header is written
/// first from the declared shapes, then each tensor's bytes in order, so at
/// most one tensor is in memory at a time.
pub struct StreamingWriter {
    path: PathBuf,
    /// The open temporary file, taken by [`StreamingWriter::finish`]. A
    /// writer dropped while it is still here deletes the file.
    out: Option<BufWriter<File>>,
    names: Vec<String>,
    next: usize,
}

impl Drop for StreamingWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(tmp_path(&self.path));
        }
    }
}

impl StreamingWriter {
    /// Creates `path`'s temporary file and writes the header for f32 tensors
    /// `specs` (name, shape) followed by i64 tensors `i64_specs` (name, len).
    pub fn create(
        path: &Path,
        specs: &[(String, Vec<usize>)],
        i64_specs: &[(String, usize)],
    ) -> Result<Self, CaptureError> {
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        let mut names = Vec::new();
        let mut entry = |name: &str, dtype: &str, shape: Vec<usize>, bytes: usize| {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
            );
            offset += bytes;
            names.push(name.to_string());
        };
        for (name, shape) in specs {
            let n: usize = shape.iter().product();
            entry(name, "F32", shape.clone(), n * 4);
        }
        for (name, len) in i64_specs {
            entry(name, "I64", vec![*len], len * 8);
        }
        let mut json = serde_json::to_vec(&header).expect("header serialises");
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let io = |source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(tmp_path(path)).map_err(io)?;
        let mut writer = Self {
            path: path.to_path_buf(),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            names,
            next: 0,
        };
        writer.write_bytes(&(json.len() as u64).to_le_bytes())?;
        writer.write_bytes(&json)?;
        Ok(writer)
    }

    /// Writes the next f32 tensor's data; tensors must come in header order.
    pub fn write_f32(&mut self, name: &str, data: &[f32]) -> Result<(), CaptureError> {
        self.expect(name);
        for x in data {
            self.write_bytes(&x.to_le_bytes())?;
        }
        Ok(())
    }

    /// Writes the next i64 tensor's data.
    pub fn write_i64(&mut self, name: &str, data: &[i64]) -> Result<(), CaptureError> {
        self.expect(name);
        for x in data {
            self.write_bytes(&x.to_le_bytes())?;
        }
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        let out = self.out.as_mut().expect("writer not finished");
        out.write_all(bytes).map_err(|source| CaptureError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn expect(&mut self, name: &str) {
        assert_eq!(
            self.names.get(self.next).map(String::as_str),
            Some(name),
            "tensor written out of order"
        );
        self.next += 1;
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<(), CaptureError> {
        assert_eq!(self.next, self.names.len(), "not every tensor was written");
        let path = self.path.clone();
        let io = |source| CaptureError::Io {
            path: path.clone(),
            source,
        };
        let out = self.out.as_mut().expect("writer not finished");
        out.flush().map_err(io)?;
        out.get_ref().sync_all().map_err(io)?;
        // Only now does the file count as finished: drop leaves it alone.
        self.out = None;
        std::fs::rename(tmp_path(&path), &path).map_err(io)
    }
}

/// A memory-mapped safetensors file.
pub struct MappedSafetensors {
    path: PathBuf,
    mmap: memmap2::Mmap,
}

impl MappedSafetensors {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: run files are written once through a rename and never
        // modified in place; a concurrent writer would have to replace them.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let this = Self {
            path: path.to_path_buf(),
            mmap,
        };
        this.tensors()?;
        Ok(this)
    }

    pub fn tensors(&self) -> Result<SafeTensors<'_>, CaptureError> {
        SafeTensors::deserialize(&self.mmap).map_err(|e| CaptureError::InvalidModelFile {
            path: self.path.clone(),
            message: format!(
                "not a valid safetensors file ({e}); the run may be corrupt, capture it again"
            ),
        })
    }

    pub fn names(&self) -> Result<Vec<String>, CaptureError> {
        Ok(self
            .tensors()?
            .names()
            .into_iter()
            .map(str::to_string)
            .collect())
    }

    /// Reads a 2-D f32 tensor, widening to f64.
    pub fn f64_matrix(&self, name: &str) -> Result<Array2<f64>, CaptureError> {
        let (shape, data) = self.f32_data(name)?;
        if shape.len() != 2 {
            return Err(CaptureError::InvalidModelFile {
                path: self.path.clone(),
                message: format!("tensor {name} has shape {shape:?}, expected 2 dimensions"),
            });
        }
        let values: Vec<f64> = data.into_iter().map(f64::from).collect();
        Ok(Array2::from_shape_vec((shape[0], shape[1]), values).expect("shape matches data"))
    }

    /// The tensor `name` of `tensors`, which must hold `dtype` values.
    fn view_of<'a>(
        &self,
        tensors: &'a SafeTensors<'a>,
        name: &str,
        dtype: Dtype,
    ) -> Result<TensorView<'a>, CaptureError> {
        let view = tensors
            .tensor(name)
            .map_err(|_| CaptureError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        if view.dtype() != dtype {
            return Err(CaptureError::InvalidModelFile {
                path: self.path.clone(),
                message: format!("tensor {name} is {:?}, expected {dtype:?}", view.dtype()),
            });
        }
        Ok(view)
    }

    /// Reads an f32 tensor's shape and values.
    pub fn f32_data(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), CaptureError> {
        let tensors = self.tensors()?;
        let view = self.view_of(&tensors, name, Dtype::F32)?;
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((view.shape().to_vec(), data))
    }

    /// Reads a 1-D i64 tensor.
    pub fn i64_data(&self, name: &str) -> Result<Vec<i64>, CaptureError> {
        let tensors = self.tensors()?;
        let view = self.view_of(&tensors, name, Dtype::I64)?;
        Ok(view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }
}

/// A complete run directory opened for reading.
pub struct Run {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    activations: MappedSafetensors,
}

impl Run {
    /// Opens a complete run; a folder without a manifest is rejected.
    pub fn open(dir: &Path) -> Result<Self, CaptureError> {
        if !dir.join(MANIFEST).is_file() {
            let hint = if dir.with_extension("partial").exists()
                || dir.extension().is_some_and(|e| e == "partial")
            {
                "it is an unfinished capture; rerun the same capture command to resume it"
            } else {
                "run `repatlas capture` to create it"
            };
            return Err(CaptureError::NotARun {
                path: dir.to_path_buf(),
                message: format!("no {MANIFEST} in {}: {hint}", dir.display()),
            });
        }
        let manifest = Manifest::read(dir)?;
        let manifest_sha256 = manifest_sha256(dir)?;
        let activations = MappedSafetensors::open(&dir.join(ACTIVATIONS))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            manifest_sha256,
            activations,
        })
    }

    /// Number of stored layers `hidden.0..=n_blocks`.
    pub fn n_layers(&self) -> usize {
        self.manifest.n_blocks + 1
    }

    /// Reads the pooled representation of `hidden.{layer}` (rows = stimuli).
    pub fn layer(&self, layer: usize) -> Result<Array2<f64>, CaptureError> {
        self.tensor(&format!("hidden.{layer}"))
    }

    /// Any stored tensor by name (`hidden.i`, `final_norm`, `resid_mid.i`, ...).
    pub fn tensor(&self, name: &str) -> Result<Array2<f64>, CaptureError> {
        self.activations.f64_matrix(name)
    }

    /// Token offsets of an every-token run.
    pub fn offsets(&self) -> Result<Vec<i64>, CaptureError> {
        self.activations.i64_data("offsets")
    }

    pub fn tensor_names(&self) -> Result<Vec<String>, CaptureError> {
        self.activations.names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_stream_deletes_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let specs = [("x".to_string(), vec![2, 3]), ("y".to_string(), vec![1, 3])];
        let mut writer = StreamingWriter::create(&path, &specs, &[]).unwrap();
        writer.write_f32("x", &[0.0; 6]).unwrap();
        assert!(tmp_path(&path).is_file());
        drop(writer);
        assert!(!tmp_path(&path).exists(), "the half-written file stayed");
        assert!(!path.exists());

        let mut writer = StreamingWriter::create(&path, &specs, &[]).unwrap();
        writer.write_f32("x", &[1.0; 6]).unwrap();
        writer.write_f32("y", &[2.0; 3]).unwrap();
        writer.finish().unwrap();
        assert!(!tmp_path(&path).exists());
        let mapped = MappedSafetensors::open(&path).unwrap();
        let (shape, data) = mapped.f32_data("y").unwrap();
        assert_eq!(shape, vec![1, 3]);
        assert_eq!(data, &[2.0; 3]);
    }
}
