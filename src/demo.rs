//! The main job: two real models, their captures, the comparison grid, the
//! figures, the parquet, and a short summary per model pair.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use log::info;

use crate::capture::{self, CaptureOptions, Manifest, Pooling, WeightMode};
use crate::compare::{self, CompareOptions, TapChoice};
use crate::intervene::{self, InterventionOptions, VariantSet};
use crate::metrics::{GridOptions, MetricSpec};
use crate::results::{self, PairSummary, ResultRow};
use crate::stimuli::StimulusSet;

/// A model of the demo: its short name and GGUF file under the models folder.
struct DemoModel {
    name: &'static str,
    file: &'static str,
}

const MODELS: [DemoModel; 2] = [
    DemoModel {
        name: "SmolLM2-135M-Instruct",
        file: "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    DemoModel {
        name: "Qwen2.5-Coder-0.5B-Instruct",
        file: "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    },
];

/// The metrics of the demo grid.
pub const DEMO_METRICS: [&str; 4] = [
    "linear_cka",
    "linear_cka_debiased",
    "rsa",
    "procrustes_angular",
];

/// Options of `repatlas demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Folder holding the models fetched by scripts/fetch-models.sh.
    #[arg(long, env = "REPATLAS_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Stimulus file.
    #[arg(long, default_value = "datasets/stimuli.jsonl")]
    pub stimuli: PathBuf,
    /// Use only the first N stimuli.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output folder for runs, results.parquet and figures.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Also copy the figures into this folder (the README shows figures/).
    #[arg(long)]
    pub figures: Option<PathBuf>,
    /// Weight mode of both captures.
    #[arg(long, value_enum, default_value = "dequantize")]
    pub weights: WeightMode,
    /// Device for the models: cpu, or cuda[:N] in a build with `--features cuda`.
    #[arg(long, default_value = "cpu", value_parser = crate::capture::device::parse_device)]
    pub device: crate::capture::device::ComputeDevice,
    /// Stimuli of the SmolLM2 intervention run (adjacent swaps, each skip,
    /// shuffle scan); 0 skips it.
    #[arg(long, default_value_t = 32)]
    pub intervene_limit: usize,
}

/// Outputs of a demo run.
pub struct DemoOutcome {
    pub results: PathBuf,
    pub figures: Vec<PathBuf>,
    pub summaries: Vec<PairSummary>,
}

