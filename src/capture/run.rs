//! The capture job: stimuli in, run directory out, resumable by batch.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use log::{debug, info, warn};
use serde::{Deserialize, Serialize};

use super::batch::{plan_batches, pool, Batch, Padding, Pooled, Pooling};
use super::decoder::{Hidden, Tap};
use super::device::ComputeDevice;
use super::model::{load_model_on, LoadedModel};
use super::rundir::{
    self, F32Tensor, I64Tensor, Manifest, MappedSafetensors, StimuliInfo, StreamingWriter,
};
use super::source::ModelSpec;
use super::weights::WeightMode;
use super::CaptureError;
use crate::stimuli::{hex, hex_sha256, StimulusSet};
use sha2::{Digest, Sha256};

/// Settings of one capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// A GGUF file, a Hugging Face folder or a Hub id.
    pub model: ModelSpec,
    /// Never download from the Hub (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Short name for tables and figures; defaults to the file stem.
    pub model_name: Option<String>,
    pub stimuli: PathBuf,
    pub limit: Option<usize>,
    pub out: PathBuf,
    pub pooling: Pooling,
    /// Layout of each batch. `None` takes the layout that an unfinished run
    /// of the same output recorded, so that it resumes, and otherwise
    /// [`ComputeDevice::default_padding`], the fastest the device runs.
    pub padding: Option<Padding>,
    pub weight_mode: WeightMode,
    /// Extra taps besides `resid_post`.
    pub taps: Vec<Tap>,
    /// Token slots per batch, padding included.
    pub max_batch_tokens: usize,
    pub max_batch_rows: usize,
    /// Truncate stimuli to this many tokens (also capped by the context).
    pub max_tokens: Option<usize>,
    pub overwrite: bool,
    /// Draw a progress bar on stderr (only shown when stderr is a terminal).
    pub progress: bool,
    /// Device that the model runs on.
    pub device: ComputeDevice,
}

/// Summary of a finished capture.
#[derive(Debug, Clone)]
pub struct CaptureSummary {
    pub out: PathBuf,
    pub n_stimuli: usize,
    pub total_tokens: usize,
    pub n_truncated: usize,
    pub forward_seconds: f64,
    pub tokens_per_second: f64,
    pub resumed_batches: usize,
}

/// Everything that must match for an unfinished capture to be resumed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Plan {
    model_sha256: String,
    stimuli_set_sha256: String,
    pooling: String,
    padding: String,
    weight_mode: String,
    taps: Vec<String>,
    batches: Vec<Vec<usize>>,
    /// The truncation limit in force (`--max-tokens` capped by the context).
    #[serde(default)]
    max_tokens: usize,
    /// sha256 over every stimulus's token ids: catches a changed
    /// `tokenizer.json` or limit even when the batches come out the same.
    #[serde(default)]
    tokens_sha256: String,
    /// sha256 of the parsed model config, tokenizer settings and special
    /// ids: a folder's `config.json` can change while its weights do not.
    #[serde(default)]
    config_sha256: String,
}

const PLAN: &str = "plan.json";

