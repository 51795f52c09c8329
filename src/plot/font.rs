//! The embedded font that every figure uses.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

use super::PlotError;

/// Font family name under which DejaVu Sans is registered; plotters resolves
/// `FontFamily::SansSerif` to this name.
pub(super) const FAMILY: &str = "sans-serif";

/// Registers DejaVu Sans (regular and bold) as `sans-serif`, once per process.
///
/// Plotters is built without system font lookup, so text renders only with
/// fonts registered here.
pub(super) fn ensure_registered() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        let regular = register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular());
        let bold = register_font(FAMILY, FontStyle::Bold, dejavu::sans::bold());
        regular.is_ok() && bold.is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}
