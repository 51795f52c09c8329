//! Model sources: Hugging Face folders and Hub ids resolved offline from a
//! cache laid out as the Hub clients write it, through the binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repatlas(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repatlas"));
    cmd.args(args)
        .env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("repatlas binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Lays a model folder out as `models--owner--name` with a ref and a
/// snapshot whose files link to blobs.
fn populate_cache(cache: &Path, id: &str, src: &Path) -> PathBuf {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let blob = repo
            .join("blobs")
            .join(format!("blob-{}", name.to_string_lossy()));
        std::fs::copy(&path, &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(name)).unwrap();
    }
    snapshot
}

fn stimuli(dir: &Path) -> PathBuf {
    let path = dir.join("stimuli.jsonl");
    let lines: Vec<String> = [
        "The river runs past farms.",
        "Bread needs flour, water and salt.",
        "Each layer adds a bias.",
        "The keeper lit the lamp.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| {
        serde_json::json!({"id": format!("t{i}"), "category": "test", "text": t}).to_string()
    })
    .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn hub_id_resolves_offline_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    populate_cache(
        &cache,
        "tiny/llama",
        &common::fixture("reference/tiny_models/llama"),
    );
    let out = dir.path().join("run");
    let result = repatlas(
        &[
            "capture",
            "--model",
            "hf:tiny/llama",
            "--stimuli",
            s(&stimuli(dir.path())),
            "--out",
            s(&out),
            "--offline",
        ],
        &[("HF_HUB_CACHE", &cache)],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["source"]["kind"], "hub");
    assert_eq!(manifest["source"]["hub_id"], "tiny/llama");
    assert_eq!(manifest["architecture"], "llama");
    assert_eq!(manifest["n_blocks"], 4);

    // HF_HOME/hub is the cache too.
    let out2 = dir.path().join("run2");
    let result = repatlas(
        &[
            "capture",
            "--model",
            "hf:tiny/llama",
            "--stimuli",
            s(&stimuli(dir.path())),
            "--out",
            s(&out2),
        ],
        &[("HF_HOME", dir.path()), ("HF_HUB_OFFLINE", Path::new("1"))],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let a = repatlas::capture::Run::open(&out).unwrap();
    let b = repatlas::capture::Run::open(&out2).unwrap();
    assert_eq!(a.layer(4).unwrap(), b.layer(4).unwrap());
}

#[test]
fn missing_hub_model_offline_names_id_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("empty-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let out = dir.path().join("run");
    let result = repatlas(
        &[
            "capture",
            "--model",
            "hf:nobody/absent-model",
            "--stimuli",
            s(&stimuli(dir.path())),
            "--out",
            s(&out),
        ],
        &[("HF_HUB_CACHE", &cache), ("HF_HUB_OFFLINE", Path::new("1"))],
    );
    assert_eq!(result.status.code(), Some(2));
    let message = stderr(&result);
    assert!(message.contains("nobody/absent-model"), "{message}");
    assert!(message.contains(s(&cache)), "{message}");
    assert!(!out.exists());
}

#[test]
fn every_tiny_family_captures_from_folder() {
    let dir = tempfile::tempdir().unwrap();
    let stimuli = stimuli(dir.path());
    for (model, arch) in [
        ("llama", "llama"),
        ("mistral", "mistral"),
        ("qwen2", "qwen2"),
        ("gemma3", "gemma3"),
        ("bert", "bert"),
    ] {
        let out = dir.path().join(model);
        let folder = if model == "bert" {
            common::fixture("reference/bert")
        } else {
            common::fixture(&format!("reference/tiny_models/{model}"))
        };
        let result = repatlas(
            &[
                "capture",
                "--model",
                s(&folder),
                "--stimuli",
                s(&stimuli),
                "--out",
                s(&out),
                "--tap",
                "resid-mid",
                "--tap",
                "attn-out",
                "--tap",
                "mlp-out",
            ],
            &[],
        );
        assert!(result.status.success(), "{model}: {}", stderr(&result));
        let run = repatlas::capture::Run::open(&out).unwrap();
        assert_eq!(run.manifest.architecture, arch);
        assert_eq!(run.layer(4).unwrap().dim(), (4, 64));
        // resid_mid = resid_pre + attn_out, and resid_post = resid_mid + mlp_out
        // hold for the pre-norm decoders (BERT is post-norm).
        if model != "bert" {
            let pre = run.layer(1).unwrap();
            let mid = run.tensor("resid_mid.2").unwrap();
            let attn = run.tensor("attn_out.2").unwrap();
            let post = run.layer(2).unwrap();
            let mlp = run.tensor("mlp_out.2").unwrap();
            let err1 = (&pre + &attn - &mid)
                .iter()
                .map(|x| x.abs())
                .fold(0.0, f64::max);
            let err2 = (&mid + &mlp - &post)
                .iter()
                .map(|x| x.abs())
                .fold(0.0, f64::max);
            assert!(
                err1 < 1e-4 && err2 < 1e-4,
                "{model}: tap sums off by {err1:.2e}, {err2:.2e}"
            );
        }
    }
}

#[test]
fn folder_without_tokenizer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("no-tokenizer");
    std::fs::create_dir_all(&folder).unwrap();
    let src = common::fixture("reference/tiny_models/llama");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(file), folder.join(file)).unwrap();
    }
    let out = dir.path().join("run");
    let result = repatlas(
        &[
            "capture",
            "--model",
            s(&folder),
            "--stimuli",
            s(&stimuli(dir.path())),
            "--out",
            s(&out),
        ],
        &[],
    );
    assert_eq!(result.status.code(), Some(2));
    let message = stderr(&result);
    assert!(
        message.contains("tokenizer.json") && message.contains("no-tokenizer"),
        "{message}"
    );
    assert!(!out.exists());
}
