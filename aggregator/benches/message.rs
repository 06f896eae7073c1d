//! One DingTalk message for a 300-alert group: render (layout, escaping, size cap, JSON body)
//! and sign the webhook URL. Figures go to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use flumewatch_aggregator::alert::{
    Alert, AlertContext, AlertStatus, ChannelFill, ComponentRef, Labels, Severity,
};
use flumewatch_aggregator::notify::dingtalk::message::{render, GroupNotice, Style};
use flumewatch_aggregator::notify::dingtalk::sign::signed_url;
use flumewatch_proto::model::ComponentKind;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000 + secs)
}

fn alert(i: usize) -> Alert {
    let labels = Labels(BTreeMap::from([
        ("alertname".to_owned(), "ChannelFilling".to_owned()),
        ("severity".to_owned(), "warning".to_owned()),
        ("cluster".to_owned(), "bj-log".to_owned()),
        ("host".to_owned(), format!("bj-flume-{i:03}")),
        ("agent".to_owned(), "a1".to_owned()),
        ("kind".to_owned(), "channel".to_owned()),
        ("component".to_owned(), "c1".to_owned()),
    ]));
    Alert {
        fingerprint: labels.fingerprint(),
        alertname: "ChannelFilling".into(),
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        labels,
        annotations: BTreeMap::from([("summary".to_owned(), "通道 c1 使用率 97%".to_owned())]),
        value: 97.0,
        active_since: at(0),
        firing_since: Some(at(120)),
        resolved_at: None,
        context: AlertContext {
            host: Some(format!("bj-flume-{i:03}")),
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
        },
    }
}

fn bench(c: &mut Criterion) {
    let group = GroupNotice {
        group_labels: BTreeMap::from([
            ("alertname".to_owned(), "ChannelFilling".to_owned()),
            ("cluster".to_owned(), "bj-log".to_owned()),
        ]),
        firing: (0..300).map(alert).collect(),
        resolved: Vec::new(),
        reason: flumewatch_aggregator::notify::dispatch::Reason::FirstNotification,
        notified: Default::default(),
        muted: Default::default(),
    };
    let groups = [group];
    let style = Style::default();
    let webhook = "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef";
    let secret = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";
    c.bench_function("render_and_sign_300_alerts", |b| {
        b.iter(|| {
            let rendered = render(&groups, &[], &style, at(900));
            let url = signed_url(webhook, Some(secret), 1_795_000_900_000);
            (rendered.body.len(), url.len())
        })
    });
    let rendered = render(&groups, &[], &style, at(900));
    eprintln!(
        "300-alert message: {} bytes of JSON, {} alert lines left out for the size cap",
        rendered.body.len(),
        rendered.omitted
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
