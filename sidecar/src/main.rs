//! `flumewatch-sidecar`: parse flags, validate, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flumewatch_sidecar::config::Cli::parse();
    let (log_format, log_level) = (cli.log_format.clone(), cli.log_level.clone());
    let config = match cli.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flumewatch-sidecar: {e}");
            return ExitCode::from(64);
        }
    };
    // Held to the end of main: dropping it flushes the log queue (bounded, see its docs).
    let _log_guard = match flumewatch_process::init_logging(
        &log_format,
        log_level.as_deref(),
        "info",
        flumewatch_sidecar::LOG_QUEUE_LINES,
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("flumewatch-sidecar: {e}");
            return ExitCode::from(64);
        }
    };
    // One thread: a sidecar polls a handful of agents; a second thread (and its malloc arena)
    // would only cost memory on the Flume host.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flumewatch-sidecar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        let shutdown = flumewatch_process::shutdown_on_signal();
        flumewatch_sidecar::run(config, shutdown).await?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flumewatch-sidecar: {e:#}");
            ExitCode::FAILURE
        }
    }
}
