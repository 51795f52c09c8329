//! Layer interventions: run a decoder with its blocks swapped, skipped,
//! shuffled or repeated, and measure how its next-token predictions and
//! final hidden states change.
//!
//! [`run`] makes one plain forward per batch and caches its residual stream
//! after every block, its final-norm output and its next-token log-probs.
//! Each [`Variant`] then reuses the cached stream up to the first block
//! whose position it changes, runs the rest of its order, and is compared
//! with the cache over every valid token position:
//!
//! - `kl`: mean KL(original || variant) of the next-token distributions;
//! - `top1_agreement`: share of positions whose arg-max token is unchanged;
//! - `delta_nll`: mean negative log-likelihood of the stimulus's own next
//!   tokens (positions 0..len-1), variant minus original;
//! - `linear_cka_final`: linear CKA between the final-norm token vectors.
//!
//! The model's weights are loaded once and shared by every variant.

mod io;
mod variant;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use log::{info, warn};
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use io::{read_parquet, write_parquet};
use variant::distinct_shuffles;
pub use variant::{Variant, VariantError, VariantSet};

use crate::capture::batch::{plan_batches, Batch, Padding};
use crate::capture::decoder::{Decoder, Prepared};
use crate::capture::device::ComputeDevice;
use crate::capture::model::{load_model_on, Network};
use crate::capture::run::progress_bar;
use crate::capture::run::{model_hashes, tokens_sha256};
use crate::capture::rundir::write_atomic;
use crate::capture::source::ModelSpec;
use crate::capture::weights::WeightMode;
use crate::capture::CaptureError;
use crate::metrics::MetricSpec;
use crate::stimuli::StimulusSet;

/// Names of the measures, in output order.
pub const MEASURES: [&str; 4] = ["kl", "top1_agreement", "delta_nll", "linear_cka_final"];

/// Errors of an intervention run.
#[derive(Debug, thiserror::Error)]
pub enum InterventionError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Variant(#[from] VariantError),
    #[error(transparent)]
    Metric(#[from] crate::metrics::MetricError),
    #[error(transparent)]
    Stimuli(#[from] crate::stimuli::StimuliError),
    #[error("no variants given; name at least one, e.g. swap:adjacent")]
    NoVariants,
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error("threshold {0} is outside 0..=1")]
    Threshold(f64),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("journal {path} {message}")]
    Journal { path: PathBuf, message: String },
    #[error("journal {path}: {source}")]
    JournalIo {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<candle_core::Error> for InterventionError {
    fn from(e: candle_core::Error) -> Self {
        Self::Capture(CaptureError::Candle(e))
    }
}

/// Settings of an intervention run.
#[derive(Debug, Clone)]
pub struct InterventionOptions {
    pub model: ModelSpec,
    /// Never download from the Hub.
    pub offline: bool,
    pub model_name: Option<String>,
    pub stimuli: PathBuf,
    pub limit: Option<usize>,
    pub weight_mode: WeightMode,
    pub variants: Vec<(String, VariantSet)>,
    /// Seeds per shuffled range. Seeds that draw an order already drawn for
    /// the range are left out, so a range of two blocks runs once.
    pub seeds: u64,
    /// Top-1 agreement a shuffled range must keep to count as interchangeable.
    pub threshold: f64,
    /// Width step of `shuffle:scan` windows' start positions (1 = every start).
    pub scan_stride: usize,
    pub max_batch_tokens: usize,
    pub max_tokens: usize,
    /// Layout of each batch. `None` takes the layout recorded in the
    /// journal of an unfinished run, so that it resumes, and otherwise
    /// [`ComputeDevice::default_padding`].
    pub padding: Option<Padding>,
    pub progress: bool,
    /// Device that the model runs on.
    pub device: ComputeDevice,
    /// JSON-lines file that records each finished variant, so that a killed
    /// run resumes where it stopped. None measures everything afresh.
    pub journal: Option<PathBuf>,
}

/// Returns the journal path of an output file: `<out>.partial.jsonl`.
pub fn journal_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial.jsonl");
    out.with_file_name(name)
}

/// One output row: a variant and one of its measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterventionRow {
    pub model: String,
    pub kind: String,
    pub i: Option<u32>,
    pub j: Option<u32>,
    pub seed: Option<u64>,
    /// The block order that ran, comma-separated.
    pub order: String,
    pub measure: String,
    pub value: f64,
    pub n_blocks: u32,
    pub n_stimuli: u64,
    pub n_tokens: u64,
}

