//! Terraform's state lock, as seen from outside: reading the "Error acquiring the state lock"
//! report, saying who holds the lock and for how long, and deciding whether a lock was left
//! by an interrupted run of this same task (the only lock `force_unlock` may release).
//!
//! Terraform reports a held lock on standard error like this (1.0):
//!
//! ```text
//! Error: Error acquiring the state lock
//!
//! Error message: resource temporarily unavailable
//! Lock Info:
//!   ID:        57806617-2d8a-3220-a76a-49f14b9ae61f
//!   Path:      ../state/terraform.tfstate
//!   Operation: OperationTypeApply
//!   Who:       root@vm
//!   Version:   1.0.3
//!   Created:   2026-11-24 03:29:24.4052221 +0000 UTC
//!   Info:
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockInfo {
    pub id: String,
    pub path: String,
    pub operation: String,
    pub who: String,
    pub version: String,
    /// As Terraform printed it.
    pub created: String,
    /// `created` in seconds since the Unix epoch, when it could be read.
    pub created_unix: Option<i64>,
}

/// The lock described in Terraform's error output, if the failure was a held lock.
pub fn parse_lock_error(stderr: &str) -> Option<LockInfo> {
    if !stderr.contains("Error acquiring the state lock") {
        return None;
    }
    let mut info = LockInfo::default();
    let block = stderr.split("Lock Info:").nth(1).unwrap_or("");
    for line in block.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "ID" => info.id = value,
            "Path" => info.path = value,
            "Operation" => info.operation = value,
            "Who" => info.who = value,
            "Version" => info.version = value,
            "Created" => {
                info.created_unix = parse_created(&value);
                info.created = value;
            }
            _ => {}
        }
    }
    Some(info)
}

