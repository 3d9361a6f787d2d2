//! Issue 17: see `c0re/forge.rs`.
