//! The daemon's log when stderr is not a terminal (a file, a pipe, a
//! journal): plain text, no ANSI colour sequences.

mod common;

use common::{Daemon, Netns, root_or_skip};

#[test]
fn log_to_a_file_has_no_colour_codes() {
    if !root_or_skip("log_to_a_file_has_no_colour_codes") {
        return;
    }
    let ns = Netns::new();
    let mut daemon = Daemon::start(&ns);
    assert!(daemon.terminate(), "clean exit");
    let log = daemon.log_text();
    assert!(log.contains("ovpnd: listening"), "log:\n{log}");
    assert!(log.contains("ovpnd: stopped"), "log:\n{log}");
    // Every level and field would be wrapped in ESC [ ... m with colour on.
    assert!(!log.contains('\u{1b}'), "escape sequences in:\n{log:?}");
}
