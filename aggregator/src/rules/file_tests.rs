//! Rule-file validation: every mistake names the key path and says what is wrong.

use super::*;

fn error(text: &str) -> RuleError {
    match parse("rules.toml", text) {
        Ok(_) => panic!("should be rejected:\n{text}"),
        Err(e) => e,
    }
}

const GOOD: &str = r#"
[[rule]]
name = "Fill"
severity = "warning"
kinds = ["channel"]
for = "2m"
condition = { all = [ { value = "ChannelFillPercentage", op = ">=", threshold = 80 } ] }
summary = { zh = "{component} {value}%" }
"#;

#[test]
fn a_good_rule_parses() {
    let parsed = parse("rules.toml", GOOD).expect("valid");
    assert_eq!(parsed.rules.len(), 1);
    assert_eq!(parsed.rules[0].hold.for_, Duration::from_secs(120));
    assert_eq!(
        parsed.rules[0].condition.to_string(),
        "(ChannelFillPercentage >= 80)"
    );
}

#[test]
fn unknown_key() {
    let e = error(&GOOD.replace("for = \"2m\"", "fro = \"2m\""));
    assert_eq!(e.path, "rule[0].fro");
    assert!(e.reason.contains("unknown field `fro`"), "{e}");
    let e = error(&GOOD.replace("op = \">=\"", "op = \">=\", treshold = 1"));
    assert_eq!(e.path, "rule[0].condition.all[0].treshold");
    assert!(e.reason.contains("unknown field `treshold`"), "{e}");
}

#[test]
fn bad_duration() {
    let e = error(&GOOD.replace("\"2m\"", "\"two minutes\""));
    assert_eq!(e.path, "rule[0].for");
    assert!(e.reason.contains("not a duration"), "{e}");
    let e = error(&GOOD.replace(
        "{ value = \"ChannelFillPercentage\"",
        "{ window = \"soon\", increase = \"EventPutSuccessCount\"",
    ));
    assert_eq!(e.path, "rule[0].condition.all[0].window");
}

#[test]
fn unknown_metric_name() {
    let e = error(&GOOD.replace("ChannelFillPercentage", "ChannelFilPercentage"));
    assert_eq!(e.path, "rule[0].condition.all[0].value");
    assert!(
        e.reason.contains("unknown metric \"ChannelFilPercentage\""),
        "{e}"
    );
    assert_eq!(e.to_string().split(':').next(), Some("rules.toml"));
}

#[test]
fn threshold_of_the_wrong_type() {
    let e = error(&GOOD.replace("threshold = 80", "threshold = \"80\""));
    assert_eq!(e.path, "rule[0].condition.all[0].threshold");
    assert!(e.reason.contains("invalid type: string"), "{e}");
}

#[test]
fn policy_mistakes_are_refused() {
    let lifetime = error(&GOOD.replace(
        "value = \"ChannelFillPercentage\"",
        "value = \"EventPutSuccessCount\"",
    ));
    assert!(lifetime.reason.contains("lifetime total"), "{lifetime}");
    let scope = error(&GOOD.replace(
        "value = \"ChannelFillPercentage\"",
        "value = \"failed_polls\"",
    ));
    assert!(scope.reason.contains("agent metric"), "{scope}");
    let window = error(&GOOD.replace(
        "value = \"ChannelFillPercentage\"",
        "increase = \"EventPutSuccessCount\"",
    ));
    assert_eq!(window.path, "rule[0].condition.all[0].window");
    let severity = error(&GOOD.replace("\"warning\"", "\"page\""));
    assert_eq!(severity.path, "rule[0].severity");
    let kinds = error(&GOOD.replace("[\"channel\"]", "[\"chanel\"]"));
    assert_eq!(kinds.path, "rule[0].kinds");
    let placeholder = error(&GOOD.replace("{component}", "{compnent}"));
    assert_eq!(placeholder.path, "rule[0].summary.zh");
    let twice = error(&format!("{GOOD}\n{}", GOOD.trim_start()));
    assert!(twice.reason.contains("defined twice"), "{twice}");
    let both = error(&GOOD.replace(
        "{ value = \"ChannelFillPercentage\", op",
        "{ value = \"ChannelSize\", delta = \"EventPutSuccessCount\", op",
    ));
    assert!(both.reason.contains("exactly one"), "{both}");
}

#[test]
fn syntax_errors_say_where() {
    let e = error("[[rule]\nname = 1\n");
    assert_eq!(e.path, "(syntax)");
    assert!(e.reason.contains("line 1"), "{e}");
}

const TREND: &str = r#"
[[rule]]
name = "Soon"
severity = "warning"
kinds = ["channel"]
condition = { time_to_full = "ChannelSize", window = "1m", op = "<=", threshold = "10m" }

[[rule]]
name = "Stalled"
severity = "critical"
kinds = ["sink"]
condition = { all = [
  { value = "ChannelSize", of = "channel", op = ">", threshold = 0 },
  { slope = "ChannelFillPercentage", of = "channel", window = "30s", op = ">", threshold = 0.5 },
] }
"#;

#[test]
fn trends_and_peers_parse_and_read_back() {
    let parsed = parse("rules.toml", TREND).expect("valid");
    assert_eq!(
        parsed.rules[0].condition.to_string(),
        "time_to_full(ChannelSize[1m]) <= 10m"
    );
    let Condition::Leaf(leaf) = &parsed.rules[0].condition else {
        panic!("a leaf")
    };
    assert_eq!(leaf.threshold, 600.0, "a duration threshold is seconds");
    assert_eq!(
        parsed.rules[1].condition.to_string(),
        "(channel:ChannelSize > 0 and channel:slope(ChannelFillPercentage[30s]) > 0.5)"
    );
}

#[test]
fn trend_mistakes_are_refused() {
    let counter = error(&TREND.replace(
        "time_to_full = \"ChannelSize\"",
        "time_to_full = \"EventPutSuccessCount\"",
    ));
    assert!(counter.reason.contains("lifetime total"), "{counter}");
    let no_level = error(&TREND.replace(
        "time_to_full = \"ChannelSize\"",
        "time_to_full = \"OpenConnectionCount\"",
    ));
    assert_eq!(no_level.path, "rule[0].condition.time_to_full");
    assert!(no_level.reason.contains("no full level"), "{no_level}");
    let no_window = error(&TREND.replace(", window = \"1m\"", ""));
    assert_eq!(no_window.path, "rule[0].condition.window");
    let duration_elsewhere = error(&TREND.replace("threshold = 0.5", "threshold = \"1m\""));
    assert_eq!(
        duration_elsewhere.path,
        "rule[1].condition.all[1].threshold"
    );
    let kind = error(&TREND.replace("of = \"channel\", op", "of = \"pipe\", op"));
    assert_eq!(kind.path, "rule[1].condition.all[0].of");
    let builtin = error(&TREND.replace(
        "{ value = \"ChannelSize\", of = \"channel\"",
        "{ value = \"failed_polls\", of = \"channel\"",
    ));
    assert!(
        builtin.reason.contains("agent metric") || builtin.path.ends_with(".of"),
        "{builtin}"
    );
}
