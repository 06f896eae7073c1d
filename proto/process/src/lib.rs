//! Process plumbing both binaries share and neither owns: the root shutdown signal, logging
//! set-up (through a non-blocking writer) and config-file error text. Not part of the contract
//! (that is `flumewatch-proto`); it sits beside it because the workspace's top level is fixed.

mod log_writer;
mod logging;
mod signal;
mod toml_error;

pub use log_writer::{LogGuard, NonBlocking, LOG_QUEUE_LINES};
pub use logging::{init_logging, log_lines_dropped, LogError};
pub use signal::{shutdown_on_signal, shutdown_signal};
pub use toml_error::describe_toml_error;
