//! `flumewatch-aggregator`: parse flags, validate, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use flumewatch_aggregator::{config::Cli, Mode};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let reload_cli = cli.clone();
    let (log_format, log_level) = (cli.log_format.clone(), cli.log_level.clone());
    let mode = match cli.load() {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("flumewatch-aggregator: {e}");
            return ExitCode::from(64);
        }
    };
    if let Mode::CheckConfig(files, poll_interval) = &mode {
        return match flumewatch_aggregator::check::check_config(files, *poll_interval) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flumewatch-aggregator: {e}");
                ExitCode::from(64)
            }
        };
    }
    // Held to the end of main: dropping it flushes the log queue (bounded, see its docs).
    let _log_guard = match flumewatch_process::init_logging(
        &log_format,
        log_level.as_deref(),
        "info",
        flumewatch_process::LOG_QUEUE_LINES,
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("flumewatch-aggregator: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flumewatch-aggregator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        let shutdown = flumewatch_process::shutdown_on_signal();
        match mode {
            Mode::Serve(config) => {
                // Reloads read the same files with the same flags as this start did.
                let source: flumewatch_aggregator::reload::ConfigSource =
                    Arc::new(move || match reload_cli.clone().load()? {
                        Mode::Serve(config) => Ok(*config),
                        _ => unreachable!("the same flags load the same mode"),
                    });
                let aggregator = flumewatch_aggregator::Aggregator::bind(*config)
                    .await?
                    .with_config_source(source);
                let reloader = aggregator.reloader();
                tokio::spawn(async move {
                    let Ok(mut hangups) =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    else {
                        return;
                    };
                    while hangups.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the configuration");
                        let reloader = reloader.clone();
                        let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                    }
                });
                aggregator.run(shutdown).await?
            }
            Mode::CheckConfig(..) => unreachable!("handled before the runtime starts"),
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flumewatch-aggregator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
