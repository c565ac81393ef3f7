//! How many requests are in flight over all objects of a sink: a fixed number, or `auto`, which
//! climbs the throughput curve.

use super::Concurrency;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Bounds the requests in flight over all objects of a sink. In `auto` mode it climbs the throughput
/// curve the way the AWS transfer managers do: every window it compares the measured rate with the
/// last one and keeps going in the direction that helped, reverses when it hurt, and holds on a plateau.
pub(super) struct Limiter {
    pub(super) auto: bool,
    pub(super) state: Mutex<LimitState>,
    pub(super) notify: Notify,
}

pub(super) struct LimitState {
    pub(super) in_flight: usize,
    pub(super) target: usize,
    pub(super) max: usize,
    pub(super) start: usize,
    pub(super) window: Instant,
    pub(super) window_bytes: u64,
    pub(super) window_parts: usize,
    pub(super) last_rate: f64,
    pub(super) best_rate: f64,
    pub(super) direction: i64,
}

/// The least time a measurement window covers.
pub(super) const WINDOW: Duration = Duration::from_millis(300);

impl Limiter {
    pub(super) fn new(c: Concurrency) -> Limiter {
        let (auto, target) = match c {
            Concurrency::Fixed(n) => (false, n),
            Concurrency::Auto => (true, 4),
        };
        Limiter {
            auto,
            state: Mutex::new(LimitState {
                in_flight: 0,
                target,
                max: if auto { 64 } else { target },
                start: target,
                window: Instant::now(),
                window_bytes: 0,
                window_parts: 0,
                last_rate: 0.0,
                best_rate: 0.0,
                direction: 1,
            }),
            notify: Notify::new(),
        }
    }

    /// In auto mode, requests in flight never exceed the buffers (parts cannot either).
    pub(super) fn set_max(&self, buffers: usize) {
        if self.auto {
            let mut s = self.state.lock().unwrap();
            s.max = buffers.max(1);
            s.target = s.target.min(s.max);
            s.start = s.target;
        }
    }

    pub(super) async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock().unwrap();
                if s.in_flight < s.target {
                    s.in_flight += 1;
                    return Permit(self.clone());
                }
            }
            notified.await;
        }
    }

    pub(super) fn record(&self, bytes: u64) {
        if !self.auto {
            return;
        }
        let mut s = self.state.lock().unwrap();
        s.window_bytes += bytes;
        s.window_parts += 1;
        let elapsed = s.window.elapsed();
        if elapsed < WINDOW || s.window_parts < s.target {
            return;
        }
        let rate = s.window_bytes as f64 / elapsed.as_secs_f64();
        if s.last_rate > 0.0 {
            if rate < s.last_rate * 0.95 {
                s.direction = -s.direction;
            } else if rate < s.last_rate * 1.05 {
                // A plateau: hold, but probe upwards again now and then.
                s.direction = if s.direction == 0 { 1 } else { 0 };
            }
        }
        let step = (s.target / 4).max(1) as i64;
        let target = (s.target as i64 + s.direction * step).clamp(1, s.max as i64) as usize;
        let grew = target > s.target;
        s.target = target;
        s.last_rate = rate;
        s.best_rate = s.best_rate.max(rate);
        s.window = Instant::now();
        s.window_bytes = 0;
        s.window_parts = 0;
        drop(s);
        if grew {
            self.notify.notify_waiters();
        }
    }

    pub(super) fn release(&self) {
        self.state.lock().unwrap().in_flight -= 1;
        self.notify.notify_one();
    }

    pub(super) fn summary(&self) -> Option<String> {
        let s = self.state.lock().unwrap();
        (self.auto && s.best_rate > 0.0).then(|| {
            format!(
                "concurrency auto: {} → {} requests in flight (max {}), chosen by the rate of each window of \
                 parts completed (the fastest window: {:.2} GB/s; the run's own rate is in its table)",
                s.start,
                s.target,
                s.max,
                s.best_rate / 1e9
            )
        })
    }
}

pub(super) struct Permit(Arc<Limiter>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_concurrency_climbs_while_it_pays_and_stays_bounded() {
        let l = Limiter::new(Concurrency::Auto);
        l.set_max(16);
        // A store whose throughput grows with requests in flight up to 10, then stays flat.
        for _ in 0..200 {
            let t = l.state.lock().unwrap().target;
            let rate = (t.min(10) as u64 * 100) << 20;
            l.state.lock().unwrap().window -= WINDOW;
            for _ in 0..t {
                l.record(rate / t as u64 * WINDOW.as_millis() as u64 / 1000);
            }
        }
        let t = l.state.lock().unwrap().target;
        assert!((7..=16).contains(&t), "settled at {t}");
    }
}