/// The widest shuffled range that kept top-1 agreement above the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShuffleSummary {
    pub start: usize,
    pub end: usize,
    /// Mean top-1 agreement over the range's seeds.
    pub top1_agreement: f64,
    pub n_seeds: usize,
}

/// Everything an intervention run produced.
#[derive(Debug, Clone)]
pub struct InterventionReport {
    pub model: String,
    pub n_blocks: usize,
    pub rows: Vec<InterventionRow>,
    pub widest_shuffle: Option<ShuffleSummary>,
    pub threshold: f64,
}

/// The four measures of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measures {
    pub kl: f64,
    pub top1_agreement: f64,
    pub delta_nll: f64,
    pub linear_cka_final: f64,
}

/// The cached plain forward of one batch.
struct BatchCache {
    prepared: Prepared,
    /// `resid_post[k]`: residual stream before block k (k = 0 is the embedding).
    resid: Vec<Tensor>,
    /// Flat `batch * pos` index of every valid position, in row order.
    valid: Tensor,
    /// Next-token probabilities of valid positions, `tokens vocab`, row-major.
    probs: Vec<f32>,
    /// Per valid position: `sum p log p` of the plain forward, computed by
    /// [`cross_term`] so that an unchanged variant cancels it exactly.
    self_terms: Vec<f64>,
    /// Arg-max token of each valid position.
    top1: Vec<u32>,
    /// Next token of each valid position (None at a stimulus's last token).
    targets: Vec<Option<u32>>,
    /// Final-norm vectors of valid positions, `tokens d_model`.
    final_rows: Vec<f32>,
}

/// Next-token statistics of one position of a variant, against the plain
/// forward.
#[derive(Clone, Copy)]
struct PositionStats {
    kl: f64,
    agrees: bool,
    /// -log q(next token), when the position has a next token.
    nll: Option<f64>,
}

/// A loaded model with its stimuli and the cached plain forward.
pub struct Experiment {
    decoder: Decoder,
    caches: Vec<BatchCache>,
    model: String,
    n_stimuli: usize,
    n_tokens: usize,
    vocab: usize,
    d_model: usize,
    original_nll: f64,
    fingerprint: Fingerprint,
}

