//! Weights of a decoder read from a GGUF file, kept quantized or
//! dequantized to f32.

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use serde::Serialize;

use super::CaptureError;

/// How quantized GGUF weights enter the matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// Dequantize every tensor to f32 at load time: the same numbers
    /// transformers uses when it loads a GGUF file, so hidden states match it.
    Dequantize,
    /// Keep the quantized blocks and use candle's quantized matmul, which also
    /// quantizes the activations to 8 bits: faster and smaller, not exact.
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
    /// that one GEMM serves the whole batch.
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
        if actual != expected {
            return Err(CaptureError::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: expected.to_vec(),
                actual: actual.to_vec(),
            });
        }
        Ok(())
    }

    fn tensor_error(&self, name: &str, e: candle_core::Error) -> CaptureError {
        CaptureError::InvalidModelFile {
            path: self.path.clone(),
            message: format!("tensor {name}: {e}"),
        }
    }
}
