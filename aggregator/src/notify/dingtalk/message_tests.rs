//! Message layout, mentions, escaping and the size limit.

use std::time::{Duration, UNIX_EPOCH};

use flumewatch_proto::model::ComponentKind;

use super::*;
use crate::alert::{AlertContext, AlertStatus, ChannelFill, ComponentRef, Labels};
use crate::notify::dispatch::Reason;

/// A message with alerts only (no fleet changes).
fn render_alerts(groups: &[GroupNotice], style: &Style, now: SystemTime) -> Rendered {
    render(groups, &[], style, now)
}

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
        muted: Default::default(),
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
    let m = render_alerts(&[group(firing, resolved)], &style, at(420));
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
    let m = render_alerts(&[group(firing, vec![])], &Style::default(), at(600));
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
    let m = render_alerts(&[group(vec![a], vec![])], &Style::default(), at(300));
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
    let m = render_alerts(
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
    let m = render_alerts(
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

/// A PutsFailing alert of one component of agent a1 on `host`.
fn puts_failing(host: &str, kind: ComponentKind, name: &str, cluster: &str) -> Alert {
    let kind_label = if kind == ComponentKind::Source {
        "source"
    } else {
        "channel"
    };
    let labels = Labels(BTreeMap::from([
        ("alertname".to_owned(), "ChannelPutsFailing".to_owned()),
        ("severity".to_owned(), "critical".to_owned()),
        ("cluster".to_owned(), cluster.to_owned()),
        ("host".to_owned(), host.to_owned()),
        ("agent".to_owned(), "a1".to_owned()),
        ("kind".to_owned(), kind_label.to_owned()),
        ("component".to_owned(), name.to_owned()),
    ]));
    let mut context = channel_context(host);
    context.component = Some(ComponentRef {
        kind,
        kind_name: kind_label.to_ascii_uppercase(),
        name: name.to_owned(),
    });
    if kind == ComponentKind::Source {
        context.channel = None;
    }
    Alert {
        fingerprint: labels.fingerprint(),
        alertname: "ChannelPutsFailing".into(),
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        labels,
        annotations: BTreeMap::from([(
            "summary".to_owned(),
            format!("{kind_label} {name} 写入通道失败(本周期 300 个事件)"),
        )]),
        value: 300.0,
        active_since: at(0),
        firing_since: Some(at(120)),
        resolved_at: None,
        context,
    }
}

fn notice(firing: Vec<Alert>, notified: &[&Alert], reason: Reason) -> GroupNotice {
    GroupNotice {
        notified: notified.iter().map(|a| a.fingerprint).collect(),
        reason,
        ..group(firing, vec![])
    }
}

#[test]
fn one_line_per_agent_and_rule() {
    let source = puts_failing("h1", ComponentKind::Source, "r1", "bj-log");
    let channel = puts_failing("h1", ComponentKind::Channel, "c1", "bj-log");
    let other = puts_failing("h2", ComponentKind::Channel, "c1", "bj-log");
    let m = render_alerts(
        &[notice(
            vec![channel, source, other],
            &[],
            Reason::FirstNotification,
        )],
        &Style::default(),
        at(300),
    );
    let h1: Vec<&str> = m.text.lines().filter(|l| l.contains("**h1**")).collect();
    assert_eq!(
        h1,
        ["- **h1**/a1 source r1 → channel c1: 写入通道失败(本周期 300 个事件) (积压 9700 / 容量 10000 / 97%) · 持续 3m"],
        "{}",
        m.text
    );
    assert!(
        m.text.contains("ChannelPutsFailing cluster=bj-log (2)"),
        "two agents: {}",
        m.text
    );
    assert!(m.text.contains("**首次通知** · 新增 2"), "{}", m.text);
}

#[test]
fn what_is_new_comes_first_then_resolved_then_the_rest_collapsed() {
    let old: Vec<Alert> = (0..5)
        .map(|i| alert(&format!("old-{i}"), Severity::Warning, AlertStatus::Firing))
        .collect();
    let fresh = alert("fresh", Severity::Critical, AlertStatus::Firing);
    let gone = alert("gone", Severity::Warning, AlertStatus::Resolved);
    let mut firing = old.clone();
    firing.push(fresh);
    let notified: Vec<&Alert> = old.iter().collect();
    let mut g = notice(firing, &notified, Reason::NewAlerts);
    g.resolved = vec![gone];
    let m = render_alerts(&[g], &Style::default(), at(600));
    let text = &m.text;
    let (new_at, resolved_at, still_at) = (
        text.find("**fresh**").expect("new"),
        text.find("**gone**").expect("resolved"),
        text.find("仍在告警 (5)").expect("still firing"),
    );
    assert!(new_at < resolved_at && resolved_at < still_at, "{text}");
    assert!(
        text.contains("**有新告警** · 新增 1 · 已恢复 1 · 仍在告警 5"),
        "{text}"
    );
    assert!(
        text.contains("ChannelFilling cluster=bj-log (1)"),
        "only the new one under its header: {text}"
    );
    let still_listed = text.lines().filter(|l| l.contains("**old-")).count();
    assert_eq!(still_listed, 3, "{text}");
    assert!(text.contains("……另有 2 条仍在告警(此前已通知)"), "{text}");
    assert_eq!(m.reason, Reason::NewAlerts);
}

#[test]
fn a_reminder_is_short() {
    let old: Vec<Alert> = (0..40)
        .map(|i| {
            alert(
                &format!("bj-{i:02}"),
                Severity::Critical,
                AlertStatus::Firing,
            )
        })
        .collect();
    let notified: Vec<&Alert> = old.iter().collect();
    let m = render_alerts(
        &[notice(old.clone(), &notified, Reason::Reminder)],
        &Style::default(),
        at(9000),
    );
    assert!(
        m.text.contains("**提醒:告警仍未恢复** · 仍在告警 40"),
        "{}",
        m.text
    );
    assert_eq!(
        m.text.lines().filter(|l| l.starts_with("- ")).count(),
        4,
        "{}",
        m.text
    );
    assert!(
        !m.text.contains("> 下游"),
        "no descriptions in a reminder: {}",
        m.text
    );
    assert!(m.text.len() < 1000, "{} bytes", m.text.len());
}

#[test]
fn cluster_degraded_heads_its_clusters_agents() {
    let labels = Labels(BTreeMap::from([
        ("alertname".to_owned(), "ClusterDegraded".to_owned()),
        ("severity".to_owned(), "critical".to_owned()),
        ("cluster".to_owned(), "bj-log".to_owned()),
    ]));
    let degraded = Alert {
        fingerprint: labels.fingerprint(),
        alertname: "ClusterDegraded".into(),
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        labels,
        annotations: BTreeMap::from([(
            "summary".to_owned(),
            "集群 bj-log 30% 的 agent 有严重告警".to_owned(),
        )]),
        value: 30.0,
        active_since: at(0),
        firing_since: Some(at(200)),
        resolved_at: None,
        context: AlertContext::default(),
    };
    let cluster_group = GroupNotice {
        group_labels: BTreeMap::from([
            ("alertname".to_owned(), "ClusterDegraded".to_owned()),
            ("cluster".to_owned(), "bj-log".to_owned()),
        ]),
        ..notice(vec![degraded], &[], Reason::FirstNotification)
    };
    let agents = notice(
        (0..3)
            .map(|i| alert(&format!("bj-{i}"), Severity::Critical, AlertStatus::Firing))
            .collect(),
        &[],
        Reason::FirstNotification,
    );
    let m = render_alerts(&[cluster_group, agents], &Style::default(), at(300));
    let text = &m.text;
    let headline = text
        .find("#### <font color=#FF0000>[严重]</font> 集群 bj-log 30% 的 agent 有严重告警")
        .unwrap_or_else(|| panic!("{text}"));
    let beneath = text
        .find("##### <font color=#FF0000>[严重]</font> ChannelFilling cluster=bj-log (3)")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(headline < beneath);
    assert!(
        !text.contains("ClusterDegraded cluster"),
        "not a paragraph of its own: {text}"
    );
}

#[test]
fn a_storm_of_groups_counts_the_groups_it_cannot_show() {
    // group_by = ["..."]: 300 one-alert groups, each header naming every label.
    let groups: Vec<GroupNotice> = (0..300)
        .map(|i| {
            let a = alert(
                &format!("storm-host-with-a-long-name-{i:03}"),
                Severity::Warning,
                AlertStatus::Firing,
            );
            GroupNotice {
                group_labels: a.labels.0.clone(),
                ..group(vec![a], vec![])
            }
        })
        .collect();
    let m = render_alerts(&groups, &Style::default(), at(600));
    assert!(m.body.len() <= MAX_BODY_BYTES, "{} bytes", m.body.len());
    let headers = m.text.matches("#### <font").count();
    let counted: usize = m
        .text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("- ……另有 ")?;
            let (groups, rest) = rest.split_once(" 组共 ")?;
            let _: usize = groups.parse().ok()?;
            rest.strip_suffix(" 条未列出")?.parse::<usize>().ok()
        })
        .sum();
    assert!(counted > 0, "{}", &m.text[m.text.len() - 300..]);
    assert_eq!(headers + counted, 300, "every alert shown or counted");
    assert_eq!(
        m.omitted,
        300 - m.text.lines().filter(|l| l.starts_with("- **")).count()
    );
}

