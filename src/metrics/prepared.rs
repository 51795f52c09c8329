//! Per-layer preparation and per-pair evaluation, the two halves of every
//! measure.
//!
//! [`prepare`] turns one representation into what the measure reuses for
//! every pair (a centred Gram, a ranked RDM, an orthonormal basis, neighbour
//! lists). [`pair_value`] combines two prepared layers. Permutation tests
//! and bootstrap resamples reorder or resample a prepared layer directly
//! where that is exact, and otherwise prepare the reordered rows again.

use ndarray::ArrayView2;

use super::cca::SubspaceLayer;
use super::cka::{gram_crosses, streamed_crosses, BatchedKernel, CentredKernel, KernelForm};
use super::knn::NeighbourLayer;
use super::linalg::blocked_dots;
use super::linalg::select_rows;
use super::procrustes::ShapeLayer;
use super::rsa::RdmLayer;
use super::spec::{Measure, MetricSpec};
use super::MetricError;

/// Default cap on the memory that centred Gram matrices of all layers of a
/// grid may take before the linear kernels switch to the feature form.
pub const DEFAULT_GRAM_MEMORY_LIMIT: usize = 4 << 30;

/// How linear-kernel measures (`linear_cka`, `linear_cka_debiased`) keep
/// each layer. Both forms give the same values up to rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinearKernelForm {
    /// Pick by estimated cost and the Gram memory limit.
    #[default]
    Auto,
    /// The centred n x n Gram matrix of each layer.
    Gram,
    /// The centred n x d features of each layer.
    Features,
    /// Every pair's Gram product formed from tiles of the Grams, so that no
    /// whole Gram is held. A grid of observed values only keeps each
    /// layer's column means and centres the tiles' rows as it reads them.
    /// With permutations or resamples it keeps the centred features.
    /// Cheaper than `Features` when `n` is below about
    /// `Σd_a · Σd_b / (Σd_a + Σd_b)`; permutations and resamples use the
    /// feature form.
    Streamed,
}

impl From<KernelForm> for LinearKernelForm {
    fn from(form: KernelForm) -> Self {
        match form {
            KernelForm::Gram => LinearKernelForm::Gram,
            KernelForm::Features => LinearKernelForm::Features,
            KernelForm::Streamed | KernelForm::StreamedFromRows => LinearKernelForm::Streamed,
        }
    }
}

/// Choices made once per grid that the per-layer preparation follows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub kernel_form: KernelForm,
}

impl Plan {
    /// Picks the cheaper form for linear kernels: Grams cost `n²d` per layer
    /// and `n²` per evaluation of a pair, features cost `n·d_x·d_y` per
    /// evaluation. `evaluations` counts the observed value plus every
    /// permutation and bootstrap resample. Grams are never chosen when all
    /// layers' Grams together would exceed `gram_memory_limit` bytes; then
    /// streamed Grams cost `n²d` per layer for the observed values. A grid
    /// of observed values only streams whenever that beats the features.
    pub(crate) fn for_pairs(
        n: usize,
        dims_a: &[usize],
        dims_b: &[usize],
        evaluations: usize,
        gram_memory_limit: usize,
        requested: LinearKernelForm,
    ) -> Plan {
        match requested {
            LinearKernelForm::Gram => {
                return Plan {
                    kernel_form: KernelForm::Gram,
                }
            }
            LinearKernelForm::Features => {
                return Plan {
                    kernel_form: KernelForm::Features,
                }
            }
            LinearKernelForm::Streamed => {
                return Plan {
                    kernel_form: streamed(evaluations),
                }
            }
            LinearKernelForm::Auto => {}
        }
        let n = n as f64;
        let sum_a: f64 = dims_a.iter().map(|&d| d as f64).sum();
        let sum_b: f64 = dims_b.iter().map(|&d| d as f64).sum();
        let squares: f64 = dims_a.iter().chain(dims_b).map(|&d| (d * d) as f64).sum();
        let pairs = (dims_a.len() * dims_b.len()) as f64;
        let evaluations = evaluations.max(1) as f64;
        let gram_cost = n * n * (sum_a + sum_b) + pairs * n * n * evaluations;
        let feature_cost = n * squares + n * sum_a * sum_b * evaluations;
        // Streaming forms the upper-triangle tiles once for the observed
        // values; permutations and resamples then use the features.
        let streamed_cost =
            n * n * (sum_a + sum_b + pairs) + n * sum_a * sum_b * (evaluations - 1.0);
        let gram_bytes = (dims_a.len() + dims_b.len()) as f64 * n * n * 8.0;
        // Measured on the benchmark grid (docs/benchmarks.md): with only the
        // observed values wanted, streaming beats whole Grams at every size
        // from 512 stimuli on and ties below. It keeps no Gram and no
        // centred copy of the layers.
        let stream_first = evaluations == 1.0;
        let kernel_form = if stream_first && streamed_cost <= feature_cost {
            KernelForm::StreamedFromRows
        } else if gram_bytes <= gram_memory_limit as f64 && gram_cost <= feature_cost {
            KernelForm::Gram
        } else if streamed_cost < feature_cost {
            streamed(evaluations as usize)
        } else {
            KernelForm::Features
        };
        Plan { kernel_form }
    }
}