/// Runs a capture and writes the run directory `opts.out`.
pub fn capture(opts: &CaptureOptions) -> Result<CaptureSummary, CaptureError> {
    check_output(&opts.out, opts.overwrite)?;
    finish_interrupted_move(&opts.out)?;
    if opts.out.exists() && !opts.overwrite {
        return Err(CaptureError::OutputExists {
            path: opts.out.clone(),
        });
    }
    let padding = resolve_padding(opts)?;
    let stimuli = StimulusSet::load(&opts.stimuli, opts.limit)?;
    info!("{} stimuli from {}", stimuli.len(), opts.stimuli.display());

    // The model loads before any output is touched, so a bad model file
    // leaves nothing behind.
    let device = opts.device.open()?;
    info!("running on {}", opts.device);
    let model = load_model_on(&opts.model, opts.weight_mode, opts.offline, false, &device)?;
    let tokenizer = &model.tokenizer;
    let (model_sha256, config_sha256) = model_hashes(&model);
    debug!("model {} sha256 {model_sha256}", model.source.path);

    // Tokenize everything first: lengths decide the batches.
    let limit = opts
        .max_tokens
        .unwrap_or(usize::MAX)
        .min(model.max_positions);
    let mut n_truncated = 0;
    let mut tokens = Vec::with_capacity(stimuli.len());
    for s in &stimuli.stimuli {
        let (ids, full) = tokenizer.encode_truncated(&s.text, limit)?;
        if ids.is_empty() {
            return Err(CaptureError::EmptyTokens { id: s.id.clone() });
        }
        if full > limit {
            warn!("stimulus {:?}: {full} tokens truncated to {limit}", s.id);
            n_truncated += 1;
        }
        tokens.push(ids);
    }
    let lengths: Vec<usize> = tokens.iter().map(Vec::len).collect();
    let total_tokens: usize = lengths.iter().sum();
    let batches = plan_batches(
        &lengths,
        opts.max_batch_tokens,
        opts.max_batch_rows,
        padding,
    );
    info!(
        "{total_tokens} tokens in {} batches (at most {} slots or {} rows each), padding {}",
        batches.len(),
        opts.max_batch_tokens,
        opts.max_batch_rows,
        enum_name(&padding)
    );

    let mut taps = vec![Tap::ResidPost];
    taps.extend(opts.taps.iter().copied().filter(|t| *t != Tap::ResidPost));
    taps.sort();
    taps.dedup();
    let plan = Plan {
        model_sha256: model_sha256.clone(),
        stimuli_set_sha256: stimuli.set_sha256(),
        pooling: enum_name(&opts.pooling),
        padding: enum_name(&padding),
        weight_mode: enum_name(&opts.weight_mode),
        taps: taps.iter().map(enum_name).collect(),
        batches: batches.clone(),
        max_tokens: limit,
        tokens_sha256: tokens_sha256(&tokens),
        config_sha256,
    };
    let partial = partial_dir(&opts.out);
    let resumed = prepare_partial(&partial, &plan)?;
    if partial.join(rundir::MANIFEST).is_file() && !partial.join("chunks").exists() {
        // Stopped inside `finalize`: the run is assembled, only the move is
        // left.
        info!("{} is assembled; moving it into place", partial.display());
        finalize(&partial, &opts.out)?;
        return Ok(CaptureSummary {
            out: opts.out.clone(),
            n_stimuli: stimuli.len(),
            total_tokens,
            n_truncated,
            forward_seconds: 0.0,
            tokens_per_second: 0.0,
            resumed_batches: batches.len(),
        });
    }

    let pad_id = tokenizer.pad_id().or(tokenizer.eos_id()).unwrap_or(0);
    let bar = progress_bar(
        opts.progress,
        total_tokens as u64,
        "{spinner} capture [{bar:30}] {pos}/{len} tokens {msg} eta {eta}",
    );
    let started = Instant::now();
    let mut forward_tokens = 0usize;
    for (b, rows) in batches.iter().enumerate() {
        let chunk = chunk_path(&partial, b);
        let batch_tokens: usize = rows.iter().map(|&r| lengths[r]).sum();
        if chunk.exists() {
            bar.inc(batch_tokens as u64);
            continue;
        }
        let seqs: Vec<(usize, &[u32])> = rows.iter().map(|&r| (r, tokens[r].as_slice())).collect();
        let batch = Batch::new(&seqs, pad_id, padding, |id| tokenizer.is_special(id));
        let t_forward = Instant::now();
        let hidden = model.forward(&batch, &taps)?;
        let forward_s = t_forward.elapsed().as_secs_f64();
        write_chunk(&chunk, &batch, &hidden, opts.pooling)?;
        debug!(
            "batch {b}: {} rows x {} slots, forward {forward_s:.2} s, pool and write {:.2} s",
            batch.shape().0,
            batch.shape().1,
            t_forward.elapsed().as_secs_f64() - forward_s
        );
        forward_tokens += batch_tokens;
        bar.inc(batch_tokens as u64);
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{:.0} tokens/s", forward_tokens as f64 / secs));
    }
    bar.finish_and_clear();
    let forward_seconds = started.elapsed().as_secs_f64();
    let tokens_per_second = if forward_tokens > 0 {
        forward_tokens as f64 / forward_seconds
    } else {
        0.0
    };
    info!("forward: {forward_tokens} tokens in {forward_seconds:.1} s ({tokens_per_second:.0} tokens/s)");

    let n_layers = model.n_blocks;
    let names = tensor_names(n_layers, &taps);
    assemble(
        &partial,
        &batches,
        &names,
        &lengths,
        opts.pooling,
        model.d_model,
    )?;
    write_stimuli_table(&partial.join(rundir::STIMULI), &stimuli, &lengths)?;

    let manifest = Manifest {
        format: "repatlas-run/1".into(),
        tool_version: crate::version().into(),
        model_name: opts
            .model_name
            .clone()
            .unwrap_or_else(|| model.default_name.clone()),
        source: model.source.clone(),
        architecture: model.architecture.clone(),
        n_blocks: n_layers,
        d_model: model.d_model,
        dtype: "f32".into(),
        quantization: model.quantization.clone(),
        weight_mode: enum_name(&opts.weight_mode),
        pooling: enum_name(&opts.pooling),
        padding: enum_name(&padding),
        taps: plan.taps.clone(),
        stimuli: StimuliInfo {
            file: opts.stimuli.display().to_string(),
            file_sha256: stimuli.file_sha256.clone(),
            set_sha256: plan.stimuli_set_sha256.clone(),
            n_stimuli: stimuli.len(),
        },
        tokenizer: serde_json::to_value(tokenizer.settings()).unwrap_or_default(),
        layer_names: rundir::layer_names(n_layers),
        total_tokens,
        max_tokens: Some(limit),
        n_truncated,
        config: model.config.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    rundir::write_atomic(&partial.join(rundir::MANIFEST), &json)?;
    finalize(&partial, &opts.out)?;
    info!("wrote {}", opts.out.display());

    Ok(CaptureSummary {
        out: opts.out.clone(),
        n_stimuli: stimuli.len(),
        total_tokens,
        n_truncated,
        forward_seconds,
        tokens_per_second,
        resumed_batches: resumed,
    })
}

/// Returns the batch layout of a capture, taking the one recorded in the
/// plan of an unfinished run of the same output when none is requested.
fn resolve_padding(opts: &CaptureOptions) -> Result<Padding, CaptureError> {
    let plan_path = partial_dir(&opts.out).join(PLAN);
    let recorded = fs::read(&plan_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Plan>(&bytes).ok())
        .and_then(|plan| Padding::from_name(&plan.padding));
    opts.device
        .choose_padding(opts.padding, recorded.map(|p| (p, plan_path.as_path())))
}

fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Rejects outputs a capture must not write or replace: a path without a
/// file name (`.`, `/`), an existing file, and (with `overwrite`) an
/// existing folder that is not a complete run.
fn check_output(out: &Path, overwrite: bool) -> Result<(), CaptureError> {
    let named = out.file_name().is_some_and(|n| n != "." && n != "..");
    if !named
        || out.components().next_back().is_some_and(|c| {
            matches!(
                c,
                std::path::Component::CurDir | std::path::Component::ParentDir
            )
        })
    {
        return Err(CaptureError::ForeignOutput {
            path: out.to_path_buf(),
            message: "--out must name a new folder, e.g. runs/smollm2".into(),
        });
    }
    if out.exists() && !out.is_dir() {
        return Err(CaptureError::ForeignOutput {
            path: out.to_path_buf(),
            message: "it is a file, not a run directory; choose another --out".into(),
        });
    }
    if overwrite && out.is_dir() && !out.join(rundir::MANIFEST).is_file() {
        return Err(CaptureError::ForeignOutput {
            path: out.to_path_buf(),
            message: format!("--overwrite replaces only run directories, and it holds no {}; move it away or choose another --out", rundir::MANIFEST),
        });
    }
    Ok(())
}

/// `<out>.partial`, the working folder of an unfinished capture.
pub fn partial_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn chunk_path(partial: &Path, batch: usize) -> PathBuf {
    partial
        .join("chunks")
        .join(format!("{batch:05}.safetensors"))
}

/// Creates the working folder, or checks that an existing one was made with
/// the same plan. Returns the number of batches already done.
fn prepare_partial(partial: &Path, plan: &Plan) -> Result<usize, CaptureError> {
    let plan_path = partial.join(PLAN);
    let io = |path: &Path, source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    if plan_path.is_file() {
        let bytes = fs::read(&plan_path).map_err(|e| io(&plan_path, e))?;
        let old: Plan =
            serde_json::from_slice(&bytes).map_err(|e| CaptureError::ResumeMismatch {
                path: partial.to_path_buf(),
                message: format!("unreadable {PLAN}: {e}"),
            })?;
        if old != *plan {
            return Err(CaptureError::ResumeMismatch {
                path: partial.to_path_buf(),
                message: describe_plan_change(&old, plan),
            });
        }
        let done = fs::read_dir(partial.join("chunks"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                    .count()
            })
            .unwrap_or(0);
        info!(
            "resuming {}: {done} of {} batches already done",
            partial.display(),
            plan.batches.len()
        );
        return Ok(done);
    }
    if partial.exists() {
        // Without a plan the folder is not a capture of ours: keep it.
        return Err(CaptureError::ForeignOutput {
            path: partial.to_path_buf(),
            message: format!(
                "it exists but holds no {PLAN}, so it is not an unfinished capture; move it away"
            ),
        });
    }
    fs::create_dir_all(partial.join("chunks")).map_err(|e| io(partial, e))?;
    let json = serde_json::to_vec_pretty(plan).expect("plan serialises");
    rundir::write_atomic(&plan_path, &json)?;
    Ok(0)
}

/// Returns the sha256 of the weight files (comma-joined, one per file) and
/// the sha256 of the parsed config, tokenizer settings and special ids.
pub(crate) fn model_hashes(model: &LoadedModel) -> (String, String) {
    let files = model
        .source
        .files
        .iter()
        .map(|f| f.sha256.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let config = (
        &model.config,
        model.tokenizer.settings(),
        model.tokenizer.special_ids_sorted(),
    );
    let config = hex_sha256(&serde_json::to_vec(&config).expect("config serialises"));
    (files, config)
}

/// sha256 over the token ids of every stimulus, each prefixed by its length.
pub(crate) fn tokens_sha256(tokens: &[Vec<u32>]) -> String {
    let mut h = Sha256::new();
    for ids in tokens {
        h.update((ids.len() as u64).to_le_bytes());
        for id in ids {
            h.update(id.to_le_bytes());
        }
    }
    hex(&h.finalize())
}

fn describe_plan_change(old: &Plan, new: &Plan) -> String {
    let mut diffs = Vec::new();
    if old.max_tokens == 0 {
        return "written by an older repatlas that did not record the token limit, so \
                it cannot be checked; delete the folder to start afresh"
            .to_string();
    }
    if old.model_sha256 != new.model_sha256 {
        diffs.push("model file".to_string());
    }
    if old.config_sha256 != new.config_sha256 {
        diffs.push("model config or tokenizer settings".to_string());
    }
    if old.stimuli_set_sha256 != new.stimuli_set_sha256 {
        diffs.push("stimuli".to_string());
    }
    for (name, was, now) in [
        ("pooling", &old.pooling, &new.pooling),
        ("padding", &old.padding, &new.padding),
        ("weights", &old.weight_mode, &new.weight_mode),
    ] {
        if was != now {
            diffs.push(format!("--{name} was {was}, now {now}"));
        }
    }
    if old.taps != new.taps {
        diffs.push("taps".to_string());
    }
    let tokens_changed = old.tokens_sha256 != new.tokens_sha256;
    if old.max_tokens != new.max_tokens {
        diffs.push(format!(
            "token limit (--max-tokens capped by the context) was {}, now {}",
            old.max_tokens, new.max_tokens
        ));
    } else if tokens_changed {
        diffs.push("token ids (tokenizer.json)".to_string());
    }
    // New token lengths move the batches as well; name only the cause.
    if old.batches != new.batches && !tokens_changed {
        diffs.push(format!(
            "batch plan was {} batches, now {} (--batch-tokens, --batch-rows)",
            old.batches.len(),
            new.batches.len()
        ));
    }
    format!("changed: {}", diffs.join(", "))
}

/// Names of the stored tensors, in file order.
fn tensor_names(n_blocks: usize, taps: &[Tap]) -> Vec<String> {
    let mut names: Vec<String> = (0..=n_blocks).map(|i| format!("hidden.{i}")).collect();
    names.push("final_norm".into());
    for tap in taps {
        let prefix = match tap {
            Tap::ResidPost => continue,
            Tap::ResidMid => "resid_mid",
            Tap::AttnOut => "attn_out",
            Tap::MlpOut => "mlp_out",
        };
        names.extend((1..=n_blocks).map(|i| format!("{prefix}.{i}")));
    }
    names
}

/// Lists the tensors of one batch with their stored names.
fn named_tensors(hidden: &Hidden) -> Vec<(String, &Tensor)> {
    let mut out: Vec<(String, &Tensor)> = hidden
        .resid_post
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("hidden.{i}"), t))
        .collect();
    out.push(("final_norm".into(), &hidden.final_norm));
    for (prefix, list) in [
        ("resid_mid", &hidden.resid_mid),
        ("attn_out", &hidden.attn_out),
        ("mlp_out", &hidden.mlp_out),
    ] {
        out.extend(
            list.iter()
                .enumerate()
                .map(|(i, t)| (format!("{prefix}.{}", i + 1), t)),
        );
    }
    out
}

