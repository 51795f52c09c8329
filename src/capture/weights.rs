//! Weights of a decoder read from a GGUF file, kept quantized or
//! dequantized to f32.

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use serde::Serialize;

use super::CaptureError;

/// Form in which quantized GGUF weights enter the matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// Dequantize every tensor to f32 at load time: the same numbers
    /// transformers uses when it loads a GGUF file, so hidden states match it.
    Dequantize,
    /// Keep the quantized blocks and use candle's quantized matmul, which also
    /// quantizes the activations to 8 bits: smaller, not exact. NOTE: on the
    /// CPU it ran about 18 times slower than dequantized f32 for batched
    /// capture (SmolLM2, 2 cores), so it only pays off for memory.
    Quantized,
}

/// A linear layer `y = x W^T + b` over the last dimension.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
    out_features: usize,
}

impl Linear {
    /// Applies the layer to `[.., in_features]`, flattening leading dims so
    /// that one GEMM serves the whole batch. The result has a storage of its
    /// own, which the MLP's in-place activation relies on.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dims = xs.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = xs.reshape((rows, dims[dims.len() - 1]))?;
        let mut ys = self.weight.forward(&flat)?;
        if let Some(bias) = &self.bias {
            ys = ys.broadcast_add(bias)?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty dims") = self.out_features;
        ys.reshape(out_dims)
    }
}

/// A token-embedding table, kept quantized when it came quantized.
#[derive(Debug)]
pub enum Embedding {
    Quantized(QTensor),
    Dense(Tensor),
}

impl Embedding {
    /// Looks up `ids` (`batch pos`, u32) and returns f32 `batch pos d_model`.
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Quantized(q) => q.embedding(ids)?.to_dtype(DType::F32),
            Self::Dense(w) => {
                let (b, t) = ids.dims2()?;
                let d = w.dim(1)?;
                w.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, d))
            }
        }
    }

    /// Number of rows (vocabulary size).
    pub fn rows(&self) -> usize {
        match self {
            Self::Quantized(q) => q.shape().dims()[0],
            Self::Dense(w) => w.dims()[0],
        }
    }
}

/// Named tensors of a checkpoint, whatever its file format.
pub trait WeightSource {
    /// Returns the file or folder the weights come from, for error messages.
    fn path(&self) -> &Path;
    fn device(&self) -> &Device;
    fn contains(&self, name: &str) -> bool;
    /// Reads one tensor as f32 and checks its shape.
    fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, CaptureError>;
    /// Reads a `[out, in]` weight (and optional `[out]` bias) as a linear layer.
    fn linear(
        &mut self,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        with_bias: bool,
    ) -> Result<Linear, CaptureError>;
    /// Reads a `[vocab, d]` embedding table.
    fn embedding(&mut self, name: &str, d: usize) -> Result<Embedding, CaptureError>;
}

fn check_shape(
    path: &Path,
    name: &str,
    actual: &[usize],
    expected: &[usize],
) -> Result<(), CaptureError> {
    let matches = actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(a, e)| *e == 0 || a == e);
    if !matches {
        return Err(CaptureError::TensorShape {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: expected.to_vec(),
            actual: actual.to_vec(),
        });
    }
    Ok(())
}

/// Reader of named tensors from one GGUF file.
pub struct GgufWeights {
    path: PathBuf,
    file: File,
    content: gguf_file::Content,
    mode: WeightMode,
    device: Device,
}

