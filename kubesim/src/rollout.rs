//! The pace of a RollingUpdate, as the Deployment controller sets it: the new ReplicaSet
//! grows while the pod total stays within `replicas + maxSurge`, and old ReplicaSets shrink
//! while the ready pods stay at or above `replicas - maxUnavailable`.

use serde_json::Value;

/// `maxSurge` and `maxUnavailable` resolved to pod counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub surge: i64,
    pub unavailable: i64,
}

impl Bounds {
    /// From `spec.strategy.rollingUpdate` (ints or percentages, 25% each by default).
    /// Surge rounds up and unavailability down, and both at zero would never make
    /// progress, so unavailability becomes one, as in Kubernetes.
    pub fn of(deployment: &Value, replicas: i64) -> Bounds {
        let ru = deployment.pointer("/spec/strategy/rollingUpdate");
        let field = |name: &str| ru.and_then(|r| r.get(name));
        let surge = scaled(field("maxSurge"), replicas, true);
        let mut unavailable = scaled(field("maxUnavailable"), replicas, false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Bounds { surge, unavailable }
    }
}

/// An int-or-string: a count, or a percentage of `replicas`.
fn scaled(v: Option<&Value>, replicas: i64, round_up: bool) -> i64 {
    let percent = |p: i64| {
        let x = p * replicas;
        if round_up { (x + 99) / 100 } else { x / 100 }
    };
    match v {
        None | Some(Value::Null) => percent(25),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0).max(0),
        Some(Value::String(s)) => match s.strip_suffix('%') {
            Some(p) => percent(p.trim().parse().unwrap_or(25)).max(0),
            None => s.trim().parse::<i64>().unwrap_or(0).max(0),
        },
        Some(_) => percent(25),
    }
}

/// One ReplicaSet as the rollout sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Set {
    /// `spec.replicas`.
    pub desired: i64,
    pub ready: i64,
    /// Pods that exist but are not ready.
    pub unready: i64,
}

impl Set {
    /// Pods that exist, ready or not.
    pub fn pods(&self) -> i64 {
        self.ready + self.unready
    }
}

/// The next `spec.replicas` for the new ReplicaSet and for each old one (same order).
pub fn step(replicas: i64, bounds: Bounds, new: Set, old: &[Set]) -> (i64, Vec<i64>) {
    let old_desired: i64 = old.iter().map(|s| s.desired).sum();
    let new_target = if old_desired == 0 {
        replicas
    } else {
        let room = replicas + bounds.surge - (old_desired + new.desired);
        (new.desired + room.max(0))
            .min(replicas)
            .max(new.desired.min(replicas))
    };
    // Unready old pods add nothing to availability: they go first and freely. Beyond them,
    // old pods go only while enough ready ones remain.
    let ready_total = new.ready + old.iter().map(|s| s.ready).sum::<i64>();
    let mut removable = (ready_total - (replicas - bounds.unavailable)).max(0);
    let old_targets = old
        .iter()
        .map(|s| {
            let mut target = s.desired - s.unready.min(s.desired);
            let cut = removable.min(target);
            target -= cut;
            removable -= cut;
            target
        })
        .collect();
    (new_target, old_targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bounds(strategy: Value, replicas: i64) -> Bounds {
        Bounds::of(
            &json!({"spec": {"strategy": {"rollingUpdate": strategy}}}),
            replicas,
        )
    }

    #[test]
    fn bounds_round_surge_up_and_unavailability_down() {
        assert_eq!(
            bounds(json!({}), 10),
            Bounds {
                surge: 3,
                unavailable: 2
            }
        );
        assert_eq!(
            bounds(json!({"maxSurge": 2, "maxUnavailable": "50%"}), 3),
            Bounds {
                surge: 2,
                unavailable: 1
            }
        );
        assert_eq!(
            bounds(json!({"maxSurge": "0%", "maxUnavailable": 0}), 4),
            Bounds {
                surge: 0,
                unavailable: 1
            }
        );
    }

    /// Drives a rollout to the end, making every pod ready as soon as it exists, and checks
    /// the bounds at every step.
    fn roll(replicas: i64, b: Bounds) -> usize {
        let mut new = Set {
            desired: 0,
            ready: 0,
            unready: 0,
        };
        let mut old = vec![Set {
            desired: replicas,
            ready: replicas,
            unready: 0,
        }];
        for steps in 1..100 {
            let (n, o) = step(replicas, b, new, &old);
            new = Set {
                desired: n,
                ready: n,
                unready: 0,
            };
            for (s, t) in old.iter_mut().zip(o) {
                *s = Set {
                    desired: t,
                    ready: t,
                    unready: 0,
                };
            }
            let total = new.desired + old[0].desired;
            assert!(total <= replicas + b.surge, "{total} pods at step {steps}");
            assert!(
                total >= replicas - b.unavailable,
                "{total} pods at step {steps}"
            );
            if new.desired == replicas && old[0].desired == 0 {
                return steps;
            }
        }
        panic!("the rollout never finished");
    }

    #[test]
    fn a_rollout_stays_within_its_bounds_and_finishes() {
        let one_at_a_time = Bounds {
            surge: 1,
            unavailable: 0,
        };
        assert!(roll(4, one_at_a_time) >= 4, "one surge pod at a time");
        assert!(roll(4, bounds(json!({"maxSurge": "100%"}), 4)) <= 2);
        roll(3, bounds(json!({"maxSurge": 0, "maxUnavailable": 1}), 3));
        roll(1, bounds(json!({}), 1));
    }

    #[test]
    fn new_pods_that_never_become_ready_keep_the_old_ones() {
        let b = Bounds {
            surge: 1,
            unavailable: 0,
        };
        let old = [Set {
            desired: 2,
            ready: 2,
            unready: 0,
        }];
        let stuck = Set {
            desired: 1,
            ready: 0,
            unready: 1,
        };
        assert_eq!(step(2, b, stuck, &old), (1, vec![2]));
    }
}
