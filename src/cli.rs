//! Argument parsing (clap) and validation into library options.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use log::info;

use repatlas::capture::device::ComputeDevice;
use repatlas::capture::{self, CaptureOptions, Padding, Pooling, Tap, WeightMode};
use repatlas::compare::{self, CompareOptions, TapChoice};
use repatlas::intervene::{self, InterventionOptions, VariantSet};
use repatlas::metrics::{GridOptions, MetricSpec, OutlierPolicy};
use repatlas::{demo, plot, results};

#[derive(Parser)]
#[command(
    name = "repatlas",
    version,
    about = "Representational similarity analysis of language models"
)]
#[command(after_help = "Exit status: 0 success, 1 the job failed, 2 invalid input.")]
struct Cli {
    /// Log the decisions the tool makes (-v info, -vv debug) on stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model over a stimulus set and store every layer's hidden state.
    Capture(CaptureArgs),
    /// Compare every layer of one run (or .npy set) with every layer of another.
    Compare(CompareArgs),
    /// Draw heatmaps and best-match plots from a results parquet.
    Plot(PlotArgs),
    /// Swap, skip, shuffle or repeat blocks of a decoder and measure the change.
    Intervene(InterveneArgs),
    /// Run the main job: capture two models, compare them, write figures and parquet.
    Demo(DemoCommand),
}

/// The model and stimuli of `capture` and `intervene`.
#[derive(Args)]
struct ModelInput {
    /// A GGUF file, a Hugging Face folder (config.json, model.safetensors,
    /// tokenizer.json) or a Hub id written hf:owner/name[@revision][:file.gguf];
    /// intervene takes decoders only.
    #[arg(long)]
    model: String,
    /// Read Hub models from the local cache only (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Short model name used in tables and figures (default: file stem).
    #[arg(long)]
    name: Option<String>,
    /// Stimulus file: JSON lines with id, category and text.
    #[arg(long)]
    stimuli: PathBuf,
    /// Use only the first N stimuli.
    #[arg(long)]
    limit: Option<usize>,
}

impl ModelInput {
    /// Rejects a zero `--limit` and a blank `--name`.
    fn check(&self) -> Result<()> {
        if self.limit == Some(0) {
            bail!(
                "invalid --limit 0: give a positive number of stimuli, \
                 or leave --limit out to use all of them"
            );
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            bail!(
                "invalid --name: it is blank; give a short model name, \
                 or leave --name out to use the file stem"
            );
        }
        Ok(())
    }
}

#[derive(Args)]
struct CaptureArgs {
    #[command(flatten)]
    input: ModelInput,
    /// Run directory to write.
    #[arg(long)]
    out: PathBuf,
    /// How token vectors become one vector per stimulus.
    #[arg(long, value_enum, default_value = "mean")]
    pooling: Pooling,
    /// Batch layout: none packs the stimuli end to end without padding (the
    /// CPU default, fastest), left or right pads each one to the batch's
    /// longest (the GPU default). Without it, an unfinished run of the same
    /// --out resumes with the layout it recorded.
    #[arg(long, value_enum)]
    padding: Option<Padding>,
    /// Dequantize weights to f32 (exact parity) or keep them quantized (less
    /// memory, not exact; on the CPU much slower for batched capture).
    #[arg(long, value_enum, default_value = "dequantize")]
    weights: WeightMode,
    /// Device for the model: cpu, or cuda[:N] in a build with `--features cuda`.
    #[arg(long, default_value = "cpu", value_parser = repatlas::capture::device::parse_device)]
    device: ComputeDevice,
    /// Extra activation sites to store besides resid_post (repeatable).
    #[arg(long = "tap", value_enum)]
    taps: Vec<TapArg>,
    /// Token slots per batch, padding included.
    #[arg(long, default_value_t = 2048)]
    batch_tokens: usize,
    /// Maximum stimuli per batch.
    #[arg(long, default_value_t = 64)]
    batch_rows: usize,
    /// Truncate each stimulus to this many tokens, special tokens included:
    /// the text is cut and the tokenizer's closing tokens (BERT's [SEP]) kept.
    /// A warning counts each one.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Replace an existing run directory once the new one is complete.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum TapArg {
    ResidMid,
    AttnOut,
    MlpOut,
}

