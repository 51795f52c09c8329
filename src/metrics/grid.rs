//! The all-layers grid: every layer of one model against every layer of
//! another, for several measures, with permutation tests and bootstrap
//! confidence intervals.
//!
//! Work that belongs to one layer (centring, Gram or RDM, SVD, neighbour
//! lists) is done once per layer and measure family, then reused for every
//! pair. Layers are prepared and pairs evaluated in parallel with rayon;
//! matrix products use BLAS.

use std::collections::HashMap;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::blas::SingleThreadedBlas;
use super::prepared::{
    pair_dots, pair_value, preparation_key, prepare, LinearKernelForm, Plan, Prepared,
    DEFAULT_GRAM_MEMORY_LIMIT,
};
use super::stats::{as_extreme, bootstrap_rows, p_value, percentile_interval, permutation};
use super::validate::{check_representation, check_rows};
use super::{MetricError, MetricKind, MetricSpec, OutlierPolicy, Representation};

/// Options of [`compare_grid`].
#[derive(Clone, Debug)]
pub struct GridOptions {
    /// Permutations per cell for the p-value; 0 skips the test.
    pub n_permutations: usize,
    /// Bootstrap resamples per cell for the confidence interval; 0 skips it.
    pub n_bootstrap: usize,
    /// Seed of every permutation and resample (recorded with the results).
    pub seed: u64,
    /// Outlier handling applied to each representation first.
    pub outliers: OutlierPolicy,
    /// Coverage of the bootstrap interval, in (0, 1).
    pub confidence: f64,
    /// Bytes that the centred Gram matrices of all layers may take. Above
    /// it, linear kernels stream their Grams in tiles or keep the features
    /// (n x d per layer) when `linear_kernel` is `Auto`.
    pub gram_memory_limit: usize,
    /// Storage form of the layers of linear-kernel measures.
    pub linear_kernel: LinearKernelForm,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            n_permutations: 0,
            n_bootstrap: 0,
            seed: 0,
            outliers: OutlierPolicy::None,
            confidence: 0.95,
            gram_memory_limit: DEFAULT_GRAM_MEMORY_LIMIT,
            linear_kernel: LinearKernelForm::Auto,
        }
    }
}

impl GridOptions {
    /// Returns the form that a grid with these options gives its linear
    /// kernels, for `n` stimuli and layers of widths `dims_a` and `dims_b`
    /// (never `Auto`).
    pub fn linear_kernel_form(
        &self,
        n: usize,
        dims_a: &[usize],
        dims_b: &[usize],
    ) -> LinearKernelForm {
        let evaluations = 1 + self.n_permutations + self.n_bootstrap;
        let plan = Plan::for_pairs(
            n,
            dims_a,
            dims_b,
            evaluations,
            self.gram_memory_limit,
            self.linear_kernel,
        );
        plan.kernel_form.into()
    }
}

/// One (layer of A, layer of B, measure) result.
#[derive(Clone, Debug, PartialEq)]
pub struct GridCell {
    /// Index of the layer in the first list.
    pub layer_a: usize,
    /// Index of the layer in the second list.
    pub layer_b: usize,
    /// Canonical metric name.
    pub metric: String,
    /// Similarity or distance.
    pub kind: MetricKind,
    /// The measure on the original stimulus order.
    pub value: f64,
    /// Permutation p-value, if permutations were requested.
    pub p_value: Option<f64>,
    /// Lower end of the bootstrap percentile interval.
    pub ci_low: Option<f64>,
    /// Upper end of the bootstrap percentile interval.
    pub ci_high: Option<f64>,
    /// Number of permutations behind `p_value`.
    pub n_permutations: u32,
    /// Number of resamples behind the interval.
    pub n_bootstrap: u32,
}

