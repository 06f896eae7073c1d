//! Message layout, mentions, escaping and the size limit.

use std::time::{Duration, UNIX_EPOCH};

use flumewatch_proto::model::ComponentKind;

use super::*;
use crate::alert::{AlertContext, AlertStatus, ChannelFill, ComponentRef, Labels};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000 + secs)
}

/// What the engine would know about channel c1 of agent a1 on `host`, 97% full.
fn channel_context(host: &str) -> AlertContext {
    AlertContext {
        host: Some(host.to_owned()),
        agent: Some("a1".to_owned()),
        component: Some(ComponentRef {
            kind: ComponentKind::Channel,
            kind_name: "CHANNEL".to_owned(),
            name: "c1".to_owned(),
        }),
        peer: None,
        channel: Some(ChannelFill {
            size: 9700.0,
            capacity: 10000.0,
            fill_percent: Some(97.0),
        }),
    }
}

fn alert(host: &str, severity: Severity, status: AlertStatus) -> Alert {
    let labels = Labels(BTreeMap::from([
        ("alertname".to_owned(), "ChannelFilling".to_owned()),
        ("severity".to_owned(), severity.as_str().to_owned()),
        ("cluster".to_owned(), "bj-log".to_owned()),
        ("host".to_owned(), host.to_owned()),
        ("agent".to_owned(), "a1".to_owned()),
        ("kind".to_owned(), "channel".to_owned()),
        ("component".to_owned(), "c1".to_owned()),
    ]));
    Alert {
        fingerprint: labels.fingerprint(),
        alertname: "ChannelFilling".into(),
        severity,
        status,
        labels,
        annotations: BTreeMap::from([
            ("summary".to_owned(), "通道 c1 使用率 97%".to_owned()),
            ("description".to_owned(), "下游 sink 跟不上".to_owned()),
        ]),
        value: 97.0,
        active_since: at(0),
        firing_since: Some(at(120)),
        resolved_at: (status == AlertStatus::Resolved).then(|| at(900)),
        context: channel_context(host),
    }
}

fn group(firing: Vec<Alert>, resolved: Vec<Alert>) -> GroupNotice {
    GroupNotice {
        group_labels: BTreeMap::from([
            ("alertname".to_owned(), "ChannelFilling".to_owned()),
            ("cluster".to_owned(), "bj-log".to_owned()),
        ]),
        firing,
        resolved,
        reason: Reason::FirstNotification,
        notified: Default::default(),
    }
}

#[test]
fn one_message_names_every_agent_with_channel_figures() {
    let firing: Vec<Alert> = (0..40)
        .map(|i| {
            alert(
                &format!("bj-flume-{i:02}"),
                Severity::Critical,
                AlertStatus::Firing,
            )
        })
        .collect();
    let resolved = vec![alert(
        "bj-flume-99",
        Severity::Warning,
        AlertStatus::Resolved,
    )];
    let style = Style {
        at_mobiles: BTreeMap::from([(Severity::Critical, vec!["13800000000".to_owned()])]),
        ..Style::default()
    };
    let m = render(&[group(firing, resolved)], &style, at(420));
    assert_eq!(m.title, "【Flume 告警】 严重 40 已恢复 1");
    for i in 0..40 {
        assert!(
            m.text.contains(&format!("**bj-flume-{i:02}**/a1")),
            "bj-flume-{i:02} missing"
        );
    }
    assert!(
        m.text.contains("(积压 9700 / 容量 10000 / 97%) · 持续 5m"),
        "{}",
        m.text
    );
    assert!(m.text.contains("[已恢复]</font> (1)"));
    assert!(
        m.text
            .contains("- ChannelFilling **bj-flume-99**/a1: 通道 c1 使用率 97%"),
        "{}",
        m.text
    );
    assert!(m.text.contains("cluster=bj-log (40)"));
    assert!(
        m.text.trim_end().ends_with("@13800000000"),
        "mobiles are written into the text"
    );
    let body: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["at"]["atMobiles"][0], "13800000000");
    assert_eq!(body["at"]["isAtAll"], false);
    assert_eq!(m.omitted, 0);
}