impl Experiment {
    /// Loads the model with its LM head and caches the plain forward.
    pub fn new(opts: &InterventionOptions) -> Result<Self, InterventionError> {
        let stimuli = StimulusSet::load(&opts.stimuli, opts.limit)?;
        let device = opts.device.open()?;
        let loaded = load_model_on(&opts.model, opts.weight_mode, opts.offline, true, &device)?;
        let model = opts
            .model_name
            .clone()
            .unwrap_or_else(|| loaded.default_name.clone());
        let padding = resolve_padding(opts)?;
        let (model_sha256, config_sha256) = model_hashes(&loaded);
        let tokenizer = loaded.tokenizer;
        let decoder = match loaded.network {
            Network::Decoder(d) => d,
            Network::Encoder(_) => {
                return Err(CaptureError::EncoderOnly {
                    arch: loaded.architecture,
                }
                .into())
            }
        };

        let limit = opts.max_tokens.min(loaded.max_positions).max(1);
        if limit < opts.max_tokens {
            warn!(
                "--max-tokens {} is beyond the model's context of {} positions; \
                 stimuli are truncated to {limit}",
                opts.max_tokens, loaded.max_positions
            );
        }
        let mut tokens = Vec::with_capacity(stimuli.len());
        for s in &stimuli.stimuli {
            let (ids, _) = tokenizer
                .encode_truncated(&s.text, limit)
                .map_err(CaptureError::from)?;
            if ids.is_empty() {
                return Err(CaptureError::EmptyTokens { id: s.id.clone() }.into());
            }
            tokens.push(ids);
        }
        if tokens.iter().all(|ids| ids.len() < 2) {
            return Err(InterventionError::Setting(
                "every stimulus has a single token, so there is no next token to predict; \
                 give longer texts"
                    .into(),
            ));
        }
        let fingerprint = Fingerprint {
            model_sha256,
            config_sha256,
            stimuli_set_sha256: stimuli.set_sha256(),
            tokens_sha256: tokens_sha256(&tokens),
            weight_mode: format!("{:?}", opts.weight_mode).to_lowercase(),
            max_tokens: limit,
            max_batch_tokens: opts.max_batch_tokens,
            padding: padding.name().to_string(),
        };
        let lengths: Vec<usize> = tokens.iter().map(Vec::len).collect();
        let pad = tokenizer.pad_id().or(tokenizer.eos_id()).unwrap_or(0);
        let mut experiment = Self {
            vocab: decoder.vocab_size(),
            d_model: decoder.config().hidden_size,
            decoder,
            caches: Vec::new(),
            model,
            n_stimuli: stimuli.len(),
            n_tokens: lengths.iter().sum(),
            original_nll: 0.0,
            fingerprint,
        };
        let mut nll_sum = 0.0;
        let mut nll_count = 0usize;
        for rows in plan_batches(&lengths, opts.max_batch_tokens, 64, padding) {
            let seqs: Vec<(usize, &[u32])> =
                rows.iter().map(|&r| (r, tokens[r].as_slice())).collect();
            let batch = Batch::new(&seqs, pad, padding, |_| false);
            let (cache, sum, count) = experiment.cache_batch(batch)?;
            nll_sum += sum;
            nll_count += count;
            experiment.caches.push(cache);
        }
        experiment.original_nll = nll_sum / nll_count.max(1) as f64;
        info!(
            "{}: {} stimuli, {} tokens, original mean NLL {:.4}",
            experiment.model, experiment.n_stimuli, experiment.n_tokens, experiment.original_nll
        );
        Ok(experiment)
    }

    pub fn n_blocks(&self) -> usize {
        self.decoder.n_layers()
    }

    /// Runs the plain forward of one batch and caches what every variant is
    /// compared with. Also returns the sum and count of the plain NLL terms.
    fn cache_batch(&self, batch: Batch) -> Result<(BatchCache, f64, usize), InterventionError> {
        let prepared = self.decoder.prepare(&batch)?;
        let n = self.decoder.n_layers();
        let mut resid = vec![prepared.embeddings.clone()];
        for k in 0..n {
            let next = self.decoder.forward_from_raw(&prepared, &resid[k], k)?;
            resid.push(next);
        }
        let final_norm = self.decoder.forward_from(&prepared, &resid[n], &[])?;
        let mut flat = Vec::with_capacity(batch.n_tokens());
        let mut targets = Vec::with_capacity(batch.n_tokens());
        for r in 0..batch.n_stimuli() {
            let range = batch.slots(r);
            for s in range.clone() {
                flat.push(s as u32);
                targets.push(if s + 1 < range.end {
                    Some(batch.ids[s + 1])
                } else {
                    None
                });
            }
        }
        let n_valid = flat.len();
        let valid = Tensor::from_vec(flat, n_valid, final_norm.device())?;
        let (final_rows, logits) = self.head(&final_norm, &valid)?;
        let vocab = self.vocab;
        let stats: Vec<(Vec<f32>, f64, u32, Option<f64>)> = logits
            .par_chunks_exact(vocab)
            .zip(targets.par_iter())
            .map(|(x, target)| {
                let (lse, best) = log_sum_exp(x);
                let p: Vec<f32> = x
                    .iter()
                    .map(|&v| (f64::from(v) - lse).exp() as f32)
                    .collect();
                let self_term = cross_term(x, lse, &p);
                let nll = target.map(|t| lse - f64::from(x[t as usize]));
                (p, self_term, best as u32, nll)
            })
            .collect();
        let mut probs = Vec::with_capacity(n_valid * vocab);
        let mut self_terms = Vec::with_capacity(n_valid);
        let mut top1 = Vec::with_capacity(n_valid);
        let (mut nll_sum, mut nll_count) = (0.0, 0usize);
        for (p, self_term, best, nll) in stats {
            probs.extend_from_slice(&p);
            self_terms.push(self_term);
            top1.push(best);
            if let Some(v) = nll {
                nll_sum += v;
                nll_count += 1;
            }
        }
        let cache = BatchCache {
            prepared,
            resid,
            valid,
            probs,
            self_terms,
            top1,
            targets,
            final_rows,
        };
        Ok((cache, nll_sum, nll_count))
    }