impl LockInfo {
    /// What an operator needs to know and do, in one message.
    pub fn explain(&self, now_unix: Option<i64>, module_hint: &str) -> String {
        let id = if self.id.is_empty() {
            "(unknown)"
        } else {
            &self.id
        };
        let who = if self.who.is_empty() {
            "an unknown holder".to_string()
        } else {
            self.who.clone()
        };
        let operation = self
            .operation
            .strip_prefix("OperationType")
            .unwrap_or(&self.operation)
            .to_lowercase();
        let age = match (self.created_unix, now_unix) {
            (Some(created), Some(now)) if now >= created => {
                format!(", {} ago", human_age(now - created))
            }
            _ => String::new(),
        };
        let since = if self.created.is_empty() {
            String::new()
        } else {
            format!(" since {}{age}", self.created)
        };
        let operation = if operation.is_empty() {
            String::new()
        } else {
            format!(" for {operation}")
        };
        format!(
            "the Terraform state is locked by someone else: lock ID {id}, held by {who}{operation}{since}. \
             Wait for that run to finish; if nothing is running any more, release the lock with \
             `terraform force-unlock {id}` in {module_hint} (force_unlock = true releases only a \
             lock left by an interrupted gantry run of this task)"
        )
    }
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Seconds since the epoch of Go's default time format as Terraform prints lock times:
/// `2026-11-24 03:29:24.4052221 +0000 UTC` (the offset is honoured).
pub fn parse_created(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let offset = parts.next().unwrap_or("+0000");
    let mut d = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(str::parse::<i64>);
    let (h, m, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = offset.get(1..5)?;
    let off_h: i64 = digits.get(0..2)?.parse().ok()?;
    let off_m: i64 = digits.get(2..4)?.parse().ok()?;
    let local = days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + s;
    Some(local - sign * (off_h * 3600 + off_m * 60))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Written in the task's workspace just before a Terraform command that takes the state lock,
/// removed when that command has exited by itself. Finding it later means the run that wrote
/// it was interrupted (cancelled, timed out, or the daemon died) while Terraform held the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interrupted {
    pub run_id: String,
    /// The Terraform command ("plan", "apply", "destroy").
    pub command: String,
    /// When it started, in seconds since the epoch.
    pub started_unix: i64,
}

/// How far clocks may disagree between the daemon and the lock's timestamp.
const CLOCK_SLACK_SECS: i64 = 5;

impl Interrupted {
    /// Whether `lock` is the one Terraform took for the interrupted command: taken on this
    /// machine's clock no earlier than the command started, for the same kind of operation.
    /// A lock taken before (someone else's, which made that command wait) or for another
    /// operation is not ours to release.
    pub fn left(&self, lock: &LockInfo) -> bool {
        let Some(created) = lock.created_unix else {
            return false;
        };
        let operation_matches = match self.command.as_str() {
            "plan" => lock.operation == "OperationTypePlan",
            "apply" | "destroy" => lock.operation == "OperationTypeApply",
            _ => false,
        };
        operation_matches && !lock.id.is_empty() && created >= self.started_unix - CLOCK_SLACK_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: &str = "\nError: Error acquiring the state lock\n\nError message: resource temporarily unavailable\nLock Info:\n  ID:        57806617-2d8a-3220-a76a-49f14b9ae61f\n  Path:      ../state/terraform.tfstate\n  Operation: OperationTypeApply\n  Who:       ops@build-7\n  Version:   1.0.3\n  Created:   2026-11-24 03:29:24.4052221 +0000 UTC\n  Info:      \n\n\nTerraform acquires a state lock to protect the state from being written\nby multiple users at the same time. Please resolve the issue above and try\nagain.\n";

    #[test]
    fn the_lock_report_is_read() {
        let lock = parse_lock_error(STDERR).unwrap();
        assert_eq!(lock.id, "57806617-2d8a-3220-a76a-49f14b9ae61f");
        assert_eq!(lock.who, "ops@build-7");
        assert_eq!(lock.operation, "OperationTypeApply");
        assert_eq!(lock.path, "../state/terraform.tfstate");
        assert_eq!(lock.version, "1.0.3");
        assert_eq!(lock.created_unix, Some(1_795_490_964));
        assert!(parse_lock_error("Error: Invalid reference").is_none());
    }

    #[test]
    fn the_message_names_id_holder_age_and_the_fix() {
        let lock = parse_lock_error(STDERR).unwrap();
        let text = lock.explain(Some(1_795_490_964 + 135), "the module directory");
        assert!(
            text.contains("lock ID 57806617-2d8a-3220-a76a-49f14b9ae61f"),
            "{text}"
        );
        assert!(text.contains("held by ops@build-7 for apply"), "{text}");
        assert!(text.contains("2m15s ago"), "{text}");
        assert!(text.contains("terraform force-unlock 57806617"), "{text}");
        let bare = LockInfo::default().explain(None, "x");
        assert!(bare.contains("lock ID (unknown)"), "{bare}");
    }

    #[test]
    fn lock_times_in_go_format() {
        assert_eq!(parse_created("1970-01-01 00:00:00 +0000 UTC"), Some(0));
        assert_eq!(
            parse_created("2000-03-01 00:00:00 +0000 UTC"),
            Some(951_868_800)
        );
        assert_eq!(
            parse_created("2026-11-24 05:29:24.1 +0200 EET"),
            parse_created("2026-11-24 03:29:24 +0000 UTC")
        );
        assert_eq!(parse_created("yesterday"), None);
        assert_eq!(parse_created("2026-13-01 00:00:00 +0000 UTC"), None);
    }

    #[test]
    fn only_a_lock_taken_by_the_interrupted_command_is_ours() {
        let lock = parse_lock_error(STDERR).unwrap();
        let created = lock.created_unix.unwrap();
        let ours = Interrupted {
            run_id: "r1".into(),
            command: "apply".into(),
            started_unix: created - 2,
        };
        assert!(ours.left(&lock));
        // Someone else's lock, older than our command: it is what our command waited for.
        let earlier = Interrupted {
            started_unix: created + 60,
            ..ours.clone()
        };
        assert!(!earlier.left(&lock));
        let plan = Interrupted {
            command: "plan".into(),
            ..ours.clone()
        };
        assert!(!plan.left(&lock));
        let unknown_time = LockInfo {
            created_unix: None,
            ..lock
        };
        assert!(!ours.left(&unknown_time));
    }
}
