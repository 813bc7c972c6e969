//! The subcommands of the `caseledger` binary that need more than a few lines.

pub mod audit;
pub mod projections;
pub mod serve;