#[test]
fn a_backslash_cannot_undo_the_escaping() {
    let mut a = alert("h1", Severity::Critical, AlertStatus::Firing);
    a.annotations
        .insert("summary".into(), r"\[x\](http://e.example) ~~gone~~".into());
    let m = render_alerts(&[group(vec![a], vec![])], &Style::default(), at(300));
    assert!(
        m.text.contains(r"\\\[x\\\](http://e.example) \~\~gone\~\~"),
        "{}",
        m.text
    );
}

/// One alert per group (`group_by = ["..."]`), several groups in one message: the resolved
/// section gathers them all, and every one is shown when they fit.
#[test]
fn several_one_alert_groups_show_every_resolved_line() {
    let groups: Vec<GroupNotice> = ["bj-flume-01", "bj-flume-02", "bj-flume-03"]
        .iter()
        .map(|h| {
            group(
                Vec::new(),
                vec![alert(h, Severity::Warning, AlertStatus::Resolved)],
            )
        })
        .collect();
    let m = render_alerts(&groups, &Style::default(), at(60));
    assert_eq!(m.omitted, 0, "{}", m.text);
    for host in ["bj-flume-01", "bj-flume-02", "bj-flume-03"] {
        assert!(
            m.text.contains(&format!("**{host}**")),
            "{host}:\n{}",
            m.text
        );
    }
}