/// Compares every layer of `a` with every layer of `b` under each measure.
///
/// Cells are returned measure by measure, then by `layer_a`, then by
/// `layer_b`. Passing the same slice as `a` and `b` prepares each layer
/// once.
///
/// The permutation test reorders the stimuli of the `b` side, with the
/// same permutations for every cell, and counts permuted values at least as
/// extreme as the observed one. The p-value is `(1 + count) /
/// (1 + n_permutations)`. The bootstrap draws stimuli with replacement
/// (the same draws for both sides and every cell) and reports the
/// percentile interval at `confidence`.
///
/// Every representation is checked first (see
/// [`MetricSpec::compute`]); all must have the same number of rows.
pub fn compare_grid(
    a: &[Representation],
    b: &[Representation],
    metrics: &[MetricSpec],
    opts: &GridOptions,
) -> Result<Vec<GridCell>, MetricError> {
    validate_options(opts)?;
    let _blas = SingleThreadedBlas::new();
    let same = std::ptr::eq(a, b);
    let n = check_layers(a, b)?;
    for spec in metrics {
        spec.check_stimuli(n)?;
    }
    let data_a = apply_outliers(a, &opts.outliers);
    let data_b = if same {
        None
    } else {
        Some(apply_outliers(b, &opts.outliers))
    };
    let side_a = Side::new(a, &data_a);
    let side_b = match &data_b {
        Some(data) => Side::new(b, data),
        None => side_a.clone(),
    };

    let mut results: Vec<Vec<GridCell>> = vec![Vec::new(); metrics.len()];
    for members in group_by_preparation(metrics) {
        let first = &metrics[members[0]];
        let evaluations = 1 + opts.n_permutations + opts.n_bootstrap;
        let plan = Plan::for_pairs(
            n,
            &side_a.dims(),
            &side_b.dims(),
            evaluations,
            opts.gram_memory_limit,
            opts.linear_kernel,
        );
        log::debug!("{first}: linear kernels in {:?} form", plan.kernel_form);
        let prep_a = side_a.prepare(first, &plan)?;
        let prep_b = if same {
            None
        } else {
            Some(side_b.prepare(first, &plan)?)
        };
        let prep_b = prep_b.as_deref().unwrap_or(&prep_a);
        // One blocked pass serves every measure of the group.
        let crosses = pair_dots(&prep_a, prep_b, &plan);
        let grid = Grid {
            a: &prep_a,
            b: prep_b,
            same,
            n,
            plan,
            opts,
            crosses,
        };
        for index in members {
            results[index] = grid.cells(&metrics[index])?;
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// Compares two representations under one measure, with the statistics
/// of `opts`; a one-cell [`compare_grid`].
pub fn compare_pair(
    x: &Representation,
    y: &Representation,
    metric: &MetricSpec,
    opts: &GridOptions,
) -> Result<GridCell, MetricError> {
    let cells = compare_grid(
        std::slice::from_ref(x),
        std::slice::from_ref(y),
        std::slice::from_ref(metric),
        opts,
    )?;
    Ok(cells.into_iter().next().expect("a 1 x 1 grid has one cell"))
}

/// Returns the indices of `metrics` grouped by the prepared layers they can
/// share, groups in order of first appearance.
fn group_by_preparation(metrics: &[MetricSpec]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for (index, spec) in metrics.iter().enumerate() {
        let g = *group_of.entry(preparation_key(spec)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(index);
    }
    groups
}

fn validate_options(opts: &GridOptions) -> Result<(), MetricError> {
    if !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(MetricError::InvalidOption {
            option: "confidence",
            value: opts.confidence.to_string(),
            reason: "expected a coverage strictly between 0 and 1, e.g. 0.95".to_string(),
        });
    }
    for (option, count) in [
        ("n_permutations", opts.n_permutations),
        ("n_bootstrap", opts.n_bootstrap),
    ] {
        if u32::try_from(count).is_err() {
            return Err(MetricError::InvalidOption {
                option,
                value: count.to_string(),
                reason: format!("expected at most {}", u32::MAX),
            });
        }
    }
    opts.outliers.validate()
}

/// Checks every layer and returns the shared number of stimuli.
fn check_layers(a: &[Representation], b: &[Representation]) -> Result<usize, MetricError> {
    let reference = a.first().ok_or(MetricError::NoLayers {
        side: "the first model",
    })?;
    if b.is_empty() {
        return Err(MetricError::NoLayers {
            side: "the second model",
        });
    }
    let all: Vec<&Representation> = a.iter().chain(b.iter()).collect();
    all.par_iter()
        .map(|r| check_representation(&r.name, r.data.view()))
        .collect::<Result<Vec<()>, MetricError>>()?;
    let n = reference.data.nrows();
    for r in &all {
        check_rows(&reference.name, n, &r.name, r.data.nrows())?;
    }
    Ok(n)
}

/// Applies the outlier policy to copies of the layers. Returns `None` for
/// `OutlierPolicy::None`, so the originals are used without a copy.
fn apply_outliers(layers: &[Representation], policy: &OutlierPolicy) -> Option<Vec<Array2<f64>>> {
    if *policy == OutlierPolicy::None {
        return None;
    }
    let processed = layers
        .par_iter()
        .map(|r| {
            let (data, changed) = policy.apply(r.data.view());
            log::info!(
                "{}: outlier policy {policy} changed {changed} values or columns",
                r.name
            );
            data
        })
        .collect();
    Some(processed)
}

/// The names and (processed) data of one side of the grid.
#[derive(Clone)]
struct Side<'a> {
    names: Vec<&'a str>,
    views: Vec<ArrayView2<'a, f64>>,
}

impl<'a> Side<'a> {
    fn new(layers: &'a [Representation], processed: &'a Option<Vec<Array2<f64>>>) -> Self {
        let views = match processed {
            Some(data) => data.iter().map(|d| d.view()).collect(),
            None => layers.iter().map(|r| r.data.view()).collect(),
        };
        Side {
            names: layers.iter().map(|r| r.name.as_str()).collect(),
            views,
        }
    }

    fn dims(&self) -> Vec<usize> {
        self.views.iter().map(|v| v.ncols()).collect()
    }

    fn prepare(&self, spec: &MetricSpec, plan: &Plan) -> Result<Vec<Prepared<'a>>, MetricError> {
        self.views
            .par_iter()
            .zip(self.names.par_iter())
            .map(|(x, name)| prepare(spec, name, *x, plan))
            .collect()
    }
}

/// Prepared layers of both sides for one measure family.
struct Grid<'g, 'a> {
    a: &'g [Prepared<'a>],
    b: &'g [Prepared<'a>],
    same: bool,
    n: usize,
    plan: Plan,
    opts: &'g GridOptions,
    /// Every pair's inner product from [`pair_dots`], where it applies.
    crosses: Option<Vec<f64>>,
}

