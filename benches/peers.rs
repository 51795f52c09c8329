//! Compare-grid speed against the Python tools researchers use, the Gram
//! stage against this machine's BLAS GEMM rate, and how time and memory
//! grow with the number of stimuli and layers.
//!
//! ```text
//! cargo bench --bench peers                         # n = 1024 and 4096
//! REPATLAS_BENCH_NS=1024 REPATLAS_BENCH_REPEATS=5 cargo bench --bench peers
//! REPATLAS_BENCH_SCALING=0 cargo bench --bench peers  # skip the scaling runs
//! REPATLAS_BENCH_MEASURES=linear_cka cargo bench --bench peers  # a subset
//! ```
//!
//! Inputs are the synthetic layers of `benches/common`: 31 x 576 against
//! 25 x 896, as SmolLM2-135M against Qwen2.5-0.5B. The peers read the same
//! `.npy` files in the same invocation (`benches/peers_grid.py`): a NumPy
//! loop that rebuilds each pair's kernels or RDMs, as notebooks do, and
//! rsatoolbox for RSA. When `n` is above `REPATLAS_BENCH_FULL_LOOP_N`
//! (default 1024) the NumPy loop times only its first 25 pairs and the
//! table scales that to the whole grid, which is exact up to timing noise
//! because every pair does the same work. The Python interpreter is
//! `$REPATLAS_PYTHON`, else `.bench-venv/bin/python`, else the one of
//! `benches/common`. The tables go to stdout and to `out/bench/grid.md`.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use repatlas::metrics::{
    compare_grid, gram_stage, GridOptions, LinearKernelForm, MetricSpec, Representation,
};
use repatlas::npy::read_npy_values;

const MEASURES: [&str; 3] = [
    "linear_cka",
    "linear_cka_debiased",
    "rsa:rdm=correlation,compare=spearman",
];

/// Pairs the NumPy loop times when the full loop would take too long.
const LOOP_SAMPLE: usize = 25;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peer_python() -> String {
    if std::env::var("REPATLAS_PYTHON").is_err() {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".bench-venv/bin/python");
        if venv.exists() {
            return venv.display().to_string();
        }
    }
    common::python()
}

/// Minimum, median and maximum of a sample.
#[derive(Clone, Copy)]
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Spread {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }

    fn scaled(self, factor: f64) -> Self {
        Spread {
            min: self.min * factor,
            median: self.median * factor,
            max: self.max * factor,
        }
    }

    fn cell(self) -> String {
        format!("{:.3} / {:.3} / {:.3}", self.min, self.median, self.max)
    }
}

/// A peer's timings of one grid, scaled to the whole grid, and its values.
struct PeerRun {
    seconds: Spread,
    extrapolated: bool,
    values: Vec<f64>,
}

/// Runs `benches/peers_grid.py` for one tool and measure.
fn run_peer(
    tool: &str,
    dir: &Path,
    measure: &str,
    shape: (usize, usize),
    repeats: usize,
    limit: usize,
) -> Option<PeerRun> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers_grid.py");
    let out = dir.join(format!("{tool}_values.npy"));
    let output = Command::new(peer_python())
        .arg(&script)
        .arg(tool)
        .arg(dir)
        .arg(measure)
        .arg(shape.0.to_string())
        .arg(shape.1.to_string())
        .arg(repeats.to_string())
        .arg(&out)
        .arg(limit.to_string())
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "{tool} {measure}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let seconds: Vec<f64> = report["seconds"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    let pairs = report["pairs"].as_u64()? as f64;
    let total = (shape.0 * shape.1) as f64;
    let (_, values) = read_npy_values(&out).ok()?;
    Some(PeerRun {
        seconds: Spread::of(&seconds).scaled(total / pairs),
        extrapolated: pairs < total,
        values,
    })
}

fn max_diff(ours: &[f64], theirs: &[f64]) -> f64 {
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

fn time_grid(
    a: &[Representation],
    b: &[Representation],
    spec: &MetricSpec,
    repeats: usize,
) -> (Spread, Vec<f64>) {
    let mut seconds = Vec::new();
    let mut values = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let cells = compare_grid(a, b, std::slice::from_ref(spec), &GridOptions::default())
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        seconds.push(start.elapsed().as_secs_f64());
        values = cells.iter().map(|c| c.value).collect();
    }
    (Spread::of(&seconds), values)
}

