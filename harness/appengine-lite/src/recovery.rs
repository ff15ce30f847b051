//! Auto-recovery: what Pantavisor does when a container's init exits on its
//! own.
//!
//! Copied from upstream's behaviour (state.c `pv_state_check_auto_recovery`,
//! checked on the real appengine): a container carries the `auto_recovery`
//! object of its `run.json`, or, from its first start on, its group's (the
//! default `app` group: on-failure, 5 retries, 5 s delay doubling each
//! retry, stable after 30 s, then `reboot`). Every exit counts as a failure;
//! retry *n* waits `retry_delay × backoff_factor^(n-1)` s in RECOVERING.
//! Once `max_retries` is reached the backoff policy decides: `reboot`
//! (Pantavisor tears everything down and starts again), `never` (the
//! container stays STOPPED) or a duration (retries start over after it).
//! Without auto-recovery an exit is fatal: the device reboots.

use serde_json::{Map, Value};

/// `auto_recovery.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

impl Policy {
    fn parse(s: &str) -> Self {
        match s {
            "always" => Policy::Always,
            "on-failure" => Policy::OnFailure,
            "unless-stopped" => Policy::UnlessStopped,
            _ => Policy::No,
        }
    }

    /// Upstream's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::No => "no",
            Policy::Always => "always",
            Policy::OnFailure => "on-failure",
            Policy::UnlessStopped => "unless-stopped",
        }
    }
}

/// `auto_recovery.backoff_policy`: what happens after the last retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Reboot,
    Never,
    /// Start the retries over after this many seconds.
    After(u64),
}

impl Backoff {
    /// `reboot`, `never`, `<n>h`, `<n>min`, `<n>s` or `<n>`; anything
    /// else is `reboot`, as upstream reads it.
    pub fn parse(s: &str) -> Self {
        match s {
            "never" => return Backoff::Never,
            "reboot" | "" => return Backoff::Reboot,
            _ => {}
        }
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(n) = s[..digits].parse::<u64>() else {
            return Backoff::Reboot;
        };
        if n == 0 {
            return Backoff::Reboot;
        }
        match &s[digits..] {
            "h" => Backoff::After(n * 3600),
            "min" => Backoff::After(n * 60),
            _ => Backoff::After(n),
        }
    }

    /// Upstream's rendering (`reboot`, `never`, `2h`, `10min`, `45s`).
    pub fn render(self) -> String {
        match self {
            Backoff::Reboot => "reboot".into(),
            Backoff::Never => "never".into(),
            Backoff::After(s) if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
            Backoff::After(s) if s >= 60 && s % 60 == 0 => format!("{}min", s / 60),
            Backoff::After(s) => format!("{s}s"),
        }
    }
}

/// An `auto_recovery` object (of a container or of a group).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoRecovery {
    pub policy: Policy,
    pub max_retries: u32,
    /// Seconds before the first retry.
    pub retry_delay: u64,
    /// Retries are counted afresh when the last start is older than this
    /// (0: never).
    pub reset_window: u64,
    pub backoff_factor: f64,
    /// Seconds a container must run before it counts as stable (0: never
    /// reported stable).
    pub stable_timeout: u64,
    pub backoff: Backoff,
}

impl AutoRecovery {
    /// Upstream's default `app` group (`/etc/pantavisor/defaults/groups.json`).
    pub fn app_default() -> Self {
        Self {
            policy: Policy::OnFailure,
            max_retries: 5,
            retry_delay: 5,
            reset_window: 0,
            backoff_factor: 2.0,
            stable_timeout: 30,
            backoff: Backoff::Reboot,
        }
    }

    /// Parses an `auto_recovery` object; missing numbers are 0, a missing
    /// policy is `no`, like upstream's parser.
    pub fn parse(o: &Map<String, Value>) -> Self {
        let int = |k: &str| -> u64 {
            match o.get(k) {
                Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
                Some(Value::String(s)) => s.parse().unwrap_or(0),
                _ => 0,
            }
        };
        let factor = match o.get("backoff_factor") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            Some(Value::String(s)) => s.parse().unwrap_or(0.0),
            _ => 0.0,
        };
        Self {
            policy: o
                .get("policy")
                .and_then(Value::as_str)
                .map_or(Policy::No, Policy::parse),
            max_retries: u32::try_from(int("max_retries")).unwrap_or(u32::MAX),
            retry_delay: int("retry_delay"),
            reset_window: int("reset_window"),
            backoff_factor: factor,
            stable_timeout: int("stable_timeout"),
            backoff: o
                .get("backoff_policy")
                .and_then(Value::as_str)
                .map_or(Backoff::Reboot, Backoff::parse),
        }
    }

    /// Whether an exit is retried at all.
    pub fn enabled(&self) -> bool {
        matches!(self.policy, Policy::OnFailure | Policy::Always)
    }

    /// Seconds to wait before retry number `n` (1-based).
    pub fn delay_before(&self, n: u32) -> u64 {
        let mut delay = self.retry_delay as f64;
        if n > 1 && self.backoff_factor > 1.0 {
            delay *= self.backoff_factor.powi(n as i32 - 1);
        }
        delay as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_group_default_doubles_from_five_seconds() {
        let ar = AutoRecovery::app_default();
        let delays: Vec<u64> = (1..=5).map(|n| ar.delay_before(n)).collect();
        // Seen on the real appengine: "attempt 1/5 in 5 seconds" ... "5/5
        // in 80 seconds".
        assert_eq!(delays, [5, 10, 20, 40, 80]);
    }

    #[test]
    fn parse_like_upstream() {
        let v = json!({"policy":"on-failure","max_retries":3,"retry_delay":2,
                       "backoff_factor":1.5,"stable_timeout":10,"backoff_policy":"10min"});
        let ar = AutoRecovery::parse(v.as_object().expect("object"));
        assert_eq!(ar.policy, Policy::OnFailure);
        assert_eq!((ar.max_retries, ar.retry_delay), (3, 2));
        assert_eq!(ar.backoff, Backoff::After(600));
        assert_eq!(ar.backoff.render(), "10min");
        assert_eq!(ar.delay_before(2), 3);
        let none = AutoRecovery::parse(json!({}).as_object().expect("object"));
        assert!(!none.enabled());
        assert_eq!(none.backoff, Backoff::Reboot);
    }

    #[test]
    fn backoff_rendering() {
        for (s, r) in [
            ("reboot", "reboot"),
            ("never", "never"),
            ("2h", "2h"),
            ("120", "2min"),
            ("45s", "45s"),
            ("junk", "reboot"),
            ("0s", "reboot"),
        ] {
            assert_eq!(Backoff::parse(s).render(), r, "{s}");
        }
    }
}