impl Grid<'_, '_> {
    fn cells(&self, spec: &MetricSpec) -> Result<Vec<GridCell>, MetricError> {
        let (na, nb) = (self.a.len(), self.b.len());
        let observed: Vec<f64> = (0..na * nb)
            .into_par_iter()
            .map(|c| {
                let cross = self.crosses.as_ref().map(|x| x[c]);
                pair_value(spec, &self.a[c / nb], &self.b[c % nb], cross)
            })
            .collect::<Result<_, _>>()?;
        self.warn_forced_correlations(spec);
        let p_values = self.permutation_p_values(spec, &observed)?;
        let intervals = self.bootstrap_intervals(spec)?;
        let cells = (0..na * nb)
            .map(|c| GridCell {
                layer_a: c / nb,
                layer_b: c % nb,
                metric: spec.to_string(),
                kind: spec.kind(),
                value: observed[c],
                p_value: p_values.as_ref().map(|p| p[c]),
                ci_low: intervals.as_ref().map(|i| i[c].0),
                ci_high: intervals.as_ref().map(|i| i[c].1),
                n_permutations: self.opts.n_permutations as u32,
                n_bootstrap: self.opts.n_bootstrap as u32,
            })
            .collect();
        Ok(cells)
    }

    /// Logs one warning when CCA-family pairs have `dim X + dim Y > n - 1`,
    /// where that many minus `n - 1` canonical correlations are 1 by
    /// construction and PWCCA's weights on them are not unique.
    fn warn_forced_correlations(&self, spec: &MetricSpec) {
        let limit = self.n - 1;
        let mut forced = 0;
        for layer_a in self.a {
            for layer_b in self.b {
                if let (Some(da), Some(db)) =
                    (layer_a.subspace_dimension(), layer_b.subspace_dimension())
                {
                    forced += usize::from(da + db > limit);
                }
            }
        }
        if forced > 0 {
            log::warn!(
                "{spec}: in {forced} of {} layer pairs the two bases together have more than \
                 n - 1 = {limit} dimensions, so some canonical correlations are 1 by \
                 construction (and PWCCA weights are not unique); keep fewer components \
                 (svcca:k=...) or use linear_cka_debiased",
                self.a.len() * self.b.len()
            );
        }
    }

