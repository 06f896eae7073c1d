//! `flumewatch-demo`: the README's first command. A fleet on loopback — simulated Flume agents,
//! real sidecars, the real aggregator and a local DingTalk robot — and a table of what the
//! aggregator sees. `--for DURATION` stops it after that long; every other flag is the
//! aggregator's (`--language en`, `--config FILE` with a real robot, `--grpc-listen`, …).

use std::process::ExitCode;

use clap::Parser;
use flumewatch_aggregator::config::Cli;

/// Splits `--for DURATION` (or `--for=DURATION`) off the aggregator's own flags.
fn split_run_for(args: Vec<String>) -> (Option<String>, Vec<String>) {
    let mut run_for = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--for" {
            run_for = args.next();
        } else if let Some(value) = arg.strip_prefix("--for=") {
            run_for = Some(value.to_owned());
        } else {
            rest.push(arg);
        }
    }
    (run_for, rest)
}

fn main() -> ExitCode {
    let (run_for, args) = split_run_for(std::env::args().collect());
    let run_for = match run_for
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
    {
        Ok(run_for) => run_for,
        Err(e) => {
            eprintln!("flumewatch-demo: invalid `for`: {e}");
            return ExitCode::from(64);
        }
    };
    let cli = Cli::parse_from(args);
    let (log_format, log_level) = (cli.log_format.clone(), cli.log_level.clone());
    let (raw, throwaway) = match cli.merge() {
        Ok(raw) => flumewatch_e2e::demo::with_demo_defaults(raw),
        Err(e) => {
            eprintln!("flumewatch-demo: {e}");
            return ExitCode::from(64);
        }
    };
    let config = match raw.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flumewatch-demo: {e}");
            return ExitCode::from(64);
        }
    };
    // Held to the end of main: dropping it flushes the log queue (bounded, see its docs).
    let _log_guard = match flumewatch_process::init_logging(
        &log_format,
        log_level.as_deref(),
        "warn",
        flumewatch_process::LOG_QUEUE_LINES,
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("flumewatch-demo: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flumewatch-demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = flumewatch_process::shutdown_on_signal();
        flumewatch_e2e::demo::run(config, run_for, shutdown).await
    });
    drop(runtime);
    if let Some(dir) = throwaway {
        let _ = std::fs::remove_dir_all(dir);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flumewatch-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
