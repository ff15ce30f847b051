//! Waiting for a condition without a fixed sleep: [`assert_eventually!`](crate::assert_eventually)
//! re-checks until it holds or the test's patience runs out.
//!
//! Patience defaults to [`DEFAULT_PATIENCE`]; a slow machine raises it with
//! `RUST_TEST_PATIENCE_MS` (as linkerd2-proxy's tests do). It bounds how
//! long a test waits for something that should happen "soon", never a
//! time the test asserts on: tests that check a deadline say so.

use std::time::Duration;

/// How long a condition gets by default.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(10);
/// Pause between two checks.
pub const POLL: Duration = Duration::from_millis(20);
/// The variable that overrides [`DEFAULT_PATIENCE`], in milliseconds.
pub const ENV_PATIENCE_MS: &str = "RUST_TEST_PATIENCE_MS";

/// This run's patience: `RUST_TEST_PATIENCE_MS` or [`DEFAULT_PATIENCE`].
pub fn patience() -> Duration {
    match std::env::var(ENV_PATIENCE_MS) {
        Ok(v) => {
            Duration::from_millis(v.trim().parse().unwrap_or_else(|_| {
                panic!("{ENV_PATIENCE_MS}={v:?} is not a number of milliseconds")
            }))
        }
        Err(_) => DEFAULT_PATIENCE,
    }
}

/// `assert_eventually!(cond)` or `assert_eventually!(cond, "fmt", args…)`:
/// in an async test, re-evaluate `cond` every [`POLL`] until it is true;
/// panic with the message once [`patience`] has passed.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!($cond, "{}", stringify!($cond))
    };
    ($cond:expr, $($arg:tt)+) => {{
        let patience = $crate::eventually::patience();
        let deadline = ::std::time::Instant::now() + patience;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!(
                    "not true after {:?} ({}=ms to wait longer): {}",
                    patience,
                    $crate::eventually::ENV_PATIENCE_MS,
                    format_args!($($arg)+)
                );
            }
            ::tokio::time::sleep($crate::eventually::POLL).await;
        }
    }};
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn waits_for_a_condition_that_becomes_true() {
        let start = std::time::Instant::now();
        assert_eventually!(start.elapsed() > std::time::Duration::from_millis(50));
    }
}
