//! Every wait of the harness goes through [`until`] (or [`until_blocking`] where
//! no runtime is at hand: Drop guards and signal paths): a description of what it
//! waits for, a deadline, backoff between tries (backon's exponential builder),
//! and an error that says what was expected and what the last try saw.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::future::Future;
use std::time::{Duration, Instant};

/// What one try found.
pub enum Step<T> {
    /// The wait is over.
    Done(T),
    /// Not yet: what was seen, for the error when the deadline passes.
    NotYet(String),
    /// Waiting longer cannot help (the VM died, the host key is wrong).
    Fail(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WaitError {
    #[error("waited {waited:.1} s for {what}; the last try saw: {last}")]
    Deadline { what: String, waited: f64, last: String },
    #[error("gave up waiting for {what} after {waited:.1} s: {why}")]
    Failed { what: String, waited: f64, why: String },
}

fn backoff(first: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default().with_min_delay(first).with_max_delay(max).with_factor(1.5).without_max_times().build()
}

/// Try `attempt` until it is done, fails, or `deadline` has passed (the last try
/// starts before it). Delays grow from `first` to at most 2 s.
pub async fn until<T, F, Fut>(what: &str, deadline: Duration, first: Duration, mut attempt: F) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let start = Instant::now();
    let mut delays = backoff(first, Duration::from_secs(2));
    loop {
        match attempt().await {
            Step::Done(t) => return Ok(t),
            Step::Fail(why) => return Err(WaitError::Failed { what: what.into(), waited: start.elapsed().as_secs_f64(), why }),
            Step::NotYet(last) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(2));
                if start.elapsed() + delay > deadline {
                    return Err(WaitError::Deadline { what: what.into(), waited: start.elapsed().as_secs_f64(), last });
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// [`until`] for synchronous code.
pub fn until_blocking<T>(what: &str, deadline: Duration, first: Duration, mut attempt: impl FnMut() -> Step<T>) -> Result<T, WaitError> {
    let start = Instant::now();
    let mut delays = backoff(first, Duration::from_millis(500));
    loop {
        match attempt() {
            Step::Done(t) => return Ok(t),
            Step::Fail(why) => return Err(WaitError::Failed { what: what.into(), waited: start.elapsed().as_secs_f64(), why }),
            Step::NotYet(last) => {
                let delay = delays.next().unwrap_or(Duration::from_millis(500));
                if start.elapsed() + delay > deadline {
                    return Err(WaitError::Deadline { what: what.into(), waited: start.elapsed().as_secs_f64(), last });
                }
                std::thread::sleep(delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_when_done_failed_or_past_the_deadline() {
        let mut n = 0;
        let r = until("three tries", Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            let k = n;
            async move {
                if k == 3 {
                    Step::Done(k)
                } else {
                    Step::NotYet(format!("try {k}"))
                }
            }
        })
        .await;
        assert_eq!(r, Ok(3));
        let r: Result<(), _> =
            until("a dead VM", Duration::from_secs(5), Duration::from_millis(1), || async { Step::Fail("exited".into()) }).await;
        assert!(matches!(&r, Err(WaitError::Failed { why, .. }) if why == "exited"), "{r:?}");
        let r: Result<(), _> =
            until("never", Duration::from_millis(50), Duration::from_millis(10), || async { Step::NotYet("still no".into()) }).await;
        match r {
            Err(e @ WaitError::Deadline { .. }) => assert!(e.to_string().contains("for never; the last try saw: still no"), "{e}"),
            other => panic!("expected a deadline, got {other:?}"),
        }
        let r = until_blocking("sync", Duration::from_secs(1), Duration::from_millis(1), || Step::Done(1));
        assert_eq!(r, Ok(1));
    }
}
