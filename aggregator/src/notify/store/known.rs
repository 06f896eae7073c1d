//! The fleet as last known, in the state database: every sidecar's Hello (host, agents,
//! labels, poll interval), so that after a restart a sidecar that never comes back is missed
//! (SidecarSilent) instead of forgotten.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::params;

use super::{Store, StoreError};
use crate::fleet::Hello;

pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS known_sidecars (host TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL, agents TEXT NOT NULL, labels TEXT NOT NULL,
    poll_interval_ms INTEGER NOT NULL, version TEXT NOT NULL);";

impl Store {
    /// Replaces what is remembered with `fleet`, in one transaction.
    pub fn remember_sidecars(&self, fleet: &[Hello]) -> Result<(), StoreError> {
        let mut db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.remember_sidecars(fleet),
        };
        let tx = db.transaction()?;
        tx.execute("DELETE FROM known_sidecars", [])?;
        for hello in fleet {
            tx.execute(
                "INSERT INTO known_sidecars VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    hello.host,
                    hello.instance_id,
                    hello.agents.join("\n"),
                    serde_json::to_string(&hello.labels).unwrap_or_default(),
                    hello.poll_interval.as_millis() as i64,
                    hello.version,
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The sidecars remembered at the last stop.
    pub fn known_sidecars(&self) -> Result<Vec<Hello>, StoreError> {
        let db = match self.db() {
            Ok(db) => db,
            Err(pg) => return pg.known_sidecars(),
        };
        let mut stmt = db.prepare(
            "SELECT host, instance_id, agents, labels, poll_interval_ms, version FROM known_sidecars ORDER BY host",
        )?;
        let rows = stmt.query_map([], |r| {
            let agents: String = r.get(2)?;
            let labels: String = r.get(3)?;
            let interval: i64 = r.get(4)?;
            Ok(Hello {
                host: r.get(0)?,
                instance_id: r.get(1)?,
                agents: agents
                    .lines()
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect(),
                labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)
                    .unwrap_or_default(),
                version: r.get(5)?,
                poll_interval: Duration::from_millis(interval.max(0) as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_remembered_across_opens() {
        let dir = flumewatch_testkit::TempDir::new("store-known");
        let hello = |host: &str| Hello {
            host: host.into(),
            instance_id: format!("{host}-1"),
            agents: vec!["a1".into(), "a2".into()],
            labels: BTreeMap::from([("cluster".to_owned(), "bj-log".to_owned())]),
            version: "0.1.0".into(),
            poll_interval: Duration::from_secs(10),
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .remember_sidecars(&[hello("h1"), hello("h2")])
                .unwrap();
            store.remember_sidecars(&[hello("h2")]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.known_sidecars().unwrap(), [hello("h2")]);
    }
}
