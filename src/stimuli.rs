//! Stimulus sets: one JSON record per line with `id`, `category` and `text`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One stimulus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stimulus {
    pub id: String,
    #[serde(default)]
    pub category: String,
    pub text: String,
}

/// A loaded stimulus set and the hashes that identify it.
#[derive(Debug, Clone)]
pub struct StimulusSet {
    pub path: PathBuf,
    pub stimuli: Vec<Stimulus>,
    /// sha256 of the file's bytes.
    pub file_sha256: String,
}

/// Errors of reading a stimulus file.
#[derive(Debug, thiserror::Error)]
pub enum StimuliError {
    #[error("cannot read stimulus file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: invalid stimulus record ({message}); expected a JSON object with \"id\" and \"text\" (and optionally \"category\")")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: duplicate stimulus id {id:?}; ids must be unique")]
    DuplicateId {
        path: PathBuf,
        line: usize,
        id: String,
    },
    #[error("{path}:{line}: stimulus {id:?} has empty text (or only whitespace); give it text or remove it")]
    EmptyText {
        path: PathBuf,
        line: usize,
        id: String,
    },
    #[error("{path} is not valid UTF-8 (first invalid byte at offset {offset}); save it as UTF-8")]
    Encoding { path: PathBuf, offset: usize },
    #[error("stimulus file {path} has no records; add one JSON object per line")]
    Empty { path: PathBuf },
}

impl StimulusSet {
    /// Reads a JSON-lines stimulus file; blank lines are skipped. `limit`
    /// keeps the first records only.
    pub fn load(path: &Path, limit: Option<usize>) -> Result<Self, StimuliError> {
        let bytes = std::fs::read(path).map_err(|source| StimuliError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| StimuliError::Encoding {
            path: path.to_path_buf(),
            offset: e.valid_up_to(),
        })?;
        // A UTF-8 byte order mark is not part of the first record.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut stimuli = Vec::new();
        let mut ids = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if limit.is_some_and(|l| stimuli.len() >= l) {
                break;
            }
            let line_no = n + 1;
            let record: Stimulus = serde_json::from_str(line).map_err(|e| StimuliError::Parse {
                path: path.to_path_buf(),
                line: line_no,
                message: e.to_string(),
            })?;
            if record.text.trim().is_empty() {
                return Err(StimuliError::EmptyText {
                    path: path.to_path_buf(),
                    line: line_no,
                    id: record.id,
                });
            }
            if !ids.insert(record.id.clone()) {
                return Err(StimuliError::DuplicateId {
                    path: path.to_path_buf(),
                    line: line_no,
                    id: record.id,
                });
            }
            stimuli.push(record);
        }
        if stimuli.is_empty() {
            return Err(StimuliError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            stimuli,
            file_sha256: hex_sha256(&bytes),
        })
    }

    /// sha256 over the selected records (id, category and text, in order).
    /// Two runs are comparable only when this hash is equal.
    pub fn set_sha256(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.stimuli {
            for field in [&s.id, &s.category, &s.text] {
                h.update((field.len() as u64).to_le_bytes());
                h.update(field.as_bytes());
            }
        }
        hex(&h.finalize())
    }

    pub fn len(&self) -> usize {
        self.stimuli.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stimuli.is_empty()
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h)?;
    Ok(hex(&h.finalize()))
}
