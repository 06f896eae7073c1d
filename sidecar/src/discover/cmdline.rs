//! One process's command line (`/proc/<pid>/cmdline`, NUL-separated) → the Flume agent it runs,
//! if it serves JSON metrics over HTTP. Pure: no I/O, never fails, never panics on garbage.

use super::Discovered;

/// Flume's HTTP metrics port when `flume.monitoring.type` is http and no port is given
/// (`HTTPMetricsServer`'s default).
pub const DEFAULT_MONITORING_PORT: u16 = 41414;

const TYPE_PROPERTY: &str = "-Dflume.monitoring.type=";
const PORT_PROPERTY: &str = "-Dflume.monitoring.port=";
/// Flume resolves the type by enum name (case-insensitively) and otherwise loads it as a class:
/// naming the HTTP server's class is the same as `http`.
const HTTP_SERVER_CLASS: &str = "org.apache.flume.instrumentation.http.HTTPMetricsServer";

/// The agent a command line runs, when it carries `-Dflume.monitoring.type=http`.
///
/// - the port is `-Dflume.monitoring.port=N` (the last one given wins, as for any Java system
///   property), [`DEFAULT_MONITORING_PORT`] without one; a port Flume could not bind (not a
///   number, 0, above 65535) means nothing can be polled: `None`;
/// - the name is flume-ng's `-n NAME`, `--name NAME`, `-n=NAME` or `--name=NAME` (the first one,
///   as Flume's option parser takes it), `agent-PORT` when absent or not a plain name.
pub fn parse(cmdline: &[u8]) -> Option<Discovered> {
    let args: Vec<&str> = cmdline
        .split(|&b| b == 0)
        // An argument that is not UTF-8 cannot be one of the options read here.
        .filter_map(|arg| std::str::from_utf8(arg).ok())
        .collect();
    let property = |prefix: &str| args.iter().rev().find_map(|arg| arg.strip_prefix(prefix));
    let kind = property(TYPE_PROPERTY)?;
    if !(kind.eq_ignore_ascii_case("http") || kind == HTTP_SERVER_CLASS) {
        return None;
    }
    let port = match property(PORT_PROPERTY) {
        None => DEFAULT_MONITORING_PORT,
        Some(text) => text.trim().parse::<u16>().ok().filter(|&p| p != 0)?,
    };
    let name = agent_name(&args)
        .filter(|name| crate::config::is_plain_name(name))
        .map_or_else(|| format!("agent-{port}"), str::to_owned);
    Some(Discovered { name, port })
}

