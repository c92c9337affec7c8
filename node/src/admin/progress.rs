//! Progress bars of long admin commands (`heal`, `site resync`, `top`), on stderr: indicatif
//! draws them only when stderr is a terminal, so scripts and logs see the plain output alone.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often a bar redraws on its own (a spinner turns, the elapsed time moves).
const TICK: Duration = Duration::from_millis(200);

fn styled(bar: ProgressBar, template: &str) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(TICK);
    bar
}

/// A spinner for work of unknown size: `msg` says what was done so far.
pub fn spinner() -> ProgressBar {
    styled(
        ProgressBar::new_spinner(),
        "{spinner} {msg} [{elapsed_precise}]",
    )
}

/// A bar over `len` units (`unit` names them); `msg` says more.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    styled(
        ProgressBar::new(len),
        &format!("[{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} {{msg}}"),
    )
}