/// Returns the streamed form for a grid of `evaluations` per pair: one of
/// observed values only streams from the layers' rows and keeps no centred
/// copy, while permutations and resamples need the centred features.
fn streamed(evaluations: usize) -> KernelForm {
    if evaluations <= 1 {
        KernelForm::StreamedFromRows
    } else {
        KernelForm::Streamed
    }
}

#[derive(Clone, Debug)]
enum Form {
    Kernel(CentredKernel),
    Batched(BatchedKernel),
    Rdm(RdmLayer),
    Shape(ShapeLayer),
    Subspace(SubspaceLayer),
    Neighbours(NeighbourLayer),
}

/// One layer prepared for one measure.
#[derive(Clone, Debug)]
pub(crate) struct Prepared<'a> {
    name: String,
    /// The input rows, kept by the measures that rebuild from data on
    /// permutation or resampling; `None` for derived (resampled) layers.
    source: Option<ArrayView2<'a, f64>>,
    form: Form,
}

/// Returns a key shared by measures that can use the same prepared layers.
pub(crate) fn preparation_key(spec: &MetricSpec) -> String {
    match spec.measure() {
        Measure::LinearCka | Measure::LinearCkaDebiased => "kernel:linear".to_string(),
        Measure::RbfCka { f } | Measure::RbfCkaDebiased { f } => format!("kernel:rbf:{f:?}"),
        Measure::ProcrustesAngular | Measure::ProcrustesEuclidean => "shape".to_string(),
        Measure::MutualKnn { k } | Measure::Cknna { k } => format!("neighbours:{k}"),
        _ => spec.to_string(),
    }
}

/// Prepares the representation `x`, named `name` in errors, for `spec`.
pub(crate) fn prepare<'a>(
    spec: &MetricSpec,
    name: &str,
    x: ArrayView2<'a, f64>,
    plan: &Plan,
) -> Result<Prepared<'a>, MetricError> {
    let form = build(spec, name, x, plan)?;
    Ok(Prepared {
        name: name.to_string(),
        source: Some(x),
        form,
    })
}

fn build(
    spec: &MetricSpec,
    name: &str,
    x: ArrayView2<f64>,
    plan: &Plan,
) -> Result<Form, MetricError> {
    let metric = spec.to_string();
    let form = match spec.measure() {
        Measure::LinearCka | Measure::LinearCkaDebiased => {
            Form::Kernel(CentredKernel::linear(x, plan.kernel_form))
        }
        Measure::RbfCka { f } | Measure::RbfCkaDebiased { f } => {
            Form::Kernel(CentredKernel::rbf(x, *f, name, &metric)?)
        }
        Measure::MinibatchCka { batch } => {
            Form::Batched(BatchedKernel::new(x, *batch, name, &metric)?)
        }
        Measure::Rsa { rdm, compare } => {
            Form::Rdm(RdmLayer::new(x, *rdm, *compare, name, &metric)?)
        }
        Measure::ProcrustesAngular | Measure::ProcrustesEuclidean => {
            Form::Shape(ShapeLayer::new(x, name)?)
        }
        Measure::Svcca { keep } => Form::Subspace(SubspaceLayer::svcca(x, *keep, name, &metric)?),
        Measure::Pwcca => Form::Subspace(SubspaceLayer::raw(x, true, name)?),
        Measure::CcaMeanSq => Form::Subspace(SubspaceLayer::raw(x, false, name)?),
        Measure::MutualKnn { k } | Measure::Cknna { k } => {
            Form::Neighbours(NeighbourLayer::new(x, *k, name, &metric)?)
        }
    };
    Ok(form)
}

