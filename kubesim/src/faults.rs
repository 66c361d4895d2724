//! Injected faults: the admin endpoint adds rules that delay or fail matching requests, or
//! drops every open watch.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One rule, as posted to `/kubesim/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// HTTP method to match ("PATCH"); any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the request path to match; any when absent.
    #[serde(default)]
    pub path: Option<String>,
    /// Answer with this status (500, 503, 409, 429, 504) instead of serving the request.
    #[serde(default)]
    pub status: Option<u16>,
    /// Wait this long before answering (or failing).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// How many matching requests the rule applies to; every one when absent.
    #[serde(default)]
    pub times: Option<u32>,
}

/// What a matching rule does to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    pub delay: Duration,
    pub status: Option<u16>,
}

pub struct Faults {
    rules: Mutex<Vec<(u64, FaultRule)>>,
    next_id: Mutex<u64>,
    drop_watches: broadcast::Sender<()>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Mutex::new(Vec::new()),
            next_id: Mutex::new(1),
            drop_watches: broadcast::channel(4).0,
        }
    }
}

impl Faults {
    pub fn add(&self, rule: FaultRule) -> u64 {
        let mut id = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
        *id += 1;
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((*id, rule));
        *id
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn list(&self) -> Vec<(u64, FaultRule)> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first matching rule's effect, counting the request against its `times`.
    pub fn check(&self, method: &str, path: &str) -> Option<Injected> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let pos = rules.iter().position(|(_, r)| {
            r.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && r.path.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let rule = rules[pos].1.clone();
        if let Some(times) = &mut rules[pos].1.times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                rules.remove(pos);
            }
        }
        Some(Injected {
            delay: Duration::from_millis(rule.delay_ms.unwrap_or(0)),
            status: rule.status,
        })
    }

    pub fn drop_watches(&self) {
        let _ = self.drop_watches.send(());
    }

    pub fn watch_drops(&self) -> broadcast::Receiver<()> {
        self.drop_watches.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_rule_expires() {
        let f = Faults::default();
        f.add(FaultRule {
            method: Some("PATCH".into()),
            status: Some(503),
            times: Some(2),
            ..Default::default()
        });
        assert!(f.check("GET", "/api/v1/pods").is_none());
        assert_eq!(f.check("PATCH", "/x").and_then(|i| i.status), Some(503));
        assert!(f.check("PATCH", "/x").is_some());
        assert!(f.check("PATCH", "/x").is_none());
    }
}
