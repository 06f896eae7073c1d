//! Rule files tests share.

/// One rule and none of the default policy: ChannelFilling (warning) fires as soon as a
/// channel is 80 % full. For tests about what happens once an alert fires, where the default
/// rules' hold-downs and staleness checks would only add noise.
pub const FILLING_ONLY: &str = r#"
use_defaults = false
[[rule]]
name = "ChannelFilling"
severity = "warning"
kinds = ["channel"]
condition = { value = "ChannelFillPercentage", op = ">=", threshold = 80 }
"#;
