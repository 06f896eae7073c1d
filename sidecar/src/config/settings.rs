//! Every setting, declared once: the clap [`Cli`] and the serde [`FileConfig`] are generated from
//! one list, and so is the flag-over-file merge of the settings they share.
//!
//! The flag names, `FLUMEWATCH_TOKEN`, the file keys, the `--help` text and order and the order
//! of keys in "unknown field" errors are a contract with operators' scripts: each comes from
//! exactly the attributes, names and order written here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

/// Declares [`Cli`] and [`FileConfig`] from one list of fields, keeping the order of each:
///
/// - `both NAME: T`: an `Option<T>` flag (with the attributes given) and an `Option<T>` file key
///   of the same name; [`Cli::overlay_shared`] moves the flag over the file's value;
/// - `cli NAME: T` / `file NAME: T`: a field of one struct only, attributes and type as given
///   (used where the two differ: `--label` / `labels`, a repeatable `--flume` and
///   `--aggregator`, the token).
macro_rules! settings {
    (
        $(#[$cli_attr:meta])* pub struct Cli;
        $(#[$file_attr:meta])* pub struct FileConfig;
        $($fields:tt)*
    ) => {
        settings!(@munch [$(#[$cli_attr])*] [$(#[$file_attr])*] [] [] [] $($fields)*);
    };
    (@munch $cli_attrs:tt $file_attrs:tt [$($cli:tt)*] [$($file:tt)*] [$($both:ident)*]
        $(#[$attr:meta])* both $name:ident: $ty:ty, $($rest:tt)*
    ) => {
        settings!(@munch $cli_attrs $file_attrs
            [$($cli)* $(#[$attr])* pub $name: Option<$ty>,]
            [$($file)* pub $name: Option<$ty>,]
            [$($both)* $name]
            $($rest)*);
    };
    (@munch $cli_attrs:tt $file_attrs:tt [$($cli:tt)*] $file:tt $both:tt
        $(#[$attr:meta])* cli $name:ident: $ty:ty, $($rest:tt)*
    ) => {
        settings!(@munch $cli_attrs $file_attrs [$($cli)* $(#[$attr])* pub $name: $ty,] $file $both $($rest)*);
    };
    (@munch $cli_attrs:tt $file_attrs:tt $cli:tt [$($file:tt)*] $both:tt
        $(#[$attr:meta])* file $name:ident: $ty:ty, $($rest:tt)*
    ) => {
        settings!(@munch $cli_attrs $file_attrs $cli [$($file)* $(#[$attr])* pub $name: $ty,] $both $($rest)*);
    };
    (@munch [$($cli_attr:tt)*] [$($file_attr:tt)*] [$($cli:tt)*] [$($file:tt)*] [$($both:ident)*]) => {
        $($cli_attr)*
        pub struct Cli { $($cli)* }

        $($file_attr)*
        pub struct FileConfig { $($file)* }

        impl Cli {
            /// Every setting the flags share with the file: a flag given replaces the file's value.
            pub(super) fn overlay_shared(&mut self, file: &mut FileConfig) {
                $(
                    if self.$both.is_some() {
                        file.$both = self.$both.take();
                    }
                )*
            }
        }
    };
}

settings! {
    /// Command line of `flumewatch-sidecar`. Every flag can also be set in the `--config` file
    /// (same name, with `_` for `-`); a flag given here wins.
    #[derive(Debug, Default, Parser)]
    #[command(
        name = "flumewatch-sidecar",
        version,
        about = "Polls the Flume agents on this host and streams typed snapshots to every flumewatch aggregator given"
    )]
    pub struct Cli;

    /// The `--config` file; unknown keys are rejected.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FileConfig;

    /// TOML file with any of the settings below.
    #[arg(long, value_name = "FILE")]
    cli config: Option<PathBuf>,
    /// gRPC address of an aggregator (repeatable: each one gets every snapshot over its own
    /// stream, with its own buffer and replay window) [default: http://127.0.0.1:50051].
    #[arg(long = "aggregator", value_name = "http://HOST:PORT")]
    cli aggregator: Vec<String>,
    /// The file's `aggregator`: one address or a list of them.
    #[serde(rename = "aggregator", default, deserialize_with = "super::targets::one_or_many")]
    file aggregators: Option<Vec<String>>,
    /// A Flume agent's metrics endpoint (plain http://, as Flume serves it), optionally named
    /// (repeatable). The name defaults to "flume-PORT" [default: http://127.0.0.1:41414/metrics].
    #[arg(long = "flume", value_name = "[NAME=]URL")]
    cli flume: Vec<String>,
    file flume: Option<Vec<String>>,
    /// Also poll the Flume agents running on this host, found from their command lines in /proc
    /// (-Dflume.monitoring.type=http, -Dflume.monitoring.port, -n NAME) at
    /// http://127.0.0.1:PORT/metrics; a --flume entry for that port keeps its name, and a name
    /// already taken becomes NAME-PORT.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    both discover: bool,
    /// How often the process table is scanned again for new agents; one that exits keeps being
    /// polled (and is reported down) until the sidecar restarts [default: 30s].
    #[arg(long, value_name = "DURATION")]
    both discover_interval: String,
    /// How often each agent is polled [default: 10s].
    #[arg(long, value_name = "DURATION")]
    both interval: String,
    /// Host name reported for these agents [default: this machine's hostname].
    #[arg(long, value_name = "NAME")]
    both host: String,
    /// Label attached to every agent, e.g. cluster=bj-log or env=prod (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    cli label: Vec<String>,
    file labels: Option<BTreeMap<String, String>>,
    /// Per-poll timeout; must be shorter than the interval [default: 3s, or half the interval].
    #[arg(long, value_name = "DURATION")]
    both timeout: String,
    /// Largest metrics body accepted, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    both max_body_bytes: usize,
    /// Snapshots kept while an aggregator has not acknowledged them, per aggregator; older ones
    /// are dropped (and counted) beyond this [default: 2000].
    #[arg(long, value_name = "N")]
    both buffer: usize,
    /// How long acknowledged snapshots are kept (within --buffer) to replay to an aggregator
    /// that restarted and lost them; 0s turns it off [default: 2m].
    #[arg(long, value_name = "DURATION")]
    both replay_window: String,
    /// First reconnect delay after losing an aggregator [default: 500ms].
    #[arg(long, value_name = "DURATION")]
    both reconnect_min: String,
    /// Longest reconnect delay (the backoff doubles up to this, with jitter) [default: 30s].
    #[arg(long, value_name = "DURATION")]
    both reconnect_max: String,
    /// Log format: text (default, for people) or json (for log collectors).
    #[arg(long, value_name = "text|json", default_value = "text")]
    cli log_format: String,
    /// Log level or filter, e.g. info or debug [default: info, or RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    cli log_level: Option<String>,
    /// The token the aggregator enrolled this sidecar with (or FLUMEWATCH_TOKEN).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FLUMEWATCH_TOKEN",
        hide_env_values = true
    )]
    cli token: Option<String>,
    /// A file holding that token.
    #[arg(long, value_name = "FILE")]
    both token_file: PathBuf,
    /// PEM CA that signed the aggregator's certificate (use an https:// --aggregator).
    #[arg(long, value_name = "FILE")]
    both tls_ca: PathBuf,
    /// PEM client certificate for mTLS (with --tls-key).
    #[arg(long, value_name = "FILE")]
    both tls_cert: PathBuf,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    both tls_key: PathBuf,
    /// From the command line or FLUMEWATCH_TOKEN only (never in a config file).
    #[serde(skip)]
    file token: Option<String>,
}