#[derive(Args)]
struct CompareArgs {
    /// Run directory, .npy file (rows = stimuli) or folder of .npy files (one per layer).
    a: PathBuf,
    /// Second source; omit to compare A with itself.
    b: Option<PathBuf>,
    /// Metrics separated by ';', each `name` or `name:key=value,...` (see docs/metrics.md).
    #[arg(
        long,
        default_value = "linear_cka;linear_cka_debiased;rsa;procrustes_angular",
        value_delimiter = ';'
    )]
    metrics: Vec<String>,
    /// Results parquet to write (with --format parquet).
    #[arg(long)]
    out: Option<PathBuf>,
    /// parquet writes --out; jsonl prints the rows to stdout.
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// Activation site to compare.
    #[arg(long, value_enum, default_value = "resid-post")]
    tap: TapChoice,
    /// Add the final-norm output as a last layer of each run.
    #[arg(long)]
    final_norm: bool,
    /// Layers of A, e.g. 0,4,8-12 (default: all).
    #[arg(long)]
    layers_a: Option<String>,
    /// Layers of B (default: all).
    #[arg(long)]
    layers_b: Option<String>,
    /// Permutations per cell for p-values (0: none).
    #[arg(long, default_value_t = 0)]
    permutations: usize,
    /// Bootstrap resamples per cell for confidence intervals (0: none).
    #[arg(long, default_value_t = 0)]
    bootstrap: usize,
    /// Seed of permutations and bootstrap resamples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Confidence level of bootstrap intervals.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Outlier handling before every measure: none, clip:q=0.999 (clamp to
    /// the quantile of absolute values) or exclude:factor=100 (drop columns
    /// whose max |activation| is that many times the median column's).
    #[arg(long, default_value = "none")]
    outliers: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Parquet,
    Jsonl,
}

#[derive(Args)]
struct PlotArgs {
    /// Results parquet written by `repatlas compare`, or an intervention
    /// parquet written by `repatlas intervene`.
    results: PathBuf,
    /// Folder for the PNG and SVG files.
    #[arg(long, default_value = "figures")]
    out: PathBuf,
    /// For intervention parquet: a results parquet with the model's
    /// comparison with itself, drawn beside the swap matrix.
    #[arg(long)]
    cka: Option<PathBuf>,
    /// For intervention parquet: top-1 agreement a shuffled range must keep.
    #[arg(long, default_value_t = 0.9)]
    threshold: f64,
}

#[derive(Args)]
struct InterveneArgs {
    #[command(flatten)]
    input: ModelInput,
    /// Variants, separated by ';': swap:I,J swap:adjacent swap:all skip:I skip:each
    /// shuffle:START-END shuffle:scan repeat:I repeat:each (blocks are 0-based).
    #[arg(long, value_delimiter = ';', required = true)]
    variants: Vec<String>,
    /// Seeds per shuffled range; seeds that repeat an order already drawn
    /// for the range are left out.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Top-1 agreement a shuffled range must keep to count as interchangeable.
    #[arg(long, default_value_t = 0.9)]
    threshold: f64,
    /// Step between start blocks of shuffle:scan windows.
    #[arg(long, default_value_t = 1)]
    scan_stride: usize,
    /// Dequantize weights to f32 or keep them quantized.
    #[arg(long, value_enum, default_value = "dequantize")]
    weights: WeightMode,
    /// Device for the model: cpu, or cuda[:N] in a build with `--features cuda`.
    #[arg(long, default_value = "cpu", value_parser = repatlas::capture::device::parse_device)]
    device: ComputeDevice,
    /// Truncate each stimulus to this many tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Token slots per batch, padding included.
    #[arg(long, default_value_t = 2048)]
    batch_tokens: usize,
    /// Batch layout: none packs the stimuli end to end (the CPU default),
    /// left or right pads each one (the GPU default). Without it, an
    /// unfinished run of the same --out resumes with the layout it recorded.
    #[arg(long, value_enum)]
    padding: Option<Padding>,
    /// Parquet file for the rows (one per variant and measure). Finished
    /// variants are logged to `<out>.partial.jsonl`, so a killed run resumes.
    #[arg(long)]
    out: PathBuf,
    /// Folder for the swap-matrix, skip-curve and shuffle-range figures.
    #[arg(long)]
    figures: Option<PathBuf>,
    /// A results parquet holding the model's comparison with itself; adds
    /// the figure of its CKA heatmap beside the swap matrix.
    #[arg(long, requires = "figures")]
    cka: Option<PathBuf>,
}

