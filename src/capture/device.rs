//! The device a model runs on: the CPU, or a CUDA GPU in a build with the
//! `cuda` feature (`cargo build --release --features cuda`, which needs the
//! CUDA toolkit).

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use super::batch::Padding;
use super::CaptureError;

/// The device that capture and interventions run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDevice {
    #[default]
    Cpu,
    /// The CUDA GPU of this ordinal.
    Cuda(usize),
}

impl ComputeDevice {
    /// Returns the batch layout that runs fastest here: packed stimuli
    /// without padding on the CPU, right padding on a GPU (packed attention
    /// has no GPU kernel).
    pub fn default_padding(self) -> Padding {
        match self {
            Self::Cpu => Padding::None,
            Self::Cuda(_) => Padding::Right,
        }
    }

    /// Chooses the batch layout of a run: `requested` when given, else the
    /// layout an unfinished run recorded at `recorded` (so that it resumes,
    /// when this device runs it), else [`ComputeDevice::default_padding`].
    pub fn choose_padding(
        self,
        requested: Option<Padding>,
        recorded: Option<(Padding, &std::path::Path)>,
    ) -> Result<Padding, CaptureError> {
        let runs_here = |padding: Padding| !padding.is_packed() || self == Self::Cpu;
        if let Some(padding) = requested {
            if !runs_here(padding) {
                return Err(CaptureError::Device(format!(
                    "--padding none (packed batches) runs on the CPU only; with --device \
                     {self} use --padding right, or leave --padding out"
                )));
            }
            return Ok(padding);
        }
        match recorded {
            Some((padding, path)) if runs_here(padding) => {
                log::info!(
                    "padding {} as recorded in {}, to resume that run",
                    padding.name(),
                    path.display()
                );
                Ok(padding)
            }
            _ => Ok(self.default_padding()),
        }
    }

    /// Opens the device. A CUDA device in a build without the `cuda`
    /// feature is an error that names the build command.
    pub fn open(self) -> Result<Device, CaptureError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => {
                if !cfg!(feature = "cuda") {
                    return Err(CaptureError::Device(format!(
                        "device cuda:{ordinal} needs a build with CUDA support: \
                         cargo build --release --features cuda (requires the CUDA toolkit), \
                         or use --device cpu"
                    )));
                }
                Device::new_cuda(ordinal).map_err(|e| {
                    // With RUST_BACKTRACE set, candle appends a backtrace to
                    // the error. It goes to the log, the first line to the user.
                    let full = e.to_string();
                    log::debug!("cuda:{ordinal}: {full}");
                    CaptureError::Device(format!(
                        "cannot open CUDA device {ordinal}: {}; check that the NVIDIA driver is \
                         installed and nvidia-smi lists the GPU, or use --device cpu",
                        first_line(&full)
                    ))
                })
            }
        }
    }
}

/// Returns the text up to its first line break, trimmed.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl FromStr for ComputeDevice {
    type Err = CaptureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            CaptureError::Device(format!(
                "invalid device {s:?}; use cpu, cuda or cuda:N (N the GPU ordinal, from 0)"
            ))
        };
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(invalid),
        }
    }
}

/// Parses a device for clap arguments.
pub fn parse_device(s: &str) -> Result<ComputeDevice, String> {
    s.parse().map_err(|e: CaptureError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_drops_backtrace() {
        let error = "DriverError(CUDA_ERROR_UNKNOWN, \"x\")\n   0: candle_core::error::Error::bt\n";
        assert_eq!(first_line(error), "DriverError(CUDA_ERROR_UNKNOWN, \"x\")");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn device_names_parse_and_print() {
        for (text, device) in [
            ("cpu", ComputeDevice::Cpu),
            ("cuda", ComputeDevice::Cuda(0)),
            ("cuda:3", ComputeDevice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<ComputeDevice>().unwrap(), device);
        }
        assert_eq!(ComputeDevice::Cuda(2).to_string(), "cuda:2");
        let err = "gpu".parse::<ComputeDevice>().unwrap_err().to_string();
        assert!(err.contains("\"gpu\""), "{err}");
        assert!(err.contains("cuda:N"), "{err}");
    }

    #[test]
    fn cpu_opens() {
        assert!(ComputeDevice::Cpu.open().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_names_the_build() {
        let err = ComputeDevice::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
        assert!(err.contains("--device cpu"), "{err}");
    }
}
