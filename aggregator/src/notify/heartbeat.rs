//! The daily heartbeat (a receiver option, off by default): one short message a day with the
//! fleet's state and what flumewatch told and failed to tell in the last 24 h, so a group that
//! stops hearing from flumewatch knows something is wrong with it, not with Flume.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::store::history::{DeliveryState, HistoryFilter};
use super::Notifier;
use crate::alert::{Alert, AlertStatus};
use crate::rules::Language;

const DAY: u64 = 24 * 3600;

/// When in the day (seconds after 00:00 UTC) a receiver's heartbeat goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub utc_second_of_day: u32,
}

impl Heartbeat {
    /// `at` is "HH:MM" or "HH:MM:SS" at UTC offset `offset` ("+08:00", "-05:30").
    pub fn parse(at: &str, offset: &str) -> Result<Self, String> {
        let parts: Vec<&str> = at.split(':').collect();
        let number = |s: &str, max: u32| s.parse::<u32>().ok().filter(|n| *n < max);
        let (h, m, s) = match parts.as_slice() {
            [h, m] => (number(h, 24), number(m, 60), Some(0)),
            [h, m, s] => (number(h, 24), number(m, 60), number(s, 60)),
            _ => (None, None, None),
        };
        let (Some(h), Some(m), Some(s)) = (h, m, s) else {
            return Err(format!(
                "{at:?}: write the time of day as HH:MM, e.g. \"09:00\""
            ));
        };
        let (sign, rest) = match offset.split_at_checked(1) {
            Some(("+", rest)) => (1i64, rest),
            Some(("-", rest)) => (-1i64, rest),
            _ => return Err(format!("offset {offset:?}: write it as +08:00")),
        };
        let Some((oh, om)) = rest
            .split_once(':')
            .and_then(|(h, m)| Some((number(h, 15)?, number(m, 60)?)))
        else {
            return Err(format!("offset {offset:?}: write it as +08:00"));
        };
        let local = i64::from(h * 3600 + m * 60 + s);
        let utc = (local - sign * i64::from(oh * 3600 + om * 60)).rem_euclid(DAY as i64);
        Ok(Self {
            utc_second_of_day: utc as u32,
        })
    }

    /// The first heartbeat after `now`.
    pub fn next_after(&self, now: SystemTime) -> SystemTime {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let today = secs - secs % DAY + u64::from(self.utc_second_of_day);
        let at = if today > secs { today } else { today + DAY };
        UNIX_EPOCH + Duration::from_secs(at)
    }
}

impl Notifier {
    /// The heartbeat text for `receiver` at `now`: agents up and down, alerts firing, what was
    /// told in the last 24 h and what could not be delivered.
    pub(super) fn heartbeat_text(
        &self,
        receiver: &str,
        alerts: &[Alert],
        language: Language,
        now: SystemTime,
    ) -> (String, String) {
        let agents = self.fleet.agents(&Default::default(), None);
        let up = agents
            .iter()
            .filter(|a| {
                a.sidecar.connected
                    && a.state.consecutive_failures == 0
                    && a.state.latest.as_ref().is_some_and(|s| s.outcome.is_ok())
            })
            .count();
        let firing = alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count();
        let history = self
            .store
            .notifications(&HistoryFilter {
                receiver: Some(receiver.to_owned()),
                since: now.checked_sub(Duration::from_secs(DAY)),
                limit: 1000,
                ..HistoryFilter::default()
            })
            .unwrap_or_default();
        let count = |state: DeliveryState| history.iter().filter(|n| n.state == state).count();
        let (sent, dropped, queued) = (
            count(DeliveryState::Sent),
            count(DeliveryState::Dropped),
            count(DeliveryState::Queued),
        );
        let down = agents.len() - up;
        match language {
            Language::Zh => (
                "【Flume 监控】每日心跳".to_owned(),
                format!(
                    "### 【Flume 监控】每日心跳\n\n- agent:{} 个,正常 {up},异常 {down}\n- 正在告警:{firing} 条\n- 过去 24 小时发出通知 {sent} 条,失败 {dropped} 条,待发 {queued} 条\n\nflumewatch 运行正常;若某天没有收到这条消息,请检查 flumewatch 本身。\n",
                    agents.len()
                ),
            ),
            Language::En => (
                "[Flume monitoring] daily heartbeat".to_owned(),
                format!(
                    "### [Flume monitoring] daily heartbeat\n\n- agents: {}, {up} up, {down} down\n- firing alerts: {firing}\n- last 24 h: {sent} messages sent, {dropped} failed, {queued} waiting\n\nflumewatch is running; a day without this message means flumewatch itself needs a look.\n",
                    agents.len()
                ),
            ),
        }
    }
}

impl Notifier {
    /// Queues the heartbeat of every receiver whose time has come, and schedules the next.
    pub(super) fn heartbeats(
        &self,
        alerts: &[Alert],
        states: &mut [super::receiver::ReceiverState],
        wall: SystemTime,
    ) {
        for (receiver, state) in self.config.receivers.iter().zip(states.iter_mut()) {
            let (Some(at), Some(beat)) = (state.next_heartbeat, receiver.heartbeat) else {
                continue;
            };
            if at > wall {
                continue;
            }
            state.next_heartbeat = Some(beat.next_after(wall));
            let (title, text) =
                self.heartbeat_text(&receiver.name, alerts, receiver.style.language, wall);
            let body = super::dingtalk::message::plain_body(&title, &text, &receiver.style);
            let message = super::store::NewMessage {
                receiver: &receiver.name,
                body: &body,
                groups: Vec::new(),
                title: &title,
                reason: super::dispatch::Reason::Heartbeat.as_str(),
                alerts: &[],
            };
            if let Err(e) = self.commit(state, message, tokio::time::Instant::now(), wall) {
                tracing::error!(receiver = %receiver.name, error = %e, "cannot queue the daily heartbeat");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_in_beijing_is_one_utc_and_the_next_one_is_found() {
        let beat = Heartbeat::parse("09:00", "+08:00").unwrap();
        assert_eq!(beat.utc_second_of_day, 3600);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(beat.next_after(at(0)), at(3600));
        assert_eq!(beat.next_after(at(3600)), at(3600 + DAY), "strictly after");
        assert_eq!(
            Heartbeat::parse("01:30:15", "-05:30")
                .unwrap()
                .utc_second_of_day,
            7 * 3600 + 15
        );
        assert_eq!(
            Heartbeat::parse("07:00", "+08:00")
                .unwrap()
                .utc_second_of_day,
            23 * 3600
        );
        assert!(Heartbeat::parse("25:00", "+08:00").is_err());
        assert!(Heartbeat::parse("09:00", "8").is_err());
    }
}