/// Runs the demo end to end; prints the per-pair summary to stdout.
pub fn run(args: &DemoArgs) -> Result<DemoOutcome> {
    let started = Instant::now();
    let stimuli = StimulusSet::load(&args.stimuli, args.limit)?;
    if stimuli.len() < 4 {
        bail!(
            "the demo needs at least 4 stimuli (debiased CKA is undefined below n = 4); {} has {} with --limit {:?}",
            args.stimuli.display(),
            stimuli.len(),
            args.limit
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    let mut runs = Vec::new();
    for model in &MODELS {
        let path = args.models.join(model.file);
        if !path.is_file() {
            bail!(
                "model file {} is missing; run scripts/fetch-models.sh (or set --models / REPATLAS_MODELS to the folder that contains it)",
                path.display()
            );
        }
        let out = args.out.join("runs").join(slug(model.name));
        capture_if_needed(model.name, &path, &out, &stimuli, args)?;
        runs.push(out);
    }

    let metrics: Vec<MetricSpec> = DEMO_METRICS
        .iter()
        .map(|m| m.parse())
        .collect::<Result<_, _>>()?;
    let opts = CompareOptions {
        metrics,
        grid: GridOptions::default(),
        tap: TapChoice::ResidPost,
        include_final_norm: false,
        layers_a: None,
        layers_b: None,
    };
    let mut rows: Vec<ResultRow> = Vec::new();
    let pairs = [(0, 0), (1, 1), (0, 1)];
    for (i, j) in pairs {
        let t = Instant::now();
        let pair_rows = compare::compare(&runs[i], &runs[j], &opts)?;
        info!(
            "compared {} with {} in {:.1} s",
            runs[i].display(),
            runs[j].display(),
            t.elapsed().as_secs_f64()
        );
        rows.extend(pair_rows);
    }
    let results_path = args.out.join("results.parquet");
    results::write_parquet(&rows, &results_path)?;

    let figure_dir = args.out.join("figures");
    std::fs::create_dir_all(&figure_dir)?;
    let mut figures = crate::plot::plot_all(&rows, &figure_dir)?;
    if let Some(dest) = &args.figures {
        std::fs::create_dir_all(dest)?;
        let mut copied = Vec::new();
        for f in &figures {
            let target = dest.join(f.file_name().expect("figure file name"));
            std::fs::copy(f, &target)
                .with_context(|| format!("cannot copy {} to {}", f.display(), target.display()))?;
            copied.push(target);
        }
        figures = copied;
    }

    if args.intervene_limit > 0 {
        let t = Instant::now();
        let opts = InterventionOptions {
            model: crate::capture::source::ModelSpec::Gguf(args.models.join(MODELS[0].file)),
            offline: true,
            model_name: Some(MODELS[0].name.to_string()),
            stimuli: args.stimuli.clone(),
            limit: Some(args.intervene_limit.min(stimuli.len())),
            weight_mode: args.weights,
            variants: ["swap:adjacent", "skip:each", "shuffle:scan"]
                .iter()
                .map(|v| Ok((v.to_string(), v.parse::<VariantSet>()?)))
                .collect::<Result<_, crate::intervene::VariantError>>()?,
            seeds: 2,
            threshold: 0.9,
            scan_stride: 2,
            max_batch_tokens: 2048,
            max_tokens: 256,
            padding: None,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            device: args.device,
            journal: Some(intervene::journal_path(&args.out.join("intervene.parquet"))),
        };
        let report = intervene::run(&opts)?;
        let path = args.out.join("intervene.parquet");
        intervene::write_parquet(&report.rows, &path)?;
        intervene::remove_journal(&path)?;
        let self_rows: Vec<ResultRow> = rows
            .iter()
            .filter(|r| r.model_a == MODELS[0].name && r.model_b == MODELS[0].name)
            .cloned()
            .collect();
        let written = crate::plot::intervention_figures(
            &report.rows,
            Some(&self_rows),
            opts.threshold,
            &figure_dir,
        )?;
        if let Some(dest) = &args.figures {
            for f in &written {
                let target = dest.join(f.file_name().expect("figure file name"));
                std::fs::copy(f, &target)?;
                figures.push(target);
            }
        } else {
            figures.extend(written);
        }
        print!("{}", intervene::summary_text(&report));
        info!(
            "interventions on {} in {:.1} s",
            MODELS[0].name,
            t.elapsed().as_secs_f64()
        );
    }

    let summaries = results::summarize(&rows);
    print_summary(&summaries, stimuli.len());
    eprintln!(
        "demo finished in {:.0} s: {} and {} figures in {}",
        started.elapsed().as_secs_f64(),
        results_path.display(),
        figures.len(),
        args.figures.as_ref().unwrap_or(&figure_dir).display()
    );
    Ok(DemoOutcome {
        results: results_path,
        figures,
        summaries,
    })
}

/// Captures `model` unless `out` already contains a run of the same model file
/// on the same stimuli.
fn capture_if_needed(
    name: &str,
    model: &Path,
    out: &Path,
    stimuli: &StimulusSet,
    args: &DemoArgs,
) -> Result<()> {
    if let Ok(manifest) = Manifest::read(out) {
        let same_stimuli = manifest.stimuli.set_sha256 == stimuli.set_sha256();
        let same_mode = manifest.weight_mode
            == serde_json::to_value(args.weights)?
                .as_str()
                .unwrap_or_default();
        if same_stimuli && same_mode {
            eprintln!("{name}: reusing the capture in {}", out.display());
            return Ok(());
        }
    }
    eprintln!(
        "{name}: capturing {} stimuli into {}",
        stimuli.len(),
        out.display()
    );
    let summary = capture::capture(&CaptureOptions {
        model: capture::source::ModelSpec::Gguf(model.to_path_buf()),
        offline: true,
        model_name: Some(name.to_string()),
        stimuli: args.stimuli.clone(),
        limit: args.limit,
        out: out.to_path_buf(),
        pooling: Pooling::Mean,
        padding: None,
        weight_mode: args.weights,
        taps: Vec::new(),
        max_batch_tokens: 2048,
        max_batch_rows: 64,
        max_tokens: Some(256),
        overwrite: true,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        device: args.device,
    })?;
    eprintln!(
        "{name}: {} tokens at {:.0} tokens/s",
        summary.total_tokens, summary.tokens_per_second
    );
    Ok(())
}

fn print_summary(summaries: &[PairSummary], n: usize) {
    println!("pair\tmetric\tmean_best_match\tdepth_correlation\tn_stimuli");
    for s in summaries {
        println!(
            "{} vs {}\t{}\t{:.4}\t{:.4}\t{n}",
            s.model_a, s.model_b, s.metric, s.mean_best_match, s.depth_correlation
        );
    }
}

/// File-system friendly form of a model name.
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}