fn write_chunk(
    path: &Path,
    batch: &Batch,
    hidden: &Hidden,
    pooling: Pooling,
) -> Result<(), CaptureError> {
    let mut pooled = Vec::new();
    for (name, tensor) in named_tensors(hidden) {
        let d = tensor.dims3()?.2;
        let (rows, data) = match pool(tensor, batch, pooling)? {
            Pooled::PerStimulus(v) => (batch.n_stimuli(), v),
            Pooled::PerToken(rows) => (batch.n_tokens(), rows.concat()),
        };
        pooled.push((name, vec![rows, d], data));
    }
    let f32s: Vec<F32Tensor> = pooled
        .iter()
        .map(|(name, shape, data)| F32Tensor {
            name: name.clone(),
            shape: shape.clone(),
            data,
        })
        .collect();
    let rows: Vec<i64> = batch.rows.iter().map(|&r| r as i64).collect();
    let lengths: Vec<i64> = batch.lengths.iter().map(|&l| l as i64).collect();
    let i64s = [
        I64Tensor {
            name: "rows".into(),
            data: &rows,
        },
        I64Tensor {
            name: "lengths".into(),
            data: &lengths,
        },
    ];
    rundir::write_safetensors(path, &f32s, &i64s, None)
}

/// Builds `activations.safetensors` from the chunks, one tensor at a time,
/// with rows in stimulus order.
fn assemble(
    partial: &Path,
    batches: &[Vec<usize>],
    names: &[String],
    lengths: &[usize],
    pooling: Pooling,
    d: usize,
) -> Result<(), CaptureError> {
    let chunks: Vec<MappedSafetensors> = (0..batches.len())
        .map(|b| MappedSafetensors::open(&chunk_path(partial, b)))
        .collect::<Result<_, _>>()?;
    let n = lengths.len();
    let per_token = pooling == Pooling::All;
    let mut offsets = vec![0i64; n + 1];
    for i in 0..n {
        offsets[i + 1] = offsets[i] + lengths[i] as i64;
    }
    let rows_total = if per_token { offsets[n] as usize } else { n };
    let specs: Vec<(String, Vec<usize>)> = names
        .iter()
        .map(|s| (s.clone(), vec![rows_total, d]))
        .collect();
    let i64_specs: Vec<(String, usize)> = if per_token {
        vec![("offsets".into(), n + 1)]
    } else {
        vec![]
    };
    let path = partial.join(rundir::ACTIVATIONS);
    let mut writer = StreamingWriter::create(&path, &specs, &i64_specs)?;
    let mut buffer = vec![0f32; rows_total * d];
    for name in names {
        for (b, (chunk, rows)) in chunks.iter().zip(batches).enumerate() {
            let (_, data) = chunk.f32_data(name)?;
            let want: usize = rows
                .iter()
                .map(|&r| if per_token { lengths[r] * d } else { d })
                .sum();
            if data.len() != want {
                return Err(CaptureError::ResumeMismatch {
                    path: partial.to_path_buf(),
                    message: format!(
                        "{} holds {} values of {name}, the plan needs {want}",
                        chunk_path(partial, b).display(),
                        data.len()
                    ),
                });
            }
            let mut src = 0usize;
            for &r in rows {
                let (start, count) = if per_token {
                    (offsets[r] as usize, lengths[r])
                } else {
                    (r, 1)
                };
                let len = count * d;
                buffer[start * d..start * d + len].copy_from_slice(&data[src..src + len]);
                src += len;
            }
        }
        writer.write_f32(name, &buffer)?;
    }
    if per_token {
        writer.write_i64("offsets", &offsets)?;
    }
    writer.finish()
}