#[derive(Args)]
struct DemoCommand {
    #[command(flatten)]
    opts: demo::DemoArgs,
}

/// Parses arguments, runs the verb and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("repatlas: error: {}", error_chain(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Formats the error and its causes, leaving out a cause whose text the message
/// already contains (typed errors often print their source themselves).
fn error_chain(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("repatlas", level)
        .format_timestamp(None)
        .format_target(false)
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// 1 for failures of the job itself, 2 for invalid input.
fn exit_code(err: &anyhow::Error) -> u8 {
    use repatlas::capture::CaptureError as C;
    use std::io::ErrorKind as K;
    // The compute or the disk failed, not the input: a full disk or a write
    // cut short is no reason to change the command.
    let job_failure = err.chain().any(|e| {
        matches!(e.downcast_ref::<C>(), Some(C::Candle(_)))
            || e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    K::StorageFull | K::WriteZero | K::Interrupted | K::OutOfMemory
                )
            })
    });
    if job_failure {
        1
    } else {
        2
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Capture(args) => run_capture(args),
        Command::Compare(args) => run_compare(args),
        Command::Plot(args) => run_plot(args),
        Command::Intervene(args) => run_intervene(args),
        Command::Demo(args) => demo::run(&args.opts).map(|_| ()),
    }
}

fn run_capture(args: CaptureArgs) -> Result<()> {
    if args.batch_tokens == 0 || args.batch_rows == 0 {
        bail!("--batch-tokens and --batch-rows must be positive");
    }
    if args.max_tokens == Some(0) {
        bail!("--max-tokens must be positive");
    }
    args.input.check()?;
    let taps = args
        .taps
        .iter()
        .map(|t| match t {
            TapArg::ResidMid => Tap::ResidMid,
            TapArg::AttnOut => Tap::AttnOut,
            TapArg::MlpOut => Tap::MlpOut,
        })
        .collect();
    let opts = CaptureOptions {
        model: args.input.model.parse()?,
        offline: args.input.offline,
        model_name: args.input.name,
        stimuli: args.input.stimuli,
        limit: args.input.limit,
        out: args.out,
        pooling: args.pooling,
        padding: args.padding,
        weight_mode: args.weights,
        taps,
        max_batch_tokens: args.batch_tokens,
        max_batch_rows: args.batch_rows,
        max_tokens: args.max_tokens,
        overwrite: args.overwrite,
        progress: std::io::stderr().is_terminal(),
        device: args.device,
    };
    let summary = capture::capture(&opts)?;
    let speed = if summary.tokens_per_second > 0.0 {
        format!("at {:.0} tokens/s", summary.tokens_per_second)
    } else {
        "from batches captured earlier".to_string()
    };
    eprintln!(
        "captured {} stimuli ({} tokens, {} truncated) into {} {speed}",
        summary.n_stimuli,
        summary.total_tokens,
        summary.n_truncated,
        summary.out.display(),
    );
    Ok(())
}

fn parse_metrics(names: &[String]) -> Result<Vec<MetricSpec>> {
    let mut specs = Vec::new();
    for name in names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let spec = name
            .parse::<MetricSpec>()
            .with_context(|| format!("invalid --metrics entry {name:?}"))?;
        // The same measure twice would give duplicate rows.
        if !specs
            .iter()
            .any(|s: &MetricSpec| s.to_string() == spec.to_string())
        {
            specs.push(spec);
        }
    }
    if specs.is_empty() {
        bail!("--metrics is empty; name at least one metric, e.g. linear_cka");
    }
    Ok(specs)
}

