//! End-to-end tests of the `repatlas` binary on a real model and small
//! stimulus files, each in a temporary directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repatlas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repatlas"))
        .args(args)
        .output()
        .expect("repatlas binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `verb` (capture or intervene) on `model` and `stimuli`, writing to
/// `out`, with the `extra` arguments.
fn run_model(verb: &str, model: &Path, stimuli: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        verb,
        "--model",
        s(model),
        "--stimuli",
        s(stimuli),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    repatlas(&args)
}

fn capture(model: &Path, stimuli: &Path, out: &Path, extra: &[&str]) -> Output {
    run_model("capture", model, stimuli, out, extra)
}

fn intervene(model: &Path, stimuli: &Path, out: &Path, extra: &[&str]) -> Output {
    run_model("intervene", model, stimuli, out, extra)
}

fn small_stimuli() -> PathBuf {
    common::fixture("stimuli/small.jsonl")
}

/// Captures SmolLM2 on the small stimulus file into `dir`.
fn smollm2_run(dir: &Path) -> PathBuf {
    let model = common::require_model(common::SMOLLM2);
    let out = dir.join("smollm2");
    let result = capture(&model, &small_stimuli(), &out, &["--batch-tokens", "64"]);
    assert!(
        result.status.success(),
        "capture failed: {}",
        stderr(&result)
    );
    out
}

#[test]
fn capture_writes_complete_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = smollm2_run(dir.path());
    for file in [
        "manifest.json",
        "activations.safetensors",
        "stimuli.parquet",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    assert!(
        !dir.path().join("smollm2.partial").exists(),
        "working folder left behind"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["architecture"], "llama");
    assert_eq!(manifest["n_blocks"], 30);
    assert_eq!(manifest["d_model"], 576);
    assert_eq!(manifest["stimuli"]["n_stimuli"], 12);
    assert_eq!(manifest["padding"], "none", "the CPU default packs batches");
    assert_eq!(manifest["layer_names"].as_array().unwrap().len(), 31);
    assert_eq!(
        manifest["source"]["files"][0]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );

    let opened = repatlas::capture::Run::open(&run).unwrap();
    let layer = opened.layer(30).unwrap();
    assert_eq!(layer.dim(), (12, 576));
    assert!(layer.iter().all(|x| x.is_finite()));
    assert!(opened.tensor("final_norm").is_ok());
}

#[test]
fn compare_self_and_jsonl_rows() {
    let dir = tempfile::tempdir().unwrap();
    let run = smollm2_run(dir.path());
    let out = dir.path().join("self.parquet");
    let result = repatlas(&[
        "compare",
        s(&run),
        "--layers-a",
        "0,10,30",
        "--out",
        s(&out),
    ]);
    assert!(
        result.status.success(),
        "compare failed: {}",
        stderr(&result)
    );
    let rows = repatlas::results::read_parquet(&out).unwrap();
    assert_eq!(rows.len(), 3 * 3 * 4, "3 x 3 layers x 4 metrics");
    for row in rows
        .iter()
        .filter(|r| r.layer_a == r.layer_b && r.metric == "linear_cka")
    {
        assert!(
            (row.value - 1.0).abs() < 1e-9,
            "self CKA of layer {} is {}",
            row.layer_a,
            row.value
        );
    }

    let jsonl = repatlas(&[
        "compare",
        s(&run),
        "--layers-a",
        "10",
        "--metrics",
        "linear_cka",
        "--format",
        "jsonl",
    ]);
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let text = String::from_utf8(jsonl.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1);
    let row: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(row["metric"], "linear_cka");
    assert_eq!(row["layer_a"], 10);
}

#[test]
fn plot_writes_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let run = smollm2_run(dir.path());
    let out = dir.path().join("r.parquet");
    let result = repatlas(&[
        "compare",
        s(&run),
        "--metrics",
        "linear_cka",
        "--layers-a",
        "0-30:3",
        "--out",
        s(&out),
    ]);
    // A stepped range is not valid syntax: the error names the value.
    assert_eq!(result.status.code(), Some(2));
    assert!(stderr(&result).contains("0-30:3"), "{}", stderr(&result));

    let result = repatlas(&[
        "compare",
        s(&run),
        "--metrics",
        "linear_cka",
        "--layers-a",
        "0,5,10,15,20,25,30",
        "--out",
        s(&out),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let figures = dir.path().join("figures");
    let result = repatlas(&["plot", s(&out), "--out", s(&figures)]);
    assert!(result.status.success(), "plot failed: {}", stderr(&result));
    let listed = String::from_utf8(result.stdout).unwrap();
    let pngs: Vec<&str> = listed.lines().filter(|l| l.ends_with(".png")).collect();
    assert!(!pngs.is_empty(), "no PNG listed: {listed}");
    for png in pngs {
        let image = image::open(png).unwrap().to_rgb8();
        assert!(image.width() > 300, "{png} width {}", image.width());
        assert!(image.height() > 300, "{png} height {}", image.height());
        let first = image.get_pixel(0, 0);
        assert!(image.pixels().any(|p| p != first), "{png} is one colour");
    }
    assert!(listed.lines().any(|l| l.ends_with(".svg")));
}

#[test]
fn compare_rejects_runs_on_different_stimuli() {
    let dir = tempfile::tempdir().unwrap();
    let run = smollm2_run(dir.path());
    let model = common::require_model(common::SMOLLM2);
    let other = dir.path().join("other");
    let result = capture(&model, &common::fixture("stimuli/other.jsonl"), &other, &[]);
    assert!(result.status.success(), "{}", stderr(&result));
    let result = repatlas(&["compare", s(&run), s(&other), "--format", "jsonl"]);
    assert_eq!(result.status.code(), Some(2));
    let message = stderr(&result);
    assert!(message.contains("different stimuli"), "{message}");
    assert!(result.stdout.is_empty(), "rows printed despite the error");
}

#[test]
fn capture_errors_name_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.gguf");
    let out = dir.path().join("run");
    let result = capture(&missing, &small_stimuli(), &out, &[]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("absent.gguf"),
        "{}",
        stderr(&result)
    );
    assert!(!out.exists());

    // A model file cut short: header readable, tensor data missing.
    let model = common::require_model(common::SMOLLM2);
    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let result = capture(&truncated, &small_stimuli(), &out, &[]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    assert!(stderr(&result).contains("truncated"), "{}", stderr(&result));
    assert!(!out.join("manifest.json").exists());

    let result = capture(&model, &common::fixture("stimuli/empty.jsonl"), &out, &[]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("empty.jsonl"),
        "{}",
        stderr(&result)
    );
    assert!(!out.exists());
}

#[test]
fn compare_errors_name_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.npy");
    let b = dir.path().join("b.npy");
    let mut data = ndarray::Array2::<f64>::zeros((10, 4));
    for ((i, j), v) in data.indexed_iter_mut() {
        *v = ((i * 7 + j * 3) % 11) as f64;
    }
    repatlas::npy::write_npy(&a, data.view()).unwrap();
    data[[3, 2]] = f64::NAN;
    repatlas::npy::write_npy(&b, data.view()).unwrap();

    let result = repatlas(&[
        "compare",
        s(&a),
        s(&b),
        "--metrics",
        "linear_cka",
        "--format",
        "jsonl",
    ]);
    assert_eq!(result.status.code(), Some(2));
    let message = stderr(&result);
    assert!(message.contains("NaN"), "{message}");
    assert!(
        message.contains('3') && message.contains('2'),
        "row and column named: {message}"
    );

    let out = dir.path().join("r.parquet");
    let result = repatlas(&[
        "compare",
        s(&a),
        "--metrics",
        "linear_cka;not_a_metric",
        "--out",
        s(&out),
    ]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("not_a_metric"),
        "{}",
        stderr(&result)
    );
    assert!(!out.exists(), "no output after an invalid metric");

    let absent = dir.path().join("absent-run");
    let result = repatlas(&["compare", s(&absent), "--format", "jsonl"]);
    assert_eq!(result.status.code(), Some(2));
    let message = stderr(&result);
    assert!(message.contains("absent-run: not found"), "{message}");

    let result = repatlas(&[
        "compare",
        s(&a),
        "--metrics",
        "linear_cka",
        "--format",
        "jsonl",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
}

/// Starts a capture of the small stimuli into `out` and kills it once its
/// first batch is on disk in `partial` (or after two minutes).
fn kill_after_first_batch(model: &Path, out: &Path, partial: &Path, extra: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_repatlas"))
        .args([
            "capture",
            "--model",
            s(model),
            "--stimuli",
            s(&small_stimuli()),
            "--out",
            s(out),
        ])
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let chunks = std::fs::read_dir(partial.join("chunks"))
            .map(|d| d.count())
            .unwrap_or(0);
        if chunks > 0 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn interrupted_capture_resumes_to_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let full = dir.path().join("full");
    let result = capture(&model, &small_stimuli(), &full, &["--batch-tokens", "16"]);
    assert!(result.status.success(), "{}", stderr(&result));

    // Start a capture and kill it once its first batch is on disk.
    let out = dir.path().join("resumed");
    let partial = dir.path().join("resumed.partial");
    kill_after_first_batch(&model, &out, &partial, &["--batch-tokens", "16"]);
    if !out.exists() {
        assert!(
            !partial.join("manifest.json").exists(),
            "an unfinished capture looks complete"
        );
        let refused = repatlas(&["compare", s(&partial), "--format", "jsonl"]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(
            stderr(&refused).contains("unfinished"),
            "{}",
            stderr(&refused)
        );
    }

    let result = capture(
        &model,
        &small_stimuli(),
        &out,
        &["--batch-tokens", "16", "-v"],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let a = repatlas::capture::Run::open(&full).unwrap();
    let b = repatlas::capture::Run::open(&out).unwrap();
    for layer in [0, 15, 30] {
        assert_eq!(
            a.layer(layer).unwrap(),
            b.layer(layer).unwrap(),
            "layer {layer} differs after resume"
        );
    }
}

#[test]
fn resume_keeps_the_recorded_padding() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let out = dir.path().join("run");
    let partial = dir.path().join("run.partial");
    let padded = ["--batch-tokens", "16", "--padding", "right"];
    kill_after_first_batch(&model, &out, &partial, &padded);
    if out.exists() {
        eprintln!("the capture finished before the kill; nothing to resume");
        return;
    }

    // Asking for another layout names the change and keeps the partial run.
    let packed = ["--batch-tokens", "16", "--padding", "none"];
    let result = capture(&model, &small_stimuli(), &out, &packed);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    let message = stderr(&result);
    assert!(
        message.contains("--padding was right, now none"),
        "{message}"
    );
    assert!(message.contains("original settings"), "{message}");
    assert!(
        partial.join("plan.json").is_file(),
        "the unfinished run was lost"
    );

    // Without --padding the recorded layout is used, so the run resumes.
    let result = capture(
        &model,
        &small_stimuli(),
        &out,
        &["--batch-tokens", "16", "-v"],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("as recorded in"),
        "{}",
        stderr(&result)
    );
    let run = repatlas::capture::Run::open(&out).unwrap();
    assert_eq!(run.manifest.padding, "right");
}

#[test]
fn resume_rejects_other_token_limit() {
    // Every stimulus is cut, so both limits give the same batches. Only the
    // recorded limit distinguishes the two runs.
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let out = dir.path().join("run");
    let partial = dir.path().join("run.partial");
    let first = ["--batch-rows", "1", "--max-tokens", "3", "--pooling", "all"];
    kill_after_first_batch(&model, &out, &partial, &first);
    assert!(!out.exists(), "the capture finished before the kill");

    let other = ["--batch-rows", "1", "--max-tokens", "2", "--pooling", "all"];
    let result = capture(&model, &small_stimuli(), &out, &other);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    let message = stderr(&result);
    assert!(message.contains("was 3, now 2"), "{message}");
    assert!(
        partial.join("plan.json").is_file(),
        "the partial run was lost"
    );

    let result = capture(&model, &small_stimuli(), &out, &first);
    assert!(result.status.success(), "{}", stderr(&result));
    let run = repatlas::capture::Run::open(&out).unwrap();
    assert_eq!(run.manifest.max_tokens, Some(3));
    assert!(!out.join("plan.json").exists());
}

#[test]
fn interrupted_final_move_finishes() {
    // The state a kill inside the last step leaves: the run is assembled in
    // the partial folder, its chunks are gone and its plan is still there.
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let args = ["--batch-tokens", "16"];
    let killed = dir.path().join("killed");
    let killed_partial = dir.path().join("killed.partial");
    kill_after_first_batch(&model, &killed, &killed_partial, &args);
    assert!(!killed.exists(), "the capture finished before the kill");
    let plan = std::fs::read(killed_partial.join("plan.json")).unwrap();

    let full = dir.path().join("full");
    let result = capture(&model, &small_stimuli(), &full, &args);
    assert!(result.status.success(), "{}", stderr(&result));

    let out = dir.path().join("out");
    let partial = dir.path().join("out.partial");
    std::fs::create_dir(&partial).unwrap();
    for entry in std::fs::read_dir(&full).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), partial.join(entry.file_name())).unwrap();
    }
    std::fs::write(partial.join("plan.json"), plan).unwrap();

    let result = capture(&model, &small_stimuli(), &out, &args);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(!partial.exists());
    assert!(!out.join("plan.json").exists());
    for name in ["activations.safetensors", "manifest.json"] {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(full.join(name)).unwrap(),
            "{name}"
        );
    }

    // A stop just after the move leaves the plan in the run. With
    // --overwrite it can also leave the old run aside. The next capture of
    // that --out deletes both.
    std::fs::write(out.join("plan.json"), b"{}").unwrap();
    let aside = dir.path().join("out.replaced-4242");
    std::fs::create_dir(&aside).unwrap();
    std::fs::copy(full.join("manifest.json"), aside.join("manifest.json")).unwrap();
    let result = capture(&model, &small_stimuli(), &out, &args);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("already exists"),
        "{}",
        stderr(&result)
    );
    assert!(!out.join("plan.json").exists());
    assert!(!aside.exists());
    assert!(out.join("manifest.json").is_file());
}