fn write_stimuli_table(
    path: &Path,
    stimuli: &StimulusSet,
    lengths: &[usize],
) -> Result<(), CaptureError> {
    use polars::prelude::*;
    let col = |name: &str, values: Vec<String>| Column::new(name.into(), values);
    let ids = stimuli.stimuli.iter().map(|s| s.id.clone()).collect();
    let cats = stimuli.stimuli.iter().map(|s| s.category.clone()).collect();
    let texts = stimuli.stimuli.iter().map(|s| s.text.clone()).collect();
    let n_tokens: Vec<u32> = lengths.iter().map(|&l| l as u32).collect();
    let err = |e: PolarsError| CaptureError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut df = DataFrame::new(
        stimuli.len(),
        vec![
            col("id", ids),
            col("category", cats),
            col("text", texts),
            Column::new("n_tokens".into(), n_tokens),
        ],
    )
    .map_err(err)?;
    // One row per stimulus: encoded in memory, then written atomically.
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(&mut df)
        .map_err(err)?;
    rundir::write_atomic(path, &bytes)
}

/// Completes a `finalize` that stopped after the run reached `out`: deletes
/// the plan left in the run and the old runs it was replacing.
fn finish_interrupted_move(out: &Path) -> Result<(), CaptureError> {
    let stray = out.join(PLAN);
    if out.join(rundir::MANIFEST).is_file() && stray.is_file() {
        info!(
            "removing {} left by an interrupted capture",
            stray.display()
        );
        fs::remove_file(&stray).map_err(|source| CaptureError::Io {
            path: stray.clone(),
            source,
        })?;
        remove_replaced(out)?;
    }
    Ok(())
}

