//! Control of OpenBLAS's own thread pool during a grid.
//!
//! The grid runs layers and pairs on rayon's threads, one per core. If each
//! of those calls OpenBLAS and OpenBLAS starts its own threads as well, the
//! cores are oversubscribed: on 2 cores the PWCCA and `cca_mean_sq` grids
//! took 2.4 and 5 times longer (OpenBLAS 0.3.21, n = 256,
//! `cargo bench --bench grid`, other jobs running). While a
//! [`SingleThreadedBlas`] guard lives, OpenBLAS uses one thread per call.

use std::os::raw::c_int;

// Exported by libopenblas, which ndarray-linalg's `openblas-system`
// feature links.
extern "C" {
    fn openblas_get_num_threads() -> c_int;
    fn openblas_set_num_threads(num_threads: c_int);
}

/// Sets OpenBLAS to one thread and restores the previous count on drop.
pub(crate) struct SingleThreadedBlas {
    previous: c_int,
}

impl SingleThreadedBlas {
    /// Switches OpenBLAS to one thread, unless rayon itself has only one,
    /// in which case BLAS keeps its threads.
    pub(crate) fn new() -> Option<Self> {
        if rayon::current_num_threads() <= 1 {
            return None;
        }
        // SAFETY: both functions only read or write OpenBLAS's global
        // thread count; no BLAS call is in flight on this thread.
        let previous = unsafe { openblas_get_num_threads() };
        unsafe { openblas_set_num_threads(1) };
        Some(SingleThreadedBlas { previous })
    }
}

impl Drop for SingleThreadedBlas {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { openblas_set_num_threads(self.previous) };
    }
}