impl<'a> Prepared<'a> {
    /// Returns the layer with its stimuli reordered by `p`.
    pub(crate) fn permuted(
        &self,
        spec: &MetricSpec,
        p: &[usize],
        plan: &Plan,
    ) -> Result<Prepared<'a>, MetricError> {
        let form = match &self.form {
            Form::Kernel(k) => Form::Kernel(k.permuted(p)),
            Form::Rdm(r) => Form::Rdm(r.permuted(p)),
            Form::Shape(s) => Form::Shape(s.permuted(p)),
            Form::Subspace(s) => Form::Subspace(s.permuted(p)),
            Form::Neighbours(nb) => Form::Neighbours(nb.permuted(p)),
            // Batch membership changes with the order, so rebuild.
            Form::Batched(_) => {
                build(spec, &self.name, select_rows(self.source(), p).view(), plan)?
            }
        };
        Ok(self.derived(form))
    }

    /// Returns the layer of the bootstrap resample `rows` (repeats allowed).
    pub(crate) fn resampled(
        &self,
        spec: &MetricSpec,
        rows: &[usize],
        plan: &Plan,
    ) -> Result<Prepared<'a>, MetricError> {
        let metric = spec.to_string();
        let form = match (&self.form, spec.measure()) {
            (Form::Kernel(k), _) => Form::Kernel(k.resampled(rows)),
            (Form::Rdm(r), Measure::Rsa { compare, .. }) => {
                Form::Rdm(r.resampled(rows, *compare, &self.name, &metric)?)
            }
            (Form::Shape(s), _) => Form::Shape(s.resampled(rows, &self.name)?),
            _ => build(
                spec,
                &self.name,
                select_rows(self.source(), rows).view(),
                plan,
            )?,
        };
        Ok(self.derived(form))
    }

    /// Returns the basis dimension of a CCA-family layer, `None` for the
    /// other measures.
    pub(crate) fn subspace_dimension(&self) -> Option<usize> {
        match &self.form {
            Form::Subspace(s) => Some(s.dimension()),
            _ => None,
        }
    }

    fn source(&self) -> ArrayView2<'a, f64> {
        self.source
            .expect("only layers prepared from data are permuted or resampled")
    }

    fn derived(&self, form: Form) -> Prepared<'a> {
        Prepared {
            name: self.name.clone(),
            source: None,
            form,
        }
    }
}

/// Returns the inner product behind every pair's value (row-major, `a` by
/// `b`) from one blocked pass over the layers: `⟨K_i, L_j⟩_F` for Gram-form
/// and streamed kernels, the dot product of standardised or centred-rank RDM vectors
/// for Pearson, cosine and Spearman RSA. None for every other form.
pub(crate) fn pair_dots(a: &[Prepared], b: &[Prepared], plan: &Plan) -> Option<Vec<f64>> {
    fn kernels<'p>(layers: &'p [Prepared]) -> Option<Vec<&'p CentredKernel>> {
        layers
            .iter()
            .map(|l| match &l.form {
                Form::Kernel(k) => Some(k),
                _ => None,
            })
            .collect()
    }
    fn with_rows<'p>(
        layers: &'p [Prepared],
    ) -> Option<Vec<(&'p CentredKernel, ArrayView2<'p, f64>)>> {
        layers
            .iter()
            .map(|l| match &l.form {
                Form::Kernel(k) => Some((k, l.source?)),
                _ => None,
            })
            .collect()
    }
    fn rdm_vectors<'p>(layers: &'p [Prepared]) -> Option<Vec<&'p [f64]>> {
        layers
            .iter()
            .map(|l| match &l.form {
                Form::Rdm(r) => r.dot_vector(),
                _ => None,
            })
            .collect()
    }
    let streamed = matches!(
        plan.kernel_form,
        KernelForm::Streamed | KernelForm::StreamedFromRows
    );
    let dots = match (kernels(a), kernels(b)) {
        (Some(grams_a), Some(grams_b)) if streamed => {
            let same =
                a.len() == b.len() && std::ptr::eq(a.as_ptr().cast::<()>(), b.as_ptr().cast());
            let (ka, kb) = (with_rows(a)?, with_rows(b)?);
            // RBF kernels are Grams whatever the plan for linear ones.
            streamed_crosses(&ka, (!same).then_some(&kb[..]))
                .or_else(|| gram_crosses(&grams_a, &grams_b))?
        }
        (Some(ka), Some(kb)) => gram_crosses(&ka, &kb)?,
        _ => blocked_dots(&rdm_vectors(a)?, &rdm_vectors(b)?)?,
    };
    Some(dots.into_iter().collect())
}