/// Deletes `<out>.replaced-<pid>` folders: complete old runs that a finished
/// `--overwrite` capture had moved aside.
fn remove_replaced(out: &Path) -> Result<(), CaptureError> {
    let Some(name) = out.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let prefix = format!("{name}.replaced-");
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(parent) else {
        return Ok(());
    };
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let is_replaced = file_name.to_str().is_some_and(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        });
        let path = entry.path();
        if is_replaced && path.join(rundir::MANIFEST).is_file() {
            info!(
                "removing {}, the run that --overwrite replaced",
                path.display()
            );
            fs::remove_dir_all(&path).map_err(|source| CaptureError::Io {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Removes the chunks and moves the finished folder into place.
fn finalize(partial: &Path, out: &Path) -> Result<(), CaptureError> {
    let io = |path: &Path, source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The plan is deleted last, from the finished run, so rerunning a capture
    // stopped at any step here finishes it (see `capture`).
    match fs::remove_dir_all(partial.join("chunks")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(partial, e)),
        _ => {}
    }
    if out.exists() {
        // Replace an old run only once the new one is complete, through a
        // name no one else uses.
        let mut old = out.file_name().unwrap_or_default().to_os_string();
        old.push(format!(".replaced-{}", std::process::id()));
        let old = out.with_file_name(old);
        fs::rename(out, &old).map_err(|e| io(out, e))?;
        fs::rename(partial, out).map_err(|e| io(out, e))?;
        fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    } else {
        fs::rename(partial, out).map_err(|e| io(out, e))?;
    }
    fs::remove_file(out.join(PLAN)).map_err(|e| io(out, e))?;
    // Delete old runs that an earlier stop in this step left aside.
    remove_replaced(out)
}

/// Creates a progress bar on stderr, hidden unless `enabled`. `template`
/// is an indicatif template; `{bar:30}`, `{pos}` and `{len}` are the usual
/// fields.
pub(crate) fn progress_bar(enabled: bool, total: u64, template: &str) -> ProgressBar {
    let target = if enabled {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
