//! repatlas: representational similarity analysis of neural networks.
//!
//! The pipeline has four stages, each a module:
//!
//! - [`capture`] runs a pretrained model over a stimulus set and stores the
//!   hidden state of every layer in a run directory.
//! - [`metrics`] compares two representations (matrices whose rows are
//!   stimuli) with CKA, RSA, Procrustes, CCA-family and neighbourhood
//!   measures, and computes all-layers grids with statistics.
//! - [`results`] holds the tidy rows of a comparison and writes them as
//!   parquet or JSON lines; [`plot`] draws heatmaps and best-match curves
//!   from them.
//! - [`npy`] reads plain NumPy matrices, so captures made elsewhere can be
//!   compared.

pub mod capture;
pub mod compare;
pub mod demo;
pub mod intervene;
pub mod metrics;
pub mod npy;
pub mod plot;
pub mod results;
pub mod stimuli;

/// The crate version, recorded in every run manifest.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
