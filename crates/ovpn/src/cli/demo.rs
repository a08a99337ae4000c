//! `demo`: two namespaces, two daemons, one tunnel, traffic and statistics.

use super::args::DemoArgs;
use super::{Ctx, Failure};

/// Runs the demo.
pub(crate) fn run(_ctx: &Ctx, _args: &DemoArgs) -> Result<(), Failure> {
    // TODO: the demo lands in the next commit; until then it says so.
    Err(Failure::new("not available in this build yet"))
}
