//! Leader election over a `coordination.k8s.io/v1` Lease. Every replica serves traffic from its
//! own watches; only the leader writes status and events. Optimistic concurrency (the Lease's
//! resourceVersion) decides races: a write that loses gets 409 and the replica stays a follower.
//! A replica that cannot renew stops acting as leader at once, before its lease even expires.
//! A replica that shuts down releases its lease (as client-go's `ReleaseOnCancel` does), so
//! another takes over on its next check instead of waiting for the lease to expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::Notify;

/// Lease timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (and followers check).
    pub renew_every: Duration,
}

/// Whether this replica currently leads, shared with the status writer.
#[derive(Debug, Default)]
pub struct Leadership {
    leader: AtomicBool,
    /// Woken when this replica becomes leader, so status is written at once.
    pub gained: Notify,
    /// Woken when this replica shuts down: the election releases the lease and ends.
    step_down: Notify,
}

impl Leadership {
    /// Whether this replica may write status now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Stops writing status at once and has the election release the lease.
    pub fn step_down(&self) {
        self.leader.store(false, Ordering::Release);
        self.step_down.notify_one();
    }

    fn set(&self, leader: bool) -> bool {
        let was = self.leader.swap(leader, Ordering::AcqRel);
        if leader && !was {
            self.gained.notify_one();
        }
        was != leader
    }
}

/// Runs the election until [`Leadership::step_down`], updating `leadership` and the
/// `wsgate_leader` gauge; then releases the lease if this replica holds it.
pub async fn run(
    api: Api<Lease>,
    cfg: LeaseConfig,
    leadership: Arc<Leadership>,
    gauge: prometheus::IntGauge,
) {
    loop {
        let leader = match try_acquire_or_renew(&api, &cfg).await {
            Ok(leader) => leader,
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "lease renewal failed; not writing status until it succeeds");
                false
            }
        };
        if leadership.set(leader) {
            if leader {
                tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader: writing route status");
            } else {
                tracing::info!(identity = %cfg.identity, lease = %cfg.name, "not the leader: status writes stopped");
            }
        }
        gauge.set(i64::from(leader));
        tokio::select! {
            _ = tokio::time::sleep(cfg.renew_every) => {}
            _ = leadership.step_down.notified() => {
                leadership.set(false);
                gauge.set(0);
                if leader {
                    match release(&api, &cfg).await {
                        Ok(()) => tracing::info!(lease = %cfg.name, "released the lease"),
                        Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "releasing the lease failed; another replica takes over when it expires"),
                    }
                }
                return;
            }
        }
    }
}

/// Gives the lease up if this replica still holds it: no holder, one second left, so the
/// next replica to check acquires it. A 409 means another replica has moved on already.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let duration_secs = i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX);
    let current = api.get_opt(&cfg.name).await?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder != cfg.identity {
        let valid_for = SignedDuration::from_secs(i64::from(
            spec.lease_duration_seconds.unwrap_or(duration_secs),
        ));
        let expired = match &spec.renew_time {
            Some(t) => t.0 + valid_for < Timestamp::now(),
            None => true,
        };
        if !holder.is_empty() && !expired {
            return Ok(false);
        }
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(duration_secs);
    // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