    /// Final-norm vectors and next-token logits of the valid positions only,
    /// both row-major: padding never reaches the LM head.
    fn head(
        &self,
        final_norm: &Tensor,
        valid: &Tensor,
    ) -> Result<(Vec<f32>, Vec<f32>), InterventionError> {
        let (b, pos, d) = final_norm.dims3()?;
        let rows = final_norm.reshape((b * pos, d))?.index_select(valid, 0)?;
        let logits = self.decoder.logits(&rows)?;
        Ok((
            rows.flatten_all()?.to_vec1()?,
            logits.flatten_all()?.to_vec1()?,
        ))
    }

    /// Runs one variant over every batch and measures it against the plain
    /// forward.
    pub fn measure(&self, variant: &Variant) -> Result<Measures, InterventionError> {
        let n = self.n_blocks();
        let order = variant.order(n);
        // Blocks before the first changed position see exactly the plain
        // stream, so the cached stream is reused up to there.
        let prefix = order
            .iter()
            .enumerate()
            .take_while(|(k, &b)| *k == b && *k < n)
            .count();
        let (mut kl_sum, mut agree, mut nll_sum, mut nll_count, mut count) =
            (0f64, 0usize, 0f64, 0usize, 0usize);
        let mut original_rows = Vec::with_capacity(self.n_tokens * self.d_model);
        let mut variant_rows = Vec::with_capacity(self.n_tokens * self.d_model);
        let vocab = self.vocab;
        for cache in &self.caches {
            let final_norm = self.decoder.forward_from(
                &cache.prepared,
                &cache.resid[prefix],
                &order[prefix..],
            )?;
            let (rows, logits) = self.head(&final_norm, &cache.valid)?;
            let stats: Vec<PositionStats> = logits
                .par_chunks_exact(vocab)
                .zip(cache.probs.par_chunks_exact(vocab))
                .zip(cache.self_terms.par_iter())
                .zip(cache.top1.par_iter())
                .zip(cache.targets.par_iter())
                .map(|((((x, p), &self_term), &top1), target)| {
                    let (lse, best) = log_sum_exp(x);
                    PositionStats {
                        kl: self_term - cross_term(x, lse, p),
                        agrees: best as u32 == top1,
                        nll: target.map(|t| lse - f64::from(x[t as usize])),
                    }
                })
                .collect();
            // Summed in position order, so that a rerun gives the same bits.
            for s in stats {
                kl_sum += s.kl;
                agree += usize::from(s.agrees);
                count += 1;
                if let Some(v) = s.nll {
                    nll_sum += v;
                    nll_count += 1;
                }
            }
            original_rows.extend_from_slice(&cache.final_rows);
            variant_rows.extend(rows);
        }
        let to_matrix = |rows: Vec<f32>| {
            Array2::from_shape_vec(
                (self.n_tokens, self.d_model),
                rows.into_iter().map(f64::from).collect(),
            )
            .expect("rows match the token count")
        };
        let cka: MetricSpec = "linear_cka".parse()?;
        let linear_cka_final = cka.compute(
            to_matrix(original_rows).view(),
            to_matrix(variant_rows).view(),
        )?;
        Ok(Measures {
            kl: kl_sum / count.max(1) as f64,
            top1_agreement: agree as f64 / count.max(1) as f64,
            delta_nll: nll_sum / nll_count.max(1) as f64 - self.original_nll,
            linear_cka_final,
        })
    }