/// Times the grids of every measure at `n` stimuli against the peers.
fn grid_table(n: usize, repeats: usize, full_loop_n: usize, md: &mut String) {
    let (a, b) = common::model_pair(n, 31, 25);
    let dir = tempfile::tempdir().expect("temporary folder");
    common::write_layers(dir.path(), &a, &b);
    let shape = (a.len(), b.len());
    let loop_limit = if n > full_loop_n { LOOP_SAMPLE } else { 0 };
    writeln!(
        md,
        "\n### Grid 31 x 25, n = {n}, d = 576 vs 896 ({repeats} repeats; seconds min / median / max)\n\n\
         | measure | repatlas | NumPy loop | ratio | rsatoolbox | ratio | max abs diff |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    let chosen = std::env::var("REPATLAS_BENCH_MEASURES").unwrap_or_default();
    let selected = |name: &str| chosen.is_empty() || chosen.split(',').any(|m| m.trim() == name);
    for name in MEASURES.into_iter().filter(|m| selected(m)) {
        let spec: MetricSpec = name.parse().expect("valid measure");
        let (ours, values) = time_grid(&a, &b, &spec, repeats);
        let mut diffs = Vec::new();
        let numpy = run_peer("loop", dir.path(), name, shape, repeats, loop_limit);
        let (numpy_cell, numpy_ratio) = match &numpy {
            Some(run) => {
                diffs.push(max_diff(&values, &run.values));
                let mark = if run.extrapolated { " *" } else { "" };
                (
                    format!("{}{mark}", run.seconds.cell()),
                    format!("{:.1}x", run.seconds.median / ours.median),
                )
            }
            None => ("n/a".into(), "n/a".into()),
        };
        let rsa = if name.starts_with("rsa") {
            run_peer("rsatoolbox", dir.path(), name, shape, repeats.min(2), 0)
        } else {
            None
        };
        let (rsa_cell, rsa_ratio) = match &rsa {
            Some(run) => {
                diffs.push(max_diff(&values, &run.values));
                (
                    run.seconds.cell(),
                    format!("{:.1}x", run.seconds.median / ours.median),
                )
            }
            None => ("-".into(), "-".into()),
        };
        let diff = if diffs.is_empty() {
            "n/a".to_string()
        } else {
            format!("{:.1e}", diffs.iter().copied().fold(0.0, f64::max))
        };
        let line = format!(
            "| `{spec}` | {} | {numpy_cell} | {numpy_ratio} | {rsa_cell} | {rsa_ratio} | {diff} |",
            ours.cell()
        );
        println!("{line}");
        writeln!(md, "{line}").unwrap();
    }
    if loop_limit > 0 {
        writeln!(
            md,
            "\n\\* NumPy loop timed on its first {LOOP_SAMPLE} pairs and scaled to 775; \
             the difference column covers those pairs."
        )
        .unwrap();
    }
    gram_table(n, repeats, &a, &b, md);
}

/// Compares the Gram stage of a linear-CKA grid with the GEMM rate of the
/// same BLAS on one layer of the same shape.
fn gram_table(
    n: usize,
    repeats: usize,
    a: &[Representation],
    b: &[Representation],
    md: &mut String,
) {
    let all: Vec<Representation> = a.iter().chain(b).cloned().collect();
    let flops: f64 = all
        .iter()
        .map(|r| 2.0 * (n * n) as f64 * r.data.ncols() as f64)
        .sum();
    let mut stage = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let dots = gram_stage(&all);
        stage.push(start.elapsed().as_secs_f64());
        assert!(dots.iter().all(|d| d.is_finite()));
    }
    let stage = Spread::of(&stage);
    let mut gemm = Vec::new();
    let x = &b[0].data;
    for _ in 0..repeats {
        let start = Instant::now();
        let g = x.dot(&x.t());
        gemm.push(start.elapsed().as_secs_f64());
        assert!(g[[0, 0]].is_finite());
    }
    let gemm = Spread::of(&gemm);
    let gemm_rate = 2.0 * (n * n) as f64 * x.ncols() as f64 / gemm.min / 1e9;
    let stage_rate = flops / stage.min / 1e9;
    writeln!(
        md,
        "\nGram stage, n = {n}, 56 layers: {:.2} s best, {stage_rate:.1} GFLOP/s counted as \
         2 n² d per layer; f64 GEMM x xᵀ on one {n} x {} layer with the same OpenBLAS: \
         {gemm_rate:.1} GFLOP/s best; fraction of peak {:.0}%.",
        stage.min,
        x.ncols(),
        100.0 * stage_rate / gemm_rate
    )
    .unwrap();
    println!(
        "gram stage n = {n}: {stage_rate:.1} GFLOP/s, GEMM {gemm_rate:.1} GFLOP/s, {:.0}% of peak",
        100.0 * stage_rate / gemm_rate
    );
}

