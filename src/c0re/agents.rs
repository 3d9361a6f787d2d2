//! The core's side of its agents.

pub mod supervisor;