    fn rows_for(&self, variant: &Variant, m: &Measures) -> Vec<InterventionRow> {
        let order = variant.order(self.n_blocks());
        let order = order
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let values = [m.kl, m.top1_agreement, m.delta_nll, m.linear_cka_final];
        MEASURES
            .iter()
            .zip(values)
            .map(|(measure, value)| InterventionRow {
                model: self.model.clone(),
                kind: variant.kind().into(),
                i: variant.i(),
                j: variant.j(),
                seed: variant.seed(),
                order: order.clone(),
                measure: (*measure).into(),
                value,
                n_blocks: self.n_blocks() as u32,
                n_stimuli: self.n_stimuli as u64,
                n_tokens: self.n_tokens as u64,
            })
            .collect()
    }
}

/// Everything that must match for a journal's measures to be reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fingerprint {
    model_sha256: String,
    /// sha256 of the parsed config, tokenizer settings and special ids.
    /// Empty in journals written before it was recorded.
    #[serde(default)]
    config_sha256: String,
    stimuli_set_sha256: String,
    /// sha256 of every stimulus's token ids. Empty in older journals.
    #[serde(default)]
    tokens_sha256: String,
    weight_mode: String,
    max_tokens: usize,
    max_batch_tokens: usize,
    /// Batch layout (`none` for packed, `right`). Journals written before
    /// packing have none, and those versions padded on the right.
    #[serde(default = "right_padding")]
    padding: String,
}

fn right_padding() -> String {
    Padding::Right.name().to_string()
}

/// Reads the fingerprint on the journal's first line, when it is readable.
fn journal_fingerprint(path: &Path) -> Option<Fingerprint> {
    let file = File::open(path).ok()?;
    let first = BufReader::new(file).lines().next()?.ok()?;
    serde_json::from_str(&first).ok()
}

/// Returns the batch layout of a run, taking the one recorded in the journal
/// of an unfinished run when none is requested.
fn resolve_padding(opts: &InterventionOptions) -> Result<Padding, InterventionError> {
    let recorded = opts.journal.as_deref().and_then(|path| {
        let padding = Padding::from_name(&journal_fingerprint(path)?.padding)?;
        Some((padding, path))
    });
    Ok(opts.device.choose_padding(opts.padding, recorded)?)
}

impl Fingerprint {
    /// Returns whether a journal with fingerprint `self` can resume under
    /// `now`. Hashes an older journal did not record are not compared.
    fn admits(&self, now: &Fingerprint) -> bool {
        let same_or_unrecorded = |was: &str, is: &str| was.is_empty() || was == is;
        same_or_unrecorded(&self.config_sha256, &now.config_sha256)
            && same_or_unrecorded(&self.tokens_sha256, &now.tokens_sha256)
            && Fingerprint {
                config_sha256: now.config_sha256.clone(),
                tokens_sha256: now.tokens_sha256.clone(),
                ..self.clone()
            } == *now
    }
}

