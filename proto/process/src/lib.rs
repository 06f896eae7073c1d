//! Process plumbing both binaries share and neither owns: the root shutdown signal, logging
//! set-up and config-file error text. Not part of the contract (that is `flumewatch-proto`); it
//! sits beside it because the workspace's top level is fixed.

mod logging;
mod signal;
mod toml_error;

pub use logging::{init_logging, LogError};
pub use signal::{shutdown_on_signal, shutdown_signal};
pub use toml_error::describe_toml_error;
