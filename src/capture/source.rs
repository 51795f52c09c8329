//! Where a model comes from: a GGUF file, a Hugging Face folder, or a Hub
//! id resolved through the standard Hugging Face cache.
//!
//! The cache folder is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`, laid out as the Hub clients write it:
//! `models--{owner}--{name}/refs/{revision}` contains a commit hash and
//! `snapshots/{commit}/` the files. With `HF_HUB_OFFLINE=1` (or `offline`
//! set) only the cache is read.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::CaptureError;

/// A model named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// A local GGUF file.
    Gguf(PathBuf),
    /// A local folder with `config.json`, safetensors and `tokenizer.json`.
    HfFolder(PathBuf),
    /// `hf:owner/name[@revision][:file.gguf]`.
    Hub {
        id: String,
        revision: Option<String>,
        gguf_file: Option<String>,
    },
}

impl FromStr for ModelSpec {
    type Err = CaptureError;

    fn from_str(spec: &str) -> Result<Self, CaptureError> {
        if let Some(rest) = spec.strip_prefix("hf:") {
            let (repo, gguf_file) = match rest.split_once(':') {
                Some((repo, file)) => (repo, Some(file.to_string())),
                None => (rest, None),
            };
            let (id, revision) = match repo.split_once('@') {
                Some((id, rev)) => (id, Some(rev.to_string())),
                None => (repo, None),
            };
            if id.split('/').count() != 2 || id.split('/').any(str::is_empty) {
                return Err(CaptureError::InvalidModelSpec {
                    spec: spec.to_string(),
                    message: "a Hub id is owner/name, e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct"
                        .into(),
                });
            }
            if let Some(rev) = &revision {
                let safe = !rev.is_empty()
                    && !rev
                        .split('/')
                        .any(|part| part.is_empty() || part == "." || part == "..")
                    && !rev.contains('\\');
                if !safe {
                    return Err(CaptureError::InvalidModelSpec {
                        spec: spec.to_string(),
                        message: format!("revision {rev:?} is not a branch, tag or commit name"),
                    });
                }
            }
            return Ok(Self::Hub {
                id: id.to_string(),
                revision,
                gguf_file,
            });
        }
        let path = PathBuf::from(spec);
        if path.is_dir() {
            return Ok(Self::HfFolder(path));
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            || path.is_file()
        {
            return Ok(Self::Gguf(path));
        }
        let hint = if spec.split('/').count() == 2 && !spec.starts_with('.') {
            format!("; to use the Hub model {spec}, write hf:{spec}")
        } else {
            String::new()
        };
        Err(CaptureError::InvalidModelSpec {
            spec: spec.to_string(),
            message: format!("no such file or folder{hint}"),
        })
    }
}

/// Returns the Hugging Face cache folder from the environment.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// True when `HF_HUB_OFFLINE` is set to a true value.
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
}

/// A Hub model resolved to local files.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The snapshot folder, or the GGUF file.
    pub path: PathBuf,
    /// The commit the files belong to, when known.
    pub commit: Option<String>,
}

/// Resolves a Hub id to local files: from the cache, or (when online)
/// through the Hub, which fills the cache.
pub fn resolve_hub(
    id: &str,
    revision: Option<&str>,
    gguf_file: Option<&str>,
    offline: bool,
) -> Result<Resolved, CaptureError> {
    let cache = hub_cache_dir();
    let revision = revision.unwrap_or("main");
    if let Some(found) = from_cache(&cache, id, revision, gguf_file) {
        log::info!("{id}@{revision}: found in the cache {}", cache.display());
        return Ok(found);
    }
    if offline {
        return Err(CaptureError::HubNotCached {
            id: id.to_string(),
            revision: revision.to_string(),
            cache,
        });
    }
    download(&cache, id, revision, gguf_file)
}

fn repo_dir(cache: &Path, id: &str) -> PathBuf {
    cache.join(format!("models--{}", id.replace('/', "--")))
}

/// Finds the snapshot of `revision`, a ref file naming a commit or a commit hash.
fn snapshot(cache: &Path, id: &str, revision: &str) -> Option<(PathBuf, String)> {
    let repo = repo_dir(cache, id);
    let commit = match std::fs::read_to_string(repo.join("refs").join(revision)) {
        Ok(c) => c.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let dir = repo.join("snapshots").join(&commit);
    dir.is_dir().then_some((dir, commit))
}

fn from_cache(cache: &Path, id: &str, revision: &str, gguf_file: Option<&str>) -> Option<Resolved> {
    let (dir, commit) = snapshot(cache, id, revision)?;
    let path = match gguf_file {
        Some(file) => {
            let p = dir.join(file);
            p.is_file().then_some(p)?
        }
        None => {
            let complete = dir.join("config.json").is_file()
                && (dir.join("model.safetensors").is_file() || index_complete(&dir));
            complete.then_some(dir)?
        }
    };
    Some(Resolved {
        path,
        commit: Some(commit),
    })
}

/// True when a sharded checkpoint's index and every shard it names exist.
fn index_complete(dir: &Path) -> bool {
    shard_names(dir).is_some_and(|names| names.iter().all(|n| dir.join(n).is_file()))
}

fn shard_names(dir: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(dir.join("model.safetensors.index.json")).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let mut names: Vec<String> = json
        .get("weight_map")?
        .as_object()?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    Some(names)
}

fn download(
    cache: &Path,
    id: &str,
    revision: &str,
    gguf_file: Option<&str>,
) -> Result<Resolved, CaptureError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let failed = |file: &str, e: String| CaptureError::HubDownload {
        id: id.to_string(),
        file: file.to_string(),
        message: e,
    };
    let api = ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .build()
        .map_err(|e| failed("", e.to_string()))?;
    let repo = api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let get = |file: &str| repo.get(file).map_err(|e| failed(file, e.to_string()));
    if let Some(file) = gguf_file {
        let path = get(file)?;
        return Ok(Resolved { path, commit: None });
    }
    let config = get("config.json")?;
    let dir = config
        .parent()
        .expect("downloaded file has a folder")
        .to_path_buf();
    for optional in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        // Encoders and some decoders lack generation_config.json.
        let _ = repo.get(optional);
    }
    if repo.get("model.safetensors").is_err() {
        get("model.safetensors.index.json")?;
        for shard in shard_names(&dir).unwrap_or_default() {
            get(&shard)?;
        }
    }
    let commit = dir.file_name().map(|c| c.to_string_lossy().into_owned());
    Ok(Resolved { path: dir, commit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "hf:Owner/Model@v1.0".parse::<ModelSpec>().unwrap(),
            ModelSpec::Hub {
                id: "Owner/Model".into(),
                revision: Some("v1.0".into()),
                gguf_file: None
            }
        );
        assert_eq!(
            "hf:Owner/Model:model-q4.gguf".parse::<ModelSpec>().unwrap(),
            ModelSpec::Hub {
                id: "Owner/Model".into(),
                revision: None,
                gguf_file: Some("model-q4.gguf".into())
            }
        );
        let err = "hf:nonsense".parse::<ModelSpec>().unwrap_err().to_string();
        assert!(err.contains("owner/name"), "{err}");
        let err = "Owner/Missing"
            .parse::<ModelSpec>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("hf:Owner/Missing"), "{err}");
    }
}