/// Names each setting that differs between a journal and this run.
fn describe_fingerprint_change(old: &Fingerprint, new: &Fingerprint) -> String {
    let mut diffs = Vec::new();
    if old.model_sha256 != new.model_sha256 {
        diffs.push("model file".to_string());
    }
    if !old.config_sha256.is_empty() && old.config_sha256 != new.config_sha256 {
        diffs.push("model config or tokenizer settings".to_string());
    }
    if old.stimuli_set_sha256 != new.stimuli_set_sha256 {
        diffs.push("stimuli".to_string());
    } else if old.max_tokens == new.max_tokens
        && !old.tokens_sha256.is_empty()
        && old.tokens_sha256 != new.tokens_sha256
    {
        diffs.push("token ids (tokenizer.json)".to_string());
    }
    for (name, was, now) in [
        ("weights", &old.weight_mode, &new.weight_mode),
        ("padding", &old.padding, &new.padding),
        (
            "max-tokens",
            &old.max_tokens.to_string(),
            &new.max_tokens.to_string(),
        ),
        (
            "batch-tokens",
            &old.max_batch_tokens.to_string(),
            &new.max_batch_tokens.to_string(),
        ),
    ] {
        if was != now {
            diffs.push(format!("--{name} was {was}, now {now}"));
        }
    }
    diffs.join(", ")
}

#[derive(Serialize, Deserialize)]
struct JournalEntry {
    variant: String,
    measures: Measures,
}

/// Measures of finished variants, one JSON line each after a header line
/// with the run's [`Fingerprint`].
struct Journal {
    path: PathBuf,
    file: File,
    done: HashMap<String, Measures>,
}

impl Journal {
    /// Opens the journal at `path`, keeping the entries of an earlier run
    /// with the same fingerprint. A torn last line (the run was killed while
    /// writing it) is dropped.
    fn open(path: &Path, fingerprint: &Fingerprint) -> Result<Self, InterventionError> {
        let fail = |message: String| InterventionError::Journal {
            path: path.to_path_buf(),
            message,
        };
        let io = |source| InterventionError::JournalIo {
            path: path.to_path_buf(),
            source,
        };
        let header = serde_json::to_string(fingerprint).expect("fingerprint serialises");
        let mut done = HashMap::new();
        let mut lines_out = vec![header.clone()];
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            let mut lines = reader.lines();
            let first = lines.next().transpose().map_err(io)?.unwrap_or_default();
            let theirs: Fingerprint = serde_json::from_str(&first).map_err(|e| {
                fail(format!(
                    "has an unreadable first line ({e}); delete it to start afresh"
                ))
            })?;
            if !theirs.admits(fingerprint) {
                return Err(fail(format!(
                    "was written by a run with other settings ({}); rerun with those \
                     settings to resume it, or delete it to start afresh",
                    describe_fingerprint_change(&theirs, fingerprint)
                )));
            }
            for line in lines {
                let line = line.map_err(io)?;
                match serde_json::from_str::<JournalEntry>(&line) {
                    Ok(entry) => {
                        done.insert(entry.variant, entry.measures);
                        lines_out.push(line);
                    }
                    Err(_) => break,
                }
            }
            info!(
                "resuming: {} variants already measured in {}",
                done.len(),
                path.display()
            );
        }
        let mut text = lines_out.join("\n");
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            done,
        })
    }

    fn record(&mut self, key: String, measures: Measures) -> Result<(), InterventionError> {
        let mut line = serde_json::to_string(&JournalEntry {
            variant: key.clone(),
            measures,
        })
        .expect("entry serialises");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| InterventionError::JournalIo {
                path: self.path.clone(),
                source,
            })?;
        self.done.insert(key, measures);
        Ok(())
    }
}

/// Deletes the journal of `out` once its parquet is written.
pub fn remove_journal(out: &Path) -> Result<(), InterventionError> {
    let path = journal_path(out);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(InterventionError::JournalIo { path, source }),
    }
}

/// Measures a variant, or takes its measures from the journal.
fn measure_once(
    experiment: &Experiment,
    journal: &mut Option<Journal>,
    variant: &Variant,
) -> Result<Measures, InterventionError> {
    let key = serde_json::to_string(variant).expect("variant serialises");
    if let Some(m) = journal.as_ref().and_then(|j| j.done.get(&key)) {
        return Ok(*m);
    }
    let m = experiment.measure(variant)?;
    if let Some(j) = journal.as_mut() {
        j.record(key, m)?;
    }
    Ok(m)
}