#[test]
fn three_hundred_alerts_fit_and_say_how_many_were_left_out() {
    let firing: Vec<Alert> = (0..300)
        .map(|i| {
            alert(
                &format!("sh-flume-{i:03}-with-a-long-host-name"),
                Severity::Warning,
                AlertStatus::Firing,
            )
        })
        .collect();
    let m = render(&[group(firing, vec![])], &Style::default(), at(600));
    assert!(m.body.len() <= MAX_BODY_BYTES, "{} bytes", m.body.len());
    assert!(m.omitted > 0);
    let listed = m
        .text
        .lines()
        .filter(|l| l.starts_with("- **sh-flume-"))
        .count();
    assert_eq!(listed + m.omitted, 300);
    assert!(
        m.text.contains(&format!("……另有 {} 条未列出", m.omitted)),
        "{}",
        &m.text[m.text.len() - 200..]
    );
    assert_eq!(m.title, "【Flume 告警】 警告 300");
}

#[test]
fn hostile_names_render_harmlessly() {
    let mut a = alert("h1", Severity::Critical, AlertStatus::Firing);
    let hostile = "**bold** @all <font color=#FF0000>x</font>\n### fake";
    a.labels.0.insert("component".into(), hostile.into());
    if let Some(component) = &mut a.context.component {
        component.name = hostile.into();
    }
    let m = render(&[group(vec![a], vec![])], &Style::default(), at(300));
    let line = m
        .text
        .lines()
        .find(|l| l.starts_with("- **h1**"))
        .expect("the alert line");
    assert!(
        !line.contains("**bold**") && line.contains("\\*\\*bold\\*\\*"),
        "{line}"
    );
    assert!(
        !line.contains("@all") && line.contains("@\u{200b}all"),
        "{line}"
    );
    assert!(
        !line.contains("<font") && line.contains("&lt;font"),
        "{line}"
    );
    assert!(
        !m.text.contains("\n### fake"),
        "a newline cannot start a heading"
    );
}

#[test]
fn english_and_keyword_and_at_all() {
    let style = Style {
        language: Language::En,
        keyword: Some("flume".into()),
        at_all_on_critical: true,
        ..Style::default()
    };
    let m = render(
        &[group(
            vec![alert("h1", Severity::Critical, AlertStatus::Firing)],
            vec![],
        )],
        &style,
        at(300),
    );
    assert_eq!(m.title, "[Flume alerts] flume critical 1");
    assert!(
        m.text
            .contains("(size 9700 / capacity 10000 / 97%) · for 3m"),
        "{}",
        m.text
    );
    let body: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(body["at"]["isAtAll"], true);
}

#[test]
fn an_operator_template_frames_the_sections() {
    let template = "## 值班提醒 {{title}}\n\n{{firing}}\n---\n{{resolved}}\n[运维手册](https://wiki.example/flume)\n{{mentions}}\n".to_owned();
    check_template(&template).expect("valid");
    let style = Style {
        template: Some(template),
        at_mobiles: BTreeMap::from([(Severity::Critical, vec!["13800000000".to_owned()])]),
        ..Style::default()
    };
    let m = render(
        &[group(
            vec![alert("h1", Severity::Critical, AlertStatus::Firing)],
            vec![alert("h2", Severity::Warning, AlertStatus::Resolved)],
        )],
        &style,
        at(300),
    );
    assert!(
        m.text
            .starts_with("## 值班提醒 【Flume 告警】 严重 1 已恢复 1\n"),
        "{}",
        m.text
    );
    assert!(m.text.contains("- **h1**/a1: 通道 c1 使用率 97%"));
    assert!(m
        .text
        .contains("---\n#### <font color=#008000>[已恢复]</font> (1)"));
    assert!(m
        .text
        .contains("[运维手册](https://wiki.example/flume)\n@13800000000"));
    assert!(check_template("{{firing}} {{titel}}")
        .unwrap_err()
        .contains("{{titel}}"));
    assert!(check_template("no alerts here").is_err());
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/dingtalk-template.md"
    ))
    .unwrap();
    check_template(&shipped).expect("the example template in deploy/ is valid");
}