fn run_compare(args: CompareArgs) -> Result<()> {
    // Validate everything before any data is read.
    let metrics = parse_metrics(&args.metrics)?;
    if args.format == Format::Parquet && args.out.is_none() {
        bail!("--out is required with --format parquet (or use --format jsonl to print rows)");
    }
    if args.format == Format::Jsonl && args.out.is_some() {
        bail!("--out is only written with --format parquet; --format jsonl prints rows to stdout");
    }
    let layers_a = args
        .layers_a
        .as_deref()
        .map(compare::parse_layers)
        .transpose()?;
    let layers_b = args
        .layers_b
        .as_deref()
        .map(compare::parse_layers)
        .transpose()?;
    let b = args.b.clone().unwrap_or_else(|| args.a.clone());
    let opts = CompareOptions {
        metrics,
        grid: GridOptions {
            n_permutations: args.permutations,
            n_bootstrap: args.bootstrap,
            seed: args.seed,
            confidence: args.confidence,
            outliers: args.outliers.parse::<OutlierPolicy>()?,
            ..GridOptions::default()
        },
        tap: args.tap,
        include_final_norm: args.final_norm,
        layers_b: if args.b.is_none() && layers_b.is_none() {
            layers_a.clone()
        } else {
            layers_b
        },
        layers_a,
    };
    let rows = compare::compare(&args.a, &b, &opts)?;
    match args.format {
        Format::Parquet => {
            let out = args.out.expect("checked above");
            results::write_parquet(&rows, &out)?;
            info!("wrote {} rows to {}", rows.len(), out.display());
            eprintln!("wrote {} rows to {}", rows.len(), out.display());
        }
        Format::Jsonl => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            results::write_jsonl(&rows, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(())
}

fn run_intervene(args: InterveneArgs) -> Result<()> {
    args.input.check()?;
    if args.out.is_dir() || args.out.as_os_str().to_string_lossy().ends_with('/') {
        bail!(
            "--out {} is a folder; name the parquet file to write, e.g. {}",
            args.out.display(),
            args.out.join("intervene.parquet").display()
        );
    }
    // Like capture, create the folder the output goes into.
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the folder of --out {}", parent.display()))?;
    }
    let mut variants = Vec::new();
    for spec in args
        .variants
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        variants.push((spec.to_string(), spec.parse::<VariantSet>()?));
    }
    let opts = InterventionOptions {
        model: args.input.model.parse()?,
        offline: args.input.offline,
        model_name: args.input.name,
        stimuli: args.input.stimuli,
        limit: args.input.limit,
        weight_mode: args.weights,
        variants,
        seeds: args.seeds,
        threshold: args.threshold,
        scan_stride: args.scan_stride,
        max_batch_tokens: args.batch_tokens,
        max_tokens: args.max_tokens,
        padding: args.padding,
        progress: std::io::stderr().is_terminal(),
        device: args.device,
        journal: Some(intervene::journal_path(&args.out)),
    };
    let cka_rows = args.cka.as_deref().map(results::read_parquet).transpose()?;
    let report = intervene::run(&opts)?;
    intervene::write_parquet(&report.rows, &args.out)?;
    intervene::remove_journal(&args.out)?;
    eprintln!("wrote {} rows to {}", report.rows.len(), args.out.display());
    if let Some(dir) = &args.figures {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let written =
            plot::intervention_figures(&report.rows, cka_rows.as_deref(), args.threshold, dir)?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
    }
    print!("{}", intervene::summary_text(&report));
    Ok(())
}

/// True when the parquet file has the `kind` and `measure` columns of
/// intervention rows.
fn is_intervention_parquet(path: &std::path::Path) -> bool {
    use polars::prelude::{ParquetReader, SerReader};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    ParquetReader::new(file)
        .schema()
        .map(|schema| schema.contains("kind") && schema.contains("measure"))
        .unwrap_or(false)
}

fn run_plot(args: PlotArgs) -> Result<()> {
    if is_intervention_parquet(&args.results) {
        let rows = intervene::read_parquet(&args.results)?;
        let cka = args.cka.as_deref().map(results::read_parquet).transpose()?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        for path in plot::intervention_figures(&rows, cka.as_deref(), args.threshold, &args.out)? {
            println!("{}", path.display());
        }
        return Ok(());
    }
    let rows = results::read_parquet(&args.results)?;
    if rows.is_empty() {
        bail!(
            "{} contains no rows; run repatlas compare first",
            args.results.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let written = plot::plot_all(&rows, &args.out)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
