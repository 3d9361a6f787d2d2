//! Matrix glue: the appservice's client (ruma requests with identity assertion), message
//! rendering, and the shapes of the events the core reads.

pub mod client;
pub mod markdown;

pub use client::{AsClient, MatrixError};