/// Runs every requested variant and summarises the shuffles.
pub fn run(opts: &InterventionOptions) -> Result<InterventionReport, InterventionError> {
    if opts.variants.is_empty() {
        return Err(InterventionError::NoVariants);
    }
    if !(0.0..=1.0).contains(&opts.threshold) {
        return Err(InterventionError::Threshold(opts.threshold));
    }
    if opts.seeds == 0 || opts.scan_stride == 0 || opts.max_batch_tokens == 0 {
        return Err(InterventionError::Setting(
            "--seeds, --scan-stride and --batch-tokens must be positive".into(),
        ));
    }
    if opts.max_tokens < 2 {
        return Err(InterventionError::Setting(
            "--max-tokens must be at least 2, so that a stimulus has a next token to predict"
                .into(),
        ));
    }
    let experiment = Experiment::new(opts)?;
    let n = experiment.n_blocks();
    let mut fixed = Vec::new();
    let mut scan = false;
    for (spec, set) in &opts.variants {
        if *set == VariantSet::ShuffleScan {
            scan = true;
        }
        fixed.extend(set.expand(n, opts.seeds.max(1), spec)?);
    }
    // Only a run whose variants all fit the model leaves a journal behind.
    let mut journal = match &opts.journal {
        Some(path) => Some(Journal::open(path, &experiment.fingerprint)?),
        None => None,
    };
    let bar = progress_bar(
        opts.progress,
        fixed.len() as u64,
        "{spinner} intervene [{bar:30}] {pos}/{len} variants eta {eta}",
    );
    let mut rows = Vec::new();
    let mut shuffles: Vec<(Variant, f64)> = Vec::new();
    let started = std::time::Instant::now();
    for (k, variant) in fixed.iter().enumerate() {
        let m = measure_once(&experiment, &mut journal, variant)?;
        if matches!(variant, Variant::Shuffle { .. }) {
            shuffles.push((variant.clone(), m.top1_agreement));
        }
        rows.extend(experiment.rows_for(variant, &m));
        bar.inc(1);
        // Long runs report progress in the log too (the bar needs a terminal).
        if (k + 1) % 25 == 0 {
            info!(
                "{} of {} variants in {:.0} s",
                k + 1,
                fixed.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish_and_clear();
    if scan {
        scan_shuffles(&experiment, &mut journal, opts, &mut rows, &mut shuffles)?;
    }
    Ok(InterventionReport {
        model: experiment.model.clone(),
        n_blocks: n,
        rows,
        widest_shuffle: widest_shuffle(&shuffles, opts.threshold),
        threshold: opts.threshold,
    })
}

/// Formats a short text summary: skip and swap extremes, and the widest
/// shuffled range that stayed above the threshold.
pub fn summary_text(report: &InterventionReport) -> String {
    let mut out = String::new();
    let n = report.n_blocks;
    let top1 = |kind: &str| -> Vec<&InterventionRow> {
        report
            .rows
            .iter()
            .filter(|r| r.kind == kind && r.measure == "top1_agreement")
            .collect()
    };
    let skips = top1("skip");
    if !skips.is_empty() {
        let worst = skips
            .iter()
            .min_by(|a, b| a.value.total_cmp(&b.value))
            .expect("non-empty");
        let best = skips
            .iter()
            .max_by(|a, b| a.value.total_cmp(&b.value))
            .expect("non-empty");
        out.push_str(&format!(
            "{}: skipping block {} hurts most (top-1 agreement {:.3}); skipping block {} least ({:.3})\n",
            report.model,
            worst.i.unwrap_or(0),
            worst.value,
            best.i.unwrap_or(0),
            best.value
        ));
    }
    let swaps = top1("swap");
    if !swaps.is_empty() {
        let mean = swaps.iter().map(|r| r.value).sum::<f64>() / swaps.len() as f64;
        out.push_str(&format!(
            "{}: {} swaps, mean top-1 agreement {mean:.3}\n",
            report.model,
            swaps.len()
        ));
    }
    match &report.widest_shuffle {
        Some(s) => out.push_str(&format!(
            "{}: widest shuffled range above top-1 agreement {:.2}: blocks {}-{} ({} of {n} blocks, depth {:.2}-{:.2}), agreement {:.3} over {} seeds\n",
            report.model,
            report.threshold,
            s.start,
            s.end,
            s.end - s.start + 1,
            s.start as f64 / n as f64,
            (s.end + 1) as f64 / n as f64,
            s.top1_agreement,
            s.n_seeds
        )),
        None if !top1("shuffle").is_empty() => out.push_str(&format!(
            "{}: no shuffled range kept top-1 agreement above {:.2}\n",
            report.model, report.threshold
        )),
        None => {}
    }
    out
}

/// Shuffles contiguous ranges of width 2, 3, ... and stops after the first
/// width at which no range keeps mean top-1 agreement above the threshold.
fn scan_shuffles(
    experiment: &Experiment,
    journal: &mut Option<Journal>,
    opts: &InterventionOptions,
    rows: &mut Vec<InterventionRow>,
    shuffles: &mut Vec<(Variant, f64)>,
) -> Result<(), InterventionError> {
    let n = experiment.n_blocks();
    let stride = opts.scan_stride.max(1);
    for width in 2..=n {
        let mut any_pass = false;
        let starts: Vec<usize> = (0..=n - width).step_by(stride).collect();
        for start in starts {
            let end = start + width - 1;
            let variants = distinct_shuffles(start, end, opts.seeds.max(1), n);
            let mut sum = 0.0;
            for variant in &variants {
                let m = measure_once(experiment, journal, variant)?;
                sum += m.top1_agreement;
                shuffles.push((variant.clone(), m.top1_agreement));
                rows.extend(experiment.rows_for(variant, &m));
            }
            any_pass |= sum / variants.len() as f64 >= opts.threshold;
        }
        info!(
            "shuffle scan: width {width} {}",
            if any_pass {
                "has a range above the threshold"
            } else {
                "has none; stopping"
            }
        );
        if !any_pass {
            break;
        }
    }
    Ok(())
}

/// Finds the widest range whose seeds' mean top-1 agreement is at least
/// `threshold`. Ties go to the higher agreement, then the earlier start.
pub fn widest_shuffle(shuffles: &[(Variant, f64)], threshold: f64) -> Option<ShuffleSummary> {
    let mut ranges: Vec<((usize, usize), Vec<f64>)> = Vec::new();
    for (variant, top1) in shuffles {
        if let Variant::Shuffle { start, end, .. } = *variant {
            match ranges.iter_mut().find(|(r, _)| *r == (start, end)) {
                Some((_, values)) => values.push(*top1),
                None => ranges.push(((start, end), vec![*top1])),
            }
        }
    }
    ranges
        .into_iter()
        .map(|((start, end), v)| ShuffleSummary {
            start,
            end,
            top1_agreement: v.iter().sum::<f64>() / v.len() as f64,
            n_seeds: v.len(),
        })
        .filter(|s| s.top1_agreement >= threshold)
        .max_by(|a, b| {
            (a.end - a.start)
                .cmp(&(b.end - b.start))
                .then(a.top1_agreement.total_cmp(&b.top1_agreement))
                .then(b.start.cmp(&a.start))
        })
}

/// Log-sum-exp of a logit row (f64 accumulation) and its arg-max.
fn log_sum_exp(x: &[f32]) -> (f64, usize) {
    let mut best = 0;
    for (k, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = k;
        }
    }
    let max = f64::from(x[best]);
    let sum: f64 = x.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    (max + sum.ln(), best)
}

/// `sum_k p_k log q_k` for the logit row `x` with log-sum-exp `lse`.
/// KL(p || q) is the plain forward's own term minus this one.
fn cross_term(x: &[f32], lse: f64, p: &[f32]) -> f64 {
    x.iter()
        .zip(p)
        .map(|(&v, &pk)| f64::from(pk) * (f64::from(v) - lse))
        .sum()
}