impl GgufWeights {
    /// Opens `path` and reads its header and metadata (tensor data stays on
    /// disk until a tensor is requested).
    pub fn open(path: &Path, mode: WeightMode, device: &Device) -> Result<Self, CaptureError> {
        let mut file = File::open(path).map_err(|source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let content =
            gguf_file::Content::read(&mut file).map_err(|e| CaptureError::InvalidModelFile {
                path: path.to_path_buf(),
                message: format!("not a readable GGUF file ({e}); check the download or rerun scripts/fetch-models.sh"),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            content,
            mode,
            device: device.clone(),
        })
    }

    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads one tensor in its stored (possibly quantized) form.
    pub fn qtensor(&mut self, name: &str) -> Result<QTensor, CaptureError> {
        if !self.contains(name) {
            return Err(CaptureError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        self.content
            .tensor(&mut self.file, name, &self.device)
            .map_err(|e| CaptureError::InvalidModelFile {
                path: self.path.clone(),
                message: format!("tensor {name} cannot be read ({e}); the file may be truncated"),
            })
    }

    /// Reads one tensor dequantized to f32 and checks its shape.
    pub fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, CaptureError> {
        let q = self.qtensor(name)?;
        self.check_shape(name, q.shape().dims(), shape)?;
        q.dequantize(&self.device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| self.tensor_error(name, e))
    }

    /// Reads a `[out, in]` weight (and optional `[out]` bias) as a linear layer.
    pub fn linear(
        &mut self,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        with_bias: bool,
    ) -> Result<Linear, CaptureError> {
        let name = format!("{prefix}.weight");
        let q = self.qtensor(&name)?;
        self.check_shape(&name, q.shape().dims(), &[out_features, in_features])?;
        let weight = match self.mode {
            WeightMode::Dequantize => {
                let dense = q
                    .dequantize(&self.device)
                    .map_err(|e| self.tensor_error(&name, e))?;
                QMatMul::Tensor(dense)
            }
            WeightMode::Quantized => {
                QMatMul::from_qtensor(q).map_err(|e| self.tensor_error(&name, e))?
            }
        };
        let bias = if with_bias {
            Some(self.f32(&format!("{prefix}.bias"), &[out_features])?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            out_features,
        })
    }

    fn check_shape(
        &self,
        name: &str,
        actual: &[usize],
        expected: &[usize],
    ) -> Result<(), CaptureError> {
        check_shape(&self.path, name, actual, expected)
    }

    fn tensor_error(&self, name: &str, e: candle_core::Error) -> CaptureError {
        CaptureError::InvalidModelFile {
            path: self.path.clone(),
            message: format!("tensor {name}: {e}"),
        }
    }
}

impl WeightSource for GgufWeights {
    fn path(&self) -> &Path {
        &self.path
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn contains(&self, name: &str) -> bool {
        GgufWeights::contains(self, name)
    }

    fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, CaptureError> {
        GgufWeights::f32(self, name, shape)
    }

    fn linear(
        &mut self,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        with_bias: bool,
    ) -> Result<Linear, CaptureError> {
        GgufWeights::linear(self, prefix, out_features, in_features, with_bias)
    }

    fn embedding(&mut self, name: &str, d: usize) -> Result<Embedding, CaptureError> {
        let q = self.qtensor(name)?;
        self.check_shape(name, q.shape().dims(), &[0, d])?;
        Ok(Embedding::Quantized(q))
    }
}

/// Lists the weight files of an HF folder: `model.safetensors`, or the shards
/// named by `model.safetensors.index.json`. Each must exist.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let index = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    let file_paths: Vec<PathBuf> = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        let bytes = std::fs::read(&index).map_err(|source| CaptureError::Io {
            path: index.clone(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| CaptureError::InvalidModelFile {
                path: index.clone(),
                message: format!("not valid JSON: {e}"),
            })?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| CaptureError::InvalidModelFile {
                path: index.clone(),
                message: "no weight_map object".into(),
            })?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        shards.sort();
        shards.dedup();
        shards.into_iter().map(|s| dir.join(s)).collect()
    } else {
        return Err(CaptureError::InvalidModelFile {
            path: dir.to_path_buf(),
            message: "no model.safetensors or model.safetensors.index.json in the folder".into(),
        });
    };
    for f in &file_paths {
        if !f.is_file() {
            return Err(CaptureError::Io {
                path: f.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "weight shard not found"),
            });
        }
    }
    Ok(file_paths)
}

/// Tensors of a Hugging Face checkpoint: one `model.safetensors` or the
/// shards listed in `model.safetensors.index.json`, memory-mapped. Weights
/// in f16 or bf16 are widened to f32 when loaded.
pub struct SafetensorsWeights {
    path: PathBuf,
    files: candle_core::safetensors::MmapedSafetensors,
    names: std::collections::HashSet<String>,
    device: Device,
    /// dtypes present in the checkpoint, e.g. `F32` or `BF16`.
    pub dtypes: Vec<String>,
    /// The weight files, for the manifest.
    pub file_paths: Vec<PathBuf>,
}

impl SafetensorsWeights {
    /// Opens the checkpoint of the HF folder `dir`.
    pub fn open(dir: &Path, device: &Device) -> Result<Self, CaptureError> {
        let file_paths = checkpoint_files(dir)?;
        // SAFETY: the files are only read; the mapping is dropped with self.
        let files = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&file_paths) }
            .map_err(|e| CaptureError::InvalidModelFile {
                path: dir.to_path_buf(),
                message: format!("not readable safetensors ({e}); the file may be truncated"),
            })?;
        let mut names = std::collections::HashSet::new();
        let mut dtypes = std::collections::BTreeSet::new();
        for (name, view) in files.tensors() {
            dtypes.insert(format!("{:?}", view.dtype()));
            names.insert(name);
        }
        Ok(Self {
            path: dir.to_path_buf(),
            files,
            names,
            device: device.clone(),
            dtypes: dtypes.into_iter().collect(),
            file_paths,
        })
    }

    fn load(&self, name: &str) -> Result<Tensor, CaptureError> {
        if !self.names.contains(name) {
            return Err(CaptureError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        self.files
            .load(name, &self.device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| CaptureError::InvalidModelFile {
                path: self.path.clone(),
                message: format!("tensor {name}: {e}"),
            })
    }
}

impl WeightSource for SafetensorsWeights {
    fn path(&self) -> &Path {
        &self.path
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, CaptureError> {
        let t = self.load(name)?;
        check_shape(&self.path, name, t.dims(), shape)?;
        Ok(t)
    }

    fn linear(
        &mut self,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        with_bias: bool,
    ) -> Result<Linear, CaptureError> {
        let weight = self.f32(&format!("{prefix}.weight"), &[out_features, in_features])?;
        let bias = if with_bias {
            Some(self.f32(&format!("{prefix}.bias"), &[out_features])?)
        } else {
            None
        };
        Ok(Linear {
            weight: QMatMul::Tensor(weight),
            bias,
            out_features,
        })
    }

    fn embedding(&mut self, name: &str, d: usize) -> Result<Embedding, CaptureError> {
        let t = self.load(name)?;
        check_shape(&self.path, name, t.dims(), &[0, d])?;
        Ok(Embedding::Dense(t))
    }
}