    /// Runs the permutations in parallel; each keeps one permuted B layer
    /// at a time.
    fn permutation_p_values(
        &self,
        spec: &MetricSpec,
        observed: &[f64],
    ) -> Result<Option<Vec<f64>>, MetricError> {
        let count = self.opts.n_permutations;
        if count == 0 {
            return Ok(None);
        }
        let (na, nb) = (self.a.len(), self.b.len());
        let kind = spec.kind();
        let extreme = (0..count)
            .into_par_iter()
            .map(|r| {
                let p = permutation(self.n, self.opts.seed, r);
                let mut hits = vec![0usize; na * nb];
                for (j, layer_b) in self.b.iter().enumerate() {
                    let permuted = layer_b.permuted(spec, &p, &self.plan)?;
                    for (i, layer_a) in self.a.iter().enumerate() {
                        let value = pair_value(spec, layer_a, &permuted, None)?;
                        if as_extreme(kind, value, observed[i * nb + j]) {
                            hits[i * nb + j] += 1;
                        }
                    }
                }
                Ok(hits)
            })
            .try_reduce(
                || vec![0usize; na * nb],
                |mut x, y| {
                    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
                    Ok(x)
                },
            )?;
        Ok(Some(
            extreme.into_iter().map(|e| p_value(e, count)).collect(),
        ))
    }

    /// Runs the resamples in parallel; each resamples every A layer once
    /// and then one B layer at a time.
    fn bootstrap_intervals(
        &self,
        spec: &MetricSpec,
    ) -> Result<Option<Vec<(f64, f64)>>, MetricError> {
        let count = self.opts.n_bootstrap;
        if count == 0 {
            return Ok(None);
        }
        let (na, nb) = (self.a.len(), self.b.len());
        let seed = self.opts.seed;
        let draws: Vec<Vec<f64>> = (0..count)
            .into_par_iter()
            .map(|r| {
                self.one_resample(spec, &bootstrap_rows(self.n, seed, r))
                    .map_err(|e| MetricError::Resample {
                        index: r,
                        seed,
                        source: Box::new(e),
                    })
            })
            .collect::<Result<_, _>>()?;
        let intervals = (0..na * nb)
            .map(|c| {
                let mut values: Vec<f64> = draws.iter().map(|d| d[c]).collect();
                percentile_interval(&mut values, self.opts.confidence)
            })
            .collect();
        Ok(Some(intervals))
    }

    fn one_resample(&self, spec: &MetricSpec, rows: &[usize]) -> Result<Vec<f64>, MetricError> {
        let (na, nb) = (self.a.len(), self.b.len());
        let a: Vec<Prepared> = self
            .a
            .iter()
            .map(|l| l.resampled(spec, rows, &self.plan))
            .collect::<Result<_, _>>()?;
        let mut values = vec![0.0; na * nb];
        for (j, layer_b) in self.b.iter().enumerate() {
            let own;
            let resampled_b = if self.same {
                &a[j]
            } else {
                own = layer_b.resampled(spec, rows, &self.plan)?;
                &own
            };
            for (i, layer_a) in a.iter().enumerate() {
                values[i * nb + j] = pair_value(spec, layer_a, resampled_b, None)?;
            }
        }
        Ok(values)
    }
}

/// Builds the centred linear Gram matrix of every layer the way a
/// linear-CKA grid in Gram form does (layers in parallel, one BLAS thread
/// each) and returns each layer's `⟨K_c, K_c⟩_F`. Benchmarks time this
/// stage against the machine's GEMM rate.
pub fn gram_stage(layers: &[Representation]) -> Vec<f64> {
    let _blas = SingleThreadedBlas::new();
    layers
        .par_iter()
        .map(|r| {
            crate::metrics::cka::CentredKernel::linear(
                r.data.view(),
                crate::metrics::cka::KernelForm::Gram,
            )
            .self_dot()
        })
        .collect()
}