/// Reads this process's peak resident set, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Child mode: one linear-CKA grid, printed as `form seconds input_mib
/// peak_mib`. `form` forces the linear-kernel form (gram, streamed or
/// features); without it the grid picks.
fn one_run(n: usize, layers_a: usize, layers_b: usize, form: Option<&str>) {
    let (a, b) = common::model_pair(n, layers_a, layers_b);
    let input: usize = a.iter().chain(&b).map(|r| r.data.len() * 8).sum();
    let spec: MetricSpec = "linear_cka".parse().expect("valid measure");
    let linear_kernel = match form {
        None | Some("auto") => LinearKernelForm::Auto,
        Some("gram") => LinearKernelForm::Gram,
        Some("streamed") => LinearKernelForm::Streamed,
        Some("features") => LinearKernelForm::Features,
        Some(other) => panic!("unknown form {other:?}; use auto, gram, streamed or features"),
    };
    let opts = GridOptions {
        linear_kernel,
        ..GridOptions::default()
    };
    let widths = |side: &[Representation]| side.iter().map(|r| r.data.ncols()).collect::<Vec<_>>();
    let chosen = opts.linear_kernel_form(n, &widths(&a), &widths(&b));
    let start = Instant::now();
    let cells = compare_grid(&a, &b, std::slice::from_ref(&spec), &opts).expect("grid runs");
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(cells.len(), layers_a * layers_b);
    println!(
        "{chosen:?} {seconds} {} {}",
        input as f64 / (1 << 20) as f64,
        peak_rss_mib()
    );
}

/// Runs the scaling grid in child processes, so that each has its own peak.
fn scaling_table(md: &mut String) {
    writeln!(
        md,
        "\n### Scaling of the linear-CKA grid (one run each, separate processes)\n\n\
         | n | layers | form | grid (s) | input (MiB) | peak RSS (MiB) |\n\
         |---:|---:|---|---:|---:|---:|"
    )
    .unwrap();
    let exe = std::env::current_exe().expect("own path");
    // The automatic choice, then whole Grams against it where both are
    // affordable.
    let cases = [
        (1024, 31, 25, "auto"),
        (1024, 31, 25, "gram"),
        (2048, 31, 25, "auto"),
        (2048, 31, 25, "gram"),
        (4096, 31, 25, "auto"),
        (16384, 31, 25, "auto"),
        (4096, 8, 8, "auto"),
        (4096, 16, 16, "auto"),
        (4096, 16, 16, "gram"),
    ];
    for (n, la, lb, form) in cases {
        let output = Command::new(&exe)
            .args([
                "--one",
                &n.to_string(),
                &la.to_string(),
                &lb.to_string(),
                form,
            ])
            .output()
            .expect("child runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut words = text.split_whitespace();
        let mut chosen = words.next().unwrap_or("?").to_lowercase();
        if form == "auto" {
            chosen.push_str(" (auto)");
        }
        let fields: Vec<f64> = words.filter_map(|f| f.parse().ok()).collect();
        let line = match fields.as_slice() {
            [s, input, peak] => {
                format!("| {n} | {la} x {lb} | {chosen} | {s:.2} | {input:.0} | {peak:.0} |")
            }
            _ => format!(
                "| {n} | {la} x {lb} | {form} | failed: {} | | |",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        };
        println!("{line}");
        writeln!(md, "{line}").unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(k) = args.iter().position(|a| a == "--one") {
        let num = |i: usize| args[k + i].parse::<usize>().expect("a count");
        one_run(num(1), num(2), num(3), args.get(k + 4).map(String::as_str));
        return;
    }
    let ns: Vec<usize> = std::env::var("REPATLAS_BENCH_NS")
        .unwrap_or_else(|_| "1024,4096".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let repeats = env_or("REPATLAS_BENCH_REPEATS", 3usize).max(1);
    let full_loop_n = env_or("REPATLAS_BENCH_FULL_LOOP_N", 1024usize);
    let mut md = format!(
        "## Compare grid\n\n{} rayon threads, OPENBLAS_NUM_THREADS={}, peers run by {}\n",
        rayon::current_num_threads(),
        std::env::var("OPENBLAS_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        peer_python()
    );
    for n in ns {
        grid_table(n, repeats, full_loop_n, &mut md);
    }
    if env_or("REPATLAS_BENCH_SCALING", 1u8) != 0 {
        scaling_table(&mut md);
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("out/bench");
    std::fs::create_dir_all(&out).expect("create out/bench");
    std::fs::write(out.join("grid.md"), md).expect("write out/bench/grid.md");
    println!("wrote out/bench/grid.md");
}