/// flume-ng's agent name option, in any of the forms its option parser accepts.
fn agent_name<'a>(args: &[&'a str]) -> Option<&'a str> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match *arg {
            "-n" | "--name" => {
                // A following option is not a value: `-n -f conf` names nothing.
                return iter.next().copied().filter(|v| !v.starts_with('-'));
            }
            _ => {
                if let Some(value) = arg
                    .strip_prefix("-n=")
                    .or_else(|| arg.strip_prefix("--name="))
                {
                    return Some(value);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `args` as the kernel shows them: each followed by a NUL.
    fn cmdline(args: &[&str]) -> Vec<u8> {
        args.iter()
            .flat_map(|a| [a.as_bytes(), b"\0"])
            .flatten()
            .copied()
            .collect()
    }

    fn found(name: &str, port: u16) -> Option<Discovered> {
        Some(Discovered {
            name: name.to_owned(),
            port,
        })
    }

    /// What `bin/flume-ng agent -n a1 -c conf -f conf/a1.conf -Dflume.monitoring.type=http
    /// -Dflume.monitoring.port=34545` execs (Flume 1.11, JAVA_OPTS from flume-env.sh).
    const FLUME_NG: &[&str] = &[
        "/usr/lib/jvm/java-8-openjdk-amd64/bin/java",
        "-Xms100m",
        "-Xmx2000m",
        "-Dcom.sun.management.jmxremote",
        "-Dflume.monitoring.type=http",
        "-Dflume.monitoring.port=34545",
        "-cp",
        "/opt/flume/conf:/opt/flume/lib/*:/opt/hadoop/etc/hadoop:/opt/hadoop/share/hadoop/common/lib/*",
        "-Djava.library.path=:/opt/hadoop/lib/native",
        "org.apache.flume.node.Application",
        "-n",
        "a1",
        "-f",
        "conf/a1.conf",
    ];

    #[test]
    fn the_command_line_flume_ng_execs() {
        assert_eq!(parse(&cmdline(FLUME_NG)), found("a1", 34545));
    }

    #[test]
    fn long_and_joined_name_options() {
        let with = |name_args: &[&str]| {
            let mut args = FLUME_NG[..10].to_vec();
            args.extend_from_slice(name_args);
            args.extend_from_slice(&["-f", "conf/x.conf"]);
            parse(&cmdline(&args))
        };
        assert_eq!(with(&["--name", "collector"]), found("collector", 34545));
        assert_eq!(with(&["-n=a2"]), found("a2", 34545));
        assert_eq!(with(&["--name=bj.log_1"]), found("bj.log_1", 34545));
        assert_eq!(with(&[]), found("agent-34545", 34545), "no name");
        assert_eq!(with(&["-n"]), found("agent-34545", 34545), "-n last");
        assert_eq!(with(&["-n", "-f"]), found("agent-34545", 34545), "no value");
        assert_eq!(
            with(&["-n", "bad name/../x"]),
            found("agent-34545", 34545),
            "not a plain name"
        );
        assert_eq!(
            with(&["-n", "first", "-n", "second"]),
            found("first", 34545)
        );
    }

    #[test]
    fn type_must_be_http_in_any_case() {
        let with_type = |kind: &str| {
            parse(&cmdline(&[
                "java",
                &format!("-Dflume.monitoring.type={kind}"),
                "-Dflume.monitoring.port=5653",
                "org.apache.flume.node.Application",
                "-n",
                "a1",
            ]))
        };
        assert_eq!(with_type("HTTP"), found("a1", 5653));
        assert_eq!(with_type("Http"), found("a1", 5653));
        assert_eq!(with_type(HTTP_SERVER_CLASS), found("a1", 5653));
        assert_eq!(with_type("ganglia"), None);
        assert_eq!(with_type("httpx"), None);
        assert_eq!(with_type(""), None);
        // A port alone is not an HTTP server: no type, nothing to poll.
        assert_eq!(
            parse(&cmdline(&[
                "java",
                "-Dflume.monitoring.port=5653",
                "-n",
                "a1"
            ])),
            None
        );
    }

    #[test]
    fn missing_port_is_flumes_default() {
        assert_eq!(
            parse(&cmdline(&[
                "java",
                "-Dflume.monitoring.type=http",
                "-n",
                "a1"
            ])),
            found("a1", DEFAULT_MONITORING_PORT)
        );
    }

    #[test]
    fn the_last_property_wins_as_in_java() {
        assert_eq!(
            parse(&cmdline(&[
                "java",
                "-Dflume.monitoring.type=ganglia",
                "-Dflume.monitoring.port=1",
                "-Dflume.monitoring.type=http",
                "-Dflume.monitoring.port=2",
            ])),
            found("agent-2", 2)
        );
    }

    #[test]
    fn ports_flume_could_not_bind_are_not_agents() {
        for port in ["", "0", "65536", "-1", "http", "34545x"] {
            let line = cmdline(&[
                "java",
                "-Dflume.monitoring.type=http",
                &format!("-Dflume.monitoring.port={port}"),
            ]);
            assert_eq!(parse(&line), None, "port {port:?}");
        }
    }

    #[test]
    fn garbage_is_nothing() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"\0\0\0"), None);
        assert_eq!(parse(&[0xff, 0xfe, 0, 0x80]), None);
        assert_eq!(parse(b"-Dflume.monitoring.type"), None);
        // A shell running flume-ng as one string: the flags are not separate arguments.
        assert_eq!(
            parse(&cmdline(&[
                "sh",
                "-c",
                "flume-ng agent -n a1 -Dflume.monitoring.type=http"
            ])),
            None
        );
        // Kernel threads have an empty cmdline; a process may also rewrite its own without NULs.
        assert_eq!(parse(b"java -Dflume.monitoring.type=http -n a1"), None);
        // Invalid UTF-8 next to valid flags does not hide them.
        let mut line = cmdline(&["java", "-Dflume.monitoring.type=http", "-n", "a9"]);
        line.extend_from_slice(&[0xc3, 0x28, 0]);
        assert_eq!(parse(&line), found("a9", DEFAULT_MONITORING_PORT));
    }
}
