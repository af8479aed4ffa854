//! Which targets serve a request, in which order, and whether each is healthy: a circuit breaker
//! and a latency average per target, retries with exponential backoff and full jitter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Provider, Resolved, Strategy};

/// One (provider, model) a request may be sent to.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: std::sync::Arc<Provider>,
    pub model: String,
}

impl Target {
    pub fn key(&self) -> String {
        format!("{}/{}", self.provider.name, self.model)
    }
}

/// The targets for a requested model, in the order to try them. `None` if nothing serves it.
pub fn targets(cfg: &Resolved, health: &Health, requested: &str) -> Option<Vec<Target>> {
    let provider = |name: &str| cfg.providers.iter().find(|p| p.name == name).cloned();
    if let Some(route) = cfg.routes.get(requested) {
        let mut list: Vec<(Target, u32)> = route
            .targets
            .iter()
            .filter_map(|t| {
                Some((
                    Target {
                        provider: provider(&t.provider)?,
                        model: t.model.clone(),
                    },
                    t.weight,
                ))
            })
            .collect();
        match route.strategy {
            Strategy::Ordered => {}
            Strategy::Weighted => {
                // Pick the first by weight; the rest keep their order as failover.
                let total: u32 = list.iter().map(|(_, w)| *w).sum();
                if total > 0 {
                    let mut pick = rand::random_range(0..total);
                    let idx = list
                        .iter()
                        .position(|(_, w)| {
                            if pick < *w {
                                true
                            } else {
                                pick -= w;
                                false
                            }
                        })
                        .unwrap_or(0);
                    let chosen = list.remove(idx);
                    list.insert(0, chosen);
                }
            }
            Strategy::LeastLatency => {
                list.sort_by(|a, b| {
                    health
                        .latency_ms(&a.0.key())
                        .total_cmp(&health.latency_ms(&b.0.key()))
                });
            }
        }
        return Some(list.into_iter().map(|(t, _)| t).collect());
    }
    // `provider/model` addresses one provider directly.
    if let Some((p, m)) = requested.split_once('/') {
        if let Some(provider) = provider(p) {
            return Some(vec![Target {
                provider,
                model: m.to_string(),
            }]);
        }
    }
    // Anything else goes to the first provider, unchanged.
    cfg.providers.first().map(|p| {
        vec![Target {
            provider: p.clone(),
            model: requested.to_string(),
        }]
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    /// Open long enough: one probe may go through.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Default)]
struct TargetHealth {
    failures: Vec<Instant>,
    opened_at: Option<Instant>,
    probing: bool,
    /// Exponentially weighted moving average of successful call latency.
    latency_ms: Option<f64>,
}

/// Circuit breakers and latency per target, shared by all requests.
pub struct Health {
    targets: Mutex<HashMap<String, TargetHealth>>,
    failures: u32,
    window: Duration,
    open_for: Duration,
}

impl Health {
    pub fn new(cfg: &Resolved) -> Self {
        Self {
            targets: Mutex::new(HashMap::new()),
            failures: cfg.circuit_failures,
            window: cfg.circuit_window,
            open_for: cfg.circuit_open_for,
        }
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut TargetHealth) -> T) -> T {
        let mut map = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(key.to_string()).or_default())
    }

    pub fn latency_ms(&self, key: &str) -> f64 {
        self.with(key, |h| h.latency_ms.unwrap_or(0.0))
    }

    /// Whether a call may go to this target now, and the state it was in. Half-open lets exactly
    /// one probe through; its outcome closes or re-opens the circuit.
    pub fn admit(&self, key: &str) -> (bool, CircuitState) {
        let open_for = self.open_for;
        self.with(key, |h| match h.opened_at {
            None => (true, CircuitState::Closed),
            Some(at) if at.elapsed() >= open_for && !h.probing => {
                h.probing = true;
                (true, CircuitState::HalfOpen)
            }
            Some(at) if at.elapsed() >= open_for => (false, CircuitState::HalfOpen),
            Some(_) => (false, CircuitState::Open),
        })
    }

    pub fn success(&self, key: &str, latency: Duration) {
        self.with(key, |h| {
            h.failures.clear();
            h.opened_at = None;
            h.probing = false;
            let ms = latency.as_secs_f64() * 1000.0;
            h.latency_ms = Some(match h.latency_ms {
                Some(avg) => avg * 0.8 + ms * 0.2,
                None => ms,
            });
        });
    }

    /// Records a failure; returns true when this one opened the circuit.
    pub fn failure(&self, key: &str) -> bool {
        let (threshold, window) = (self.failures as usize, self.window);
        self.with(key, |h| {
            let now = Instant::now();
            if h.probing {
                // The half-open probe failed: open again for another period.
                h.probing = false;
                h.opened_at = Some(now);
                return true;
            }
            h.failures.retain(|t| now.duration_since(*t) < window);
            h.failures.push(now);
            if h.opened_at.is_none() && h.failures.len() >= threshold {
                h.opened_at = Some(now);
                return true;
            }
            false
        })
    }

    /// Releases a half-open probe that ended without a verdict (e.g. the client went away).
    pub fn release_probe(&self, key: &str) {
        self.with(key, |h| h.probing = false);
    }
}

/// Delay before retry number `attempt` (1-based): exponential with full jitter, or what the
/// upstream asked for with `Retry-After` when that is longer (capped by `max`).
pub fn backoff(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    let jittered = exp.mul_f64(rand::random::<f64>());
    match retry_after {
        Some(r) => r.min(max).max(jittered),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(failures: u32, open_ms: u64) -> Health {
        Health {
            targets: Mutex::new(HashMap::new()),
            failures,
            window: Duration::from_secs(30),
            open_for: Duration::from_millis(open_ms),
        }
    }

    #[test]
    fn circuit_opens_after_n_failures_and_half_opens_for_one_probe() {
        let h = health(3, 50);
        assert!(!h.failure("t"));
        assert!(!h.failure("t"));
        assert!(h.failure("t"));
        assert_eq!(h.admit("t"), (false, CircuitState::Open));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(h.admit("t"), (true, CircuitState::HalfOpen));
        assert_eq!(
            h.admit("t"),
            (false, CircuitState::HalfOpen),
            "one probe at a time"
        );
        assert!(h.failure("t"), "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.admit("t").0);
        h.success("t", Duration::from_millis(5));
        assert_eq!(h.admit("t"), (true, CircuitState::Closed));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..10 {
            assert!(backoff(base, max, attempt, None) <= max);
        }
        assert_eq!(
            backoff(base, max, 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(backoff(base, max, 1, Some(Duration::from_secs(60))), max);
    }
}
