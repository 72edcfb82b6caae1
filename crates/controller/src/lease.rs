//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's elector does it.
//!
//! Two rules keep two replicas from leading at once:
//! - a standby judges a lease expired from when *it* saw the record last change, by its own
//!   monotonic clock, never by comparing the record's renewTime with its wall clock (clocks
//!   disagree between machines; a standby whose clock runs ahead would take a live lease);
//! - a leader leads only until `renew_deadline` after it *sent* its last successful renewal.
//!   That write is what a standby sees change, no earlier than it was sent, and the standby
//!   waits `lease_duration` (longer than `renew_deadline`) after seeing it: the leader has
//!   stopped before anyone else may start.
//!
//! Every write carries the resourceVersion that was read, so of two replicas acting on the
//! same record only one succeeds.
//!
//! `Elector` is the decision, pure (time passed in); `run` is the loop of API calls around it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// client-go's JitterFactor: standbys retry within [retry, 2.2 * retry) so they do not collide.
const JITTER: f64 = 1.2;

/// How long a lease lasts, how long a leader keeps leading without a renewal, how often it
/// renews (client-go's LeaseDuration, RenewDeadline, RetryPeriod).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// The orderings the safety argument needs (the same checks as client-go's).
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration.as_secs() < 1 {
            return Err(format!(
                "--leader-elect-lease-duration {:?} must be at least 1s (the Lease stores whole seconds)",
                self.lease_duration
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--leader-elect-renew-deadline {:?} must be shorter than --leader-elect-lease-duration {:?}",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period.mul_f64(JITTER) >= self.renew_deadline {
            return Err(format!(
                "--leader-elect-retry-period {:?} must be more than 0 and, times {JITTER}, shorter than --leader-elect-renew-deadline {:?}",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// A Lease as this replica last read it (resourceVersion and spec; None: no Lease), and since
/// when, by its own clock, it has read it unchanged. The resourceVersion counts too: every
/// renewal changes it, even one whose renewTime comes from a stopped or coarse clock.
#[derive(Clone, Debug)]
struct Observed {
    record: Option<(Option<String>, LeaseSpec)>,
    since: Instant,
}

fn key(lease: &Lease) -> (Option<String>, LeaseSpec) {
    (
        lease.metadata.resource_version.clone(),
        lease.spec.clone().unwrap_or_default(),
    )
}

/// What to do after reading the lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The lease is free, absent, or expired by our observation: write this record naming us.
    Acquire(LeaseSpec),
    /// The lease names us: write this record to keep it.
    Renew(LeaseSpec),
    /// Another replica holds a lease that has not expired by our observation.
    StandBy { holder: String, expires: Instant },
    /// We were leading, but the lease now names someone else, no one, or is gone: stop at once.
    StepDown { holder: Option<String> },
}

fn holder(lease: Option<&Lease>) -> Option<&str> {
    lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|r| r.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// The election state of one replica. Pure: every method takes the time.
#[derive(Clone, Debug)]
pub struct Elector {
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
    /// While leading: `renew_deadline` after the last successful write naming us was sent.
    lead_until: Option<Instant>,
}

impl Elector {
    pub fn new(identity: &str, timing: Timing) -> Elector {
        Elector {
            identity: identity.to_string(),
            timing,
            observed: None,
            lead_until: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Until when this replica may act as leader (None: it may not).
    pub fn lead_until(&self) -> Option<Instant> {
        self.lead_until
    }

    pub fn is_leading(&self, now: Instant) -> bool {
        self.lead_until.is_some_and(|t| now < t)
    }

    /// Takes in the Lease just read (`read`: None when there is none) at `now`, and says what
    /// to do. `wall` only stamps renewTime/acquireTime for humans and other tools: it is never
    /// compared with anything.
    pub fn decide(&mut self, read: Option<&Lease>, now: Instant, wall: Timestamp) -> Decision {
        let record = read.map(key);
        let changed = self.observed.as_ref().is_none_or(|o| o.record != record);
        if changed {
            self.observed = Some(Observed { record, since: now });
        }
        let spec = read.map(|l| l.spec.clone().unwrap_or_default());
        let spec = spec.as_ref();
        let since = self.observed.as_ref().map_or(now, |o| o.since);
        let leading = self.is_leading(now);
        let current = holder(read);
        let mine = current == Some(self.identity.as_str());
        // Also when the Lease is gone: another replica may be creating it right now.
        if leading && !mine {
            self.lead_until = None;
            return Decision::StepDown {
                holder: current.map(str::to_string),
            };
        }
        if mine {
            return Decision::Renew(self.record(spec, wall, true));
        }
        if let Some(other) = current {
            // The holder's lease as it announces it, but never shorter than ours: replicas
            // configured differently still wait long enough for each other.
            let announced = spec
                .and_then(|r| r.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or_default();
            let expires = since + announced.max(self.timing.lease_duration);
            if now < expires {
                return Decision::StandBy {
                    holder: other.to_string(),
                    expires,
                };
            }
        }
        Decision::Acquire(self.record(spec, wall, false))
    }

    /// The record to write naming us, built on the one read.
    fn record(&self, read: Option<&LeaseSpec>, wall: Timestamp, renew: bool) -> LeaseSpec {
        let old = read.cloned().unwrap_or_default();
        let now = Some(MicroTime(wall));
        let transitions = old.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_seconds()),
            acquire_time: if renew && old.acquire_time.is_some() {
                old.acquire_time.clone()
            } else {
                now.clone()
            },
            renew_time: now,
            lease_transitions: Some(if renew || read.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..old
        }
    }

    /// Our write succeeded and the server stored `stored`; it was sent at `sent` and answered
    /// at `now`. Leading lasts from the sending: the server may have stored it at any moment
    /// after.
    pub fn written(&mut self, stored: &Lease, sent: Instant, now: Instant) {
        let mine = holder(Some(stored)) == Some(self.identity.as_str());
        self.lead_until = mine.then(|| sent + self.timing.renew_deadline);
        self.observed = Some(Observed {
            record: Some(key(stored)),
            since: now,
        });
    }

    /// The record that hands the lease over on shutdown (client-go's ReleaseOnCancel): no
    /// holder, so a standby takes it at once. None when the Lease read is not ours.
    pub fn release(&mut self, read: Option<&Lease>, wall: Timestamp) -> Option<LeaseSpec> {
        self.lead_until = None;
        if holder(read) != Some(self.identity.as_str()) {
            return None;
        }
        let old = read.and_then(|l| l.spec.clone()).unwrap_or_default();
        Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(wall)),
            ..old
        })
    }

    /// How long to wait before the next round. A leader renews every retry period whatever
    /// happened; a standby adds jitter, and backs off while the API server fails.
    pub fn pause(&self, failures: u32, now: Instant, jitter: f64) -> Duration {
        let retry = self.timing.retry_period;
        if self.is_leading(now) {
            return retry;
        }
        let base = if failures == 0 {
            retry
        } else {
            let cap = self.timing.lease_duration.max(retry);
            retry.saturating_mul(1 << failures.min(16)).min(cap)
        };
        base + base.mul_f64(JITTER * jitter.clamp(0.0, 1.0))
    }
}

/// A number in [0, 1) from the standard library's per-process random hash keys: enough to keep
/// replicas' retries apart.
fn jitter() -> f64 {
    let r = RandomState::new().hash_one(Instant::now());
    (r >> 11) as f64 / (1u64 << 53) as f64
}

/// The election loop: reads the Lease, decides, writes with the read resourceVersion, and
/// publishes until when this replica may lead (None: it may not). Never gives up on an
/// unreachable API server: it retries with backoff, and `metrics` reports ready only once it has
/// read the Lease. When `stop` turns true, hands the lease over if held and returns.
pub async fn run(
    api: Api<Lease>,
    name: String,
    mut elector: Elector,
    lead: watch::Sender<Option<Instant>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let timing = elector.timing;
    let mut failures = 0u32;
    let mut holder_seen: Option<String> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let round = tokio::time::timeout(
            timing.renew_deadline,
            round(&api, &name, &mut elector, &mut holder_seen),
        )
        .await;
        match round {
            Ok(Ok(())) => {
                failures = 0;
                metrics.set_ready(true);
            }
            Ok(Err(e)) => {
                failures = failures.saturating_add(1);
                metrics.api_error("lease");
                warn!(lease = %name, error = %e, "leader election");
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                metrics.api_error("lease");
                warn!(lease = %name, timeout = ?timing.renew_deadline, "leader election: no answer from the API server");
            }
        }
        lead.send_replace(elector.lead_until());
        let pause = elector.pause(failures, Instant::now(), jitter());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    lead.send_replace(None);
    if elector.lead_until().is_some() {
        match tokio::time::timeout(timing.retry_period, release(&api, &name, &mut elector)).await {
            Ok(Ok(true)) => info!(lease = %name, "released the leader lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(lease = %name, error = %e, "cannot release the leader lease"),
            Err(_) => warn!(lease = %name, "cannot release the leader lease: no answer"),
        }
    }
}

/// One read, decision and (maybe) write.
async fn round(
    api: &Api<Lease>,
    name: &str,
    elector: &mut Elector,
    holder_seen: &mut Option<String>,
) -> Result<(), kube::Error> {
    let lease = api.get_opt(name).await?;
    let decision = elector.decide(lease.as_ref(), Instant::now(), Timestamp::now());
    let (record, acquiring) = match decision {
        Decision::Acquire(r) => (r, true),
        Decision::Renew(r) => (r, false),
        Decision::StandBy { holder, .. } => {
            if holder_seen.as_deref() != Some(holder.as_str()) {
                info!(lease = %name, %holder, "standing by: the lease is held");
                *holder_seen = Some(holder);
            }
            return Ok(());
        }
        Decision::StepDown { holder } => {
            warn!(lease = %name, holder = holder.as_deref().unwrap_or(""), "the lease was taken over; stepping down");
            *holder_seen = holder;
            return Ok(());
        }
    };
    let sent = Instant::now();
    let result = match lease {
        None => {
            let new = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(record),
            };
            api.create(&PostParams::default(), &new).await
        }
        Some(mut l) => {
            // metadata.resourceVersion is the one read: a concurrent writer makes this a 409.
            l.spec = Some(record);
            api.replace(name, &PostParams::default(), &l).await
        }
    };
    match result {
        Ok(stored) => {
            let was_leading = elector.is_leading(sent);
            elector.written(&stored, sent, Instant::now());
            if acquiring || !was_leading {
                info!(lease = %name, identity = %elector.identity(), "leading");
            }
            *holder_seen = Some(elector.identity().to_string());
            Ok(())
        }
        // Someone else wrote first (409), or created it first: the next round reads theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Hands the lease over if the record still names us. Ok(true): released.
async fn release(api: &Api<Lease>, name: &str, elector: &mut Elector) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let Some(record) = elector.release(Some(&lease), Timestamp::now()) else {
        return Ok(false);
    };
    lease.spec = Some(record);
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