/// Evaluates `spec` on two layers prepared for it. `cross` is the pair's
/// inner product when [`pair_dots`] has computed it.
pub(crate) fn pair_value(
    spec: &MetricSpec,
    a: &Prepared,
    b: &Prepared,
    cross: Option<f64>,
) -> Result<f64, MetricError> {
    let value = match (&a.form, &b.form) {
        (Form::Kernel(ka), Form::Kernel(kb)) => {
            let cross = cross.unwrap_or_else(|| ka.cross(kb));
            match spec.measure() {
                Measure::LinearCkaDebiased | Measure::RbfCkaDebiased { .. } => {
                    let self_a = positive_self_hsic(spec, a, ka.self_hsic_unbiased())?;
                    let self_b = positive_self_hsic(spec, b, kb.self_hsic_unbiased())?;
                    ka.hsic_unbiased_from_cross(kb, cross) / (self_a * self_b).sqrt()
                }
                _ => ka.cka_from_cross(kb, cross),
            }
        }
        (Form::Batched(ba), Form::Batched(bb)) => ba.cka(bb),
        (Form::Rdm(ra), Form::Rdm(rb)) => match cross {
            Some(dot) => ra.compare_from_dot(dot),
            None => ra.compare(rb),
        },
        (Form::Shape(sa), Form::Shape(sb)) => match spec.measure() {
            Measure::ProcrustesEuclidean => sa.euclidean(sb, &a.name)?,
            _ => sa.angular(sb, &a.name)?,
        },
        (Form::Subspace(sa), Form::Subspace(sb)) => match spec.measure() {
            Measure::Pwcca => sa.pwcca(sb, &a.name)?,
            Measure::CcaMeanSq => {
                let rho = sa.correlations(sb, &a.name)?;
                rho.mapv(|r| r * r).mean().unwrap_or(f64::NAN)
            }
            _ => sa.correlations(sb, &a.name)?.mean().unwrap_or(f64::NAN),
        },
        (Form::Neighbours(na), Form::Neighbours(nb)) => match spec.measure() {
            Measure::Cknna { .. } => na.cknna(nb).ok_or_else(|| {
                let (layer, value) = if na.self_hsic() <= 0.0 {
                    (&a.name, na.self_hsic())
                } else {
                    (&b.name, nb.self_hsic())
                };
                MetricError::Undefined {
                    metric: spec.to_string(),
                    layer: layer.clone(),
                    reason: format!(
                        "its unbiased HSIC with itself on its k-neighbourhoods is {value:e}, \
                         not positive; use a larger k or mutual_knn"
                    ),
                }
            })?,
            _ => na.mutual_knn(nb),
        },
        _ => unreachable!("both layers are prepared for the same measure"),
    };
    Ok(value)
}

fn positive_self_hsic(spec: &MetricSpec, layer: &Prepared, value: f64) -> Result<f64, MetricError> {
    if value > 0.0 && value.is_finite() {
        return Ok(value);
    }
    Err(MetricError::Undefined {
        metric: spec.to_string(),
        layer: layer.name.clone(),
        reason: format!(
            "its unbiased HSIC with itself is {value:e}, not positive (too few stimuli or \
             a nearly constant representation); use linear_cka or more stimuli"
        ),
    })
}