#[test]
fn max_tokens_truncates_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let out = dir.path().join("short");
    let result = capture(
        &model,
        &small_stimuli(),
        &out,
        &["--max-tokens", "6", "--pooling", "all"],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("truncated"),
        "no warning: {}",
        stderr(&result)
    );
    let run = repatlas::capture::Run::open(&out).unwrap();
    assert!(run.manifest.n_truncated > 0);
    assert_eq!(run.manifest.max_tokens, Some(6));
    let offsets = run.offsets().unwrap();
    assert_eq!(offsets.len(), 13);
    assert!(
        offsets.windows(2).all(|w| (1..=6).contains(&(w[1] - w[0]))),
        "{offsets:?}"
    );
    assert_eq!(run.layer(3).unwrap().nrows() as i64, offsets[12]);

    let file = std::fs::File::open(out.join("stimuli.parquet")).unwrap();
    use polars::prelude::SerReader;
    let df = polars::prelude::ParquetReader::new(file).finish().unwrap();
    assert_eq!(df.height(), 12);
    let n_tokens = df.column("n_tokens").unwrap().u32().unwrap();
    assert!(n_tokens.iter().all(|n| n.unwrap() <= 6));
}

#[test]
fn overwrite_never_deletes_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    // A folder that is not a run survives --overwrite.
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(victim.join("sub")).unwrap();
    std::fs::write(victim.join("sub/thesis.tex"), "precious").unwrap();
    let result = capture(&model, &small_stimuli(), &victim, &["--overwrite"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("manifest.json"),
        "{}",
        stderr(&result)
    );
    assert_eq!(
        std::fs::read_to_string(victim.join("sub/thesis.tex")).unwrap(),
        "precious"
    );

    // A user's own folder named like the working folder is kept.
    let out = dir.path().join("run");
    let partial = dir.path().join("run.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("notes.txt"), "mine").unwrap();
    let result = capture(&model, &small_stimuli(), &out, &[]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("run.partial"),
        "{}",
        stderr(&result)
    );
    assert!(partial.join("notes.txt").is_file());

    // A file as --out is rejected, and so is a path without a name.
    let file = dir.path().join("afile");
    std::fs::write(&file, "data").unwrap();
    let result = capture(&model, &small_stimuli(), &file, &["--overwrite"]);
    assert_eq!(result.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    assert!(!dir.path().join("afile.old").exists());
    let result = capture(&model, &small_stimuli(), Path::new("."), &["--overwrite"]);
    assert_eq!(result.status.code(), Some(2));

    // --overwrite replaces a real run, and a sibling named <out>.old is untouched.
    std::fs::remove_dir_all(&partial).unwrap();
    let result = capture(&model, &small_stimuli(), &out, &[]);
    assert!(result.status.success(), "{}", stderr(&result));
    let sibling = dir.path().join("run.old");
    std::fs::create_dir_all(&sibling).unwrap();
    std::fs::write(sibling.join("keep.txt"), "keep").unwrap();
    let result = capture(&model, &small_stimuli(), &out, &["--overwrite"]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(sibling.join("keep.txt").is_file());
    assert!(out.join("manifest.json").is_file());
}

#[test]
fn stimuli_encoding_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, "\u{feff}{\"id\": \"a\", \"text\": \"hello\"}\n").unwrap();
    let set = repatlas::stimuli::StimulusSet::load(&bom, None).unwrap();
    assert_eq!(set.stimuli[0].id, "a");

    let latin1 = dir.path().join("latin1.jsonl");
    std::fs::write(&latin1, b"{\"id\": \"a\", \"text\": \"caf\xe9\"}\n").unwrap();
    let err = repatlas::stimuli::StimulusSet::load(&latin1, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("UTF-8") && err.contains("latin1.jsonl"),
        "{err}"
    );
}

#[test]
fn intervene_writes_rows_summary_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let out = dir.path().join("iv.parquet");
    let figures = dir.path().join("figs");
    let stimuli = small_stimuli();
    let result = intervene(
        &model,
        &stimuli,
        &out,
        &[
            "--limit",
            "2",
            "--variants",
            "swap:0,1;swap:10,11;skip:3;skip:15",
            "--figures",
            s(&figures),
        ],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = String::from_utf8(result.stdout).unwrap();
    assert!(summary.contains("skipping block"), "{summary}");
    let rows = repatlas::intervene::read_parquet(&out).unwrap();
    assert_eq!(rows.len(), 4 * 4);
    assert!(
        figures
            .join("smollm2-135m-instruct-q4_1__skip.png")
            .is_file()
            || std::fs::read_dir(&figures).unwrap().count() > 0
    );

    // plot recognises an intervention parquet.
    let again = dir.path().join("again");
    let result = repatlas(&["plot", s(&out), "--out", s(&again)]);
    assert!(result.status.success(), "{}", stderr(&result));
    let listed = String::from_utf8(result.stdout).unwrap();
    assert!(
        listed.lines().any(|l| l.ends_with("__skip.png")),
        "{listed}"
    );

    let bad = intervene(&model, &stimuli, &out, &["--variants", "skip:99"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("block 99"), "{}", stderr(&bad));

    // A folder as --out is rejected before any work.
    let bad = intervene(&model, &stimuli, dir.path(), &["--variants", "skip:3"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("is a folder"), "{}", stderr(&bad));

    // Capture and intervene share the checks of the model and stimuli.
    for (flag, value, message) in [
        ("--limit", "0", "invalid --limit 0"),
        ("--name", " ", "invalid --name"),
    ] {
        let fresh = dir.path().join("fresh.parquet");
        let bad = intervene(
            &model,
            &stimuli,
            &fresh,
            &[flag, value, "--variants", "skip:3"],
        );
        assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
        assert!(stderr(&bad).contains(message), "{}", stderr(&bad));
        assert!(!fresh.exists());
    }
}

/// Relative L2 distance of two layers, in f64.
fn rel_l2(a: &ndarray::Array2<f64>, b: &ndarray::Array2<f64>) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += (x - y).powi(2);
        den += y.powi(2);
    }
    (num / den).sqrt()
}

#[test]
fn padded_capture_equals_packed() {
    let dir = tempfile::tempdir().unwrap();
    let packed = smollm2_run(dir.path());
    let model = common::require_model(common::SMOLLM2);
    let padded = dir.path().join("padded");
    let extra = [
        "--batch-tokens",
        "64",
        "--padding",
        "left",
        "--pooling",
        "mean",
    ];
    let result = capture(&model, &small_stimuli(), &padded, &extra);
    assert!(result.status.success(), "{}", stderr(&result));
    let a = repatlas::capture::Run::open(&packed).unwrap();
    let b = repatlas::capture::Run::open(&padded).unwrap();
    assert_eq!(a.manifest.padding, "none");
    assert_eq!(b.manifest.padding, "left");
    for layer in [0, 1, 15, 30] {
        let err = rel_l2(&a.layer(layer).unwrap(), &b.layer(layer).unwrap());
        assert!(err < 1e-5, "layer {layer}: rel L2 {err:.2e}");
    }
}

#[test]
fn packed_batches_need_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let out = dir.path().join("gpu");
    let extra = ["--device", "cuda", "--padding", "none"];
    let result = capture(&model, &small_stimuli(), &out, &extra);
    assert_eq!(result.status.code(), Some(2));
    let message = stderr(&result);
    assert!(message.contains("CPU only"), "{message}");
    assert!(message.contains("--padding right"), "{message}");
    assert!(!out.exists(), "a run directory was started");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_feature_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::require_model(common::SMOLLM2);
    let out = dir.path().join("gpu");
    let result = capture(&model, &small_stimuli(), &out, &["--device", "cuda:1"]);
    assert_eq!(result.status.code(), Some(2));
    let message = stderr(&result);
    assert!(message.contains("cuda:1"), "{message}");
    assert!(message.contains("--features cuda"), "{message}");
    assert!(!out.exists(), "a run directory was started");
    let result = capture(&model, &small_stimuli(), &out, &["--device", "tpu"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(stderr(&result).contains("cpu, cuda or cuda:N"));
}
