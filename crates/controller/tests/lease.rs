//! Leader election decisions with time passed in: expiry judged by the standby's own clock
//! (never by the record's renewTime), a leader's deadline counted from when it sent its last
//! renewal, and a simulation of two replicas with partitions and slow writes in which both
//! never lead at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kubepki_controller::lease::{Decision, Elector, Timing};

const S: Duration = Duration::from_secs(1);

fn timing() -> Timing {
    Timing {
        lease_duration: 15 * S,
        renew_deadline: 10 * S,
        retry_period: 2 * S,
    }
}

fn wall(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

/// A record naming `holder`, renewed at wall-clock second `renewed`.
fn held(holder: &str, renewed: i64) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(15),
        acquire_time: Some(MicroTime(wall(1_000))),
        renew_time: Some(MicroTime(wall(renewed))),
        lease_transitions: Some(3),
        ..Default::default()
    }
}

/// The Lease object as read, at resourceVersion `rv`.
fn lease(rv: u64, spec: LeaseSpec) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("kubepki-controller".into()),
            resource_version: Some(rv.to_string()),
            ..Default::default()
        },
        spec: Some(spec),
    }
}

/// `e` reads `l` at `at` and stands by.
#[track_caller]
fn assert_stands_by(e: &mut Elector, l: &Lease, at: Instant) {
    let d = e.decide(Some(l), at, wall(0));
    assert!(matches!(d, Decision::StandBy { .. }), "{d:?}");
}

fn acquired(d: Decision) -> LeaseSpec {
    match d {
        Decision::Acquire(r) => r,
        other => panic!("expected Acquire, got {other:?}"),
    }
}

#[test]
fn no_lease_or_a_free_one_is_taken_at_once() {
    let t0 = Instant::now();
    let mut e = Elector::new("me", timing());
    let r = acquired(e.decide(None, t0, wall(5_000)));
    assert_eq!(r.holder_identity.as_deref(), Some("me"));
    assert_eq!(r.lease_duration_seconds, Some(15));
    assert_eq!(r.lease_transitions, Some(0));
    assert_eq!(r.renew_time, Some(MicroTime(wall(5_000))));
    // Released by its holder (no holder): taken at once, one more transition.
    let released = LeaseSpec {
        holder_identity: None,
        ..held("x", 1)
    };
    let r = acquired(e.decide(Some(&lease(1, released)), t0, wall(5_000)));
    assert_eq!(r.lease_transitions, Some(4));
    let empty = LeaseSpec {
        holder_identity: Some(String::new()),
        ..held("x", 1)
    };
    acquired(e.decide(Some(&lease(2, empty)), t0, wall(5_000)));
}

#[test]
fn expiry_is_judged_by_the_standby_clock_not_by_renew_time() {
    let t0 = Instant::now();
    // The holder's renewTime is an hour behind our wall clock (its clock is slow, or ours fast):
    // comparing it with our wall clock would call a live lease expired.
    for renewed in [5_000 - 3_600, 5_000, 5_000 + 3_600] {
        let mut e = Elector::new("me", timing());
        let rec = lease(7, held("other", renewed));
        assert!(matches!(
            e.decide(Some(&rec), t0, wall(5_000)),
            Decision::StandBy { ref holder, expires } if holder == "other" && expires == t0 + 15 * S
        ));
        // Read again unchanged: still held until 15 s after we first saw it, whatever the
        // wall clock says.
        assert!(matches!(
            e.decide(Some(&rec), t0 + 14 * S, wall(999_999)),
            Decision::StandBy { .. }
        ));
        assert_stands_by(&mut e, &rec, t0 + 15 * S - Duration::from_millis(1));
        let r = acquired(e.decide(Some(&rec), t0 + 15 * S, wall(5_015)));
        assert_eq!(r.holder_identity.as_deref(), Some("me"));
        assert_eq!(r.lease_transitions, Some(4));
        assert_eq!(r.acquire_time, Some(MicroTime(wall(5_015))));
    }
}

#[test]
fn a_renewed_lease_never_expires_for_a_standby() {
    let t0 = Instant::now();
    let mut e = Elector::new("me", timing());
    // The holder renews every 2 s, with a wall clock far behind ours; we look every 2 s for
    // ten lease durations.
    for i in 0..75u32 {
        let rec = lease(u64::from(i), held("other", 100 + i64::from(i) * 2));
        let d = e.decide(Some(&rec), t0 + 2 * i * S, wall(1_000_000));
        assert!(matches!(d, Decision::StandBy { .. }), "round {i}: {d:?}");
    }
    // It stops renewing: expired 15 s after we first saw its last record.
    let last = lease(75, held("other", 100 + 75 * 2));
    let t1 = t0 + 150 * S;
    assert_stands_by(&mut e, &last, t1);
    assert_stands_by(&mut e, &last, t1 + 14 * S);
    acquired(e.decide(Some(&last), t1 + 15 * S, wall(0)));
}

#[test]
fn a_longer_announced_lease_is_honoured() {
    let t0 = Instant::now();
    let mut e = Elector::new("me", timing());
    let rec = lease(
        1,
        LeaseSpec {
            lease_duration_seconds: Some(60),
            ..held("other", 1)
        },
    );
    assert_stands_by(&mut e, &rec, t0);
    assert_stands_by(&mut e, &rec, t0 + 59 * S);
    acquired(e.decide(Some(&rec), t0 + 60 * S, wall(0)));
    // A shorter (or absurd) one does not shorten our wait.
    for announced in [Some(1), Some(0), Some(-5), None] {
        let mut e = Elector::new("me", timing());
        let rec = lease(
            1,
            LeaseSpec {
                lease_duration_seconds: announced,
                ..held("other", 1)
            },
        );
        e.decide(Some(&rec), t0, wall(0));
        assert!(
            matches!(
                e.decide(Some(&rec), t0 + 14 * S, wall(0)),
                Decision::StandBy { .. }
            ),
            "{announced:?}"
        );
    }
}

#[test]
fn a_leader_leads_until_its_renew_deadline_after_sending() {
    let t0 = Instant::now();
    let mut e = Elector::new("me", timing());
    let r = acquired(e.decide(None, t0, wall(0)));
    assert!(!e.is_leading(t0), "not before the write succeeded");
    // The write was sent at t0 and answered 3 s later: leading counts from t0.
    let stored = lease(1, r.clone());
    e.written(&stored, t0, t0 + 3 * S);
    assert_eq!(e.lead_until(), Some(t0 + 10 * S));
    assert!(e.is_leading(t0 + 3 * S));
    assert!(e.is_leading(t0 + 10 * S - Duration::from_millis(1)));
    // No renewal: it stops at the deadline, with no API call needed to notice.
    assert!(!e.is_leading(t0 + 10 * S));
    // A renewal keeps the acquire time and the transitions.
    let d = e.decide(Some(&stored), t0 + 2 * S, wall(2));
    let Decision::Renew(renewed) = d else {
        panic!("expected Renew, got {d:?}")
    };
    assert_eq!(renewed.acquire_time, r.acquire_time);
    assert_eq!(renewed.lease_transitions, r.lease_transitions);
    assert_eq!(renewed.renew_time, Some(MicroTime(wall(2))));
    e.written(&lease(2, renewed), t0 + 2 * S, t0 + 2 * S);
    assert_eq!(e.lead_until(), Some(t0 + 12 * S));
}

#[test]
fn a_leader_that_sees_another_holder_steps_down() {
    let t0 = Instant::now();
    let mut e = Elector::new("me", timing());
    let r = acquired(e.decide(None, t0, wall(0)));
    e.written(&lease(1, r), t0, t0);
    assert_eq!(
        e.decide(Some(&lease(2, held("other", 0))), t0 + S, wall(0)),
        Decision::StepDown {
            holder: Some("other".into())
        }
    );
    assert!(!e.is_leading(t0 + S));
    // The Lease deleted while leading: step down too (another replica may create it now).
    let mut e = Elector::new("me", timing());
    let r = acquired(e.decide(None, t0, wall(0)));
    e.written(&lease(1, r), t0, t0);
    assert_eq!(
        e.decide(None, t0 + S, wall(0)),
        Decision::StepDown { holder: None }
    );
    // Not leading any more, a record still naming us is ours to renew (nobody took it).
    let mut e = Elector::new("me", timing());
    assert!(matches!(
        e.decide(Some(&lease(1, held("me", 0))), t0, wall(0)),
        Decision::Renew(_)
    ));
}

#[test]
fn release_hands_over_only_our_own_lease() {
    let t0 = Instant::now();
    let mut e = Elector::new("me", timing());
    let r = acquired(e.decide(None, t0, wall(0)));
    let stored = lease(1, r.clone());
    e.written(&stored, t0, t0);
    let rel = e.release(Some(&stored), wall(9)).expect("ours");
    assert_eq!(rel.holder_identity, None);
    assert_eq!(rel.lease_duration_seconds, Some(1));
    assert_eq!(rel.lease_transitions, r.lease_transitions);
    assert!(!e.is_leading(t0));
    assert_eq!(e.release(Some(&lease(2, held("other", 0))), wall(9)), None);
}

#[test]
fn timings_are_checked() {
    assert!(timing().validate().is_ok());
    assert!(Timing::default().validate().is_ok());
    let bad = |l: u64, d: u64, r: u64| Timing {
        lease_duration: Duration::from_millis(l),
        renew_deadline: Duration::from_millis(d),
        retry_period: Duration::from_millis(r),
    };
    for (t, want) in [
        (bad(10_000, 10_000, 2_000), "renew-deadline"),
        (bad(10_000, 12_000, 2_000), "renew-deadline"),
        (bad(15_000, 10_000, 9_000), "retry-period"),
        (bad(15_000, 10_000, 0), "retry-period"),
        (bad(500, 400, 100), "lease-duration"),
    ] {
        let e = t.validate().unwrap_err();
        assert!(e.contains(want), "{t:?}: {e}");
    }
}

#[test]
fn standbys_back_off_leaders_do_not() {
    let t0 = Instant::now();
    let mut e = Elector::new("me", timing());
    assert_eq!(e.pause(0, t0, 0.0), 2 * S);
    assert_eq!(e.pause(1, t0, 0.0), 4 * S);
    assert_eq!(e.pause(2, t0, 0.0), 8 * S);
    assert_eq!(e.pause(30, t0, 0.0), 15 * S, "capped at the lease duration");
    assert!(e.pause(0, t0, 0.999) < Duration::from_millis(4_400));
    let r = acquired(e.decide(None, t0, wall(0)));
    e.written(&lease(1, r), t0, t0);
    assert_eq!(
        e.pause(5, t0, 0.9),
        2 * S,
        "a leader keeps trying every retry period"
    );
}

/// The API server as the electors see it: a record and its resourceVersion.
struct Server {
    record: Option<LeaseSpec>,
    version: u64,
}

impl Server {
    fn read(&self) -> Option<Lease> {
        self.record.clone().map(|r| lease(self.version, r))
    }
}

/// A write in flight: sent at, delivered at, answered at, the resourceVersion it expects, the
/// record; once delivered, what the server stored (None: refused).
struct Write {
    sent: Instant,
    delivered: Instant,
    answered: Instant,
    expect: u64,
    record: LeaseSpec,
    stored: Option<Option<Lease>>,
}

/// A replica in the simulation: its elector, its next round, its write in flight.
struct Replica {
    e: Elector,
    next_round: Instant,
    write: Option<Write>,
}

/// Two replicas; rounds every retry period; reads instant; a write reaches the server up to
/// 3 s after it is sent and its answer comes back up to 3 s after that; partitions cut a
/// replica off for 0.5 to 8 s (a write or an answer due meanwhile is lost). All from a fixed
/// pseudo-random sequence. At every 10 ms step at most one replica leads, and leadership does
/// change hands.
#[test]
fn two_replicas_never_lead_at_once() {
    let t = Timing {
        lease_duration: 4 * S,
        renew_deadline: 3 * S,
        retry_period: Duration::from_millis(500),
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let t0 = Instant::now();
    let ms = |n: u64| Duration::from_millis(n);
    let mut server = Server {
        record: None,
        version: 0,
    };
    let mut rs = [
        Replica {
            e: Elector::new("a", t),
            next_round: t0,
            write: None,
        },
        Replica {
            e: Elector::new("b", t),
            next_round: t0 + ms(250),
            write: None,
        },
    ];
    // Cut off until this step, per replica.
    let mut cut_until = [0u64; 2];
    let mut handovers = 0;
    let mut last_leader: Option<usize> = None;
    // The last events, for a failure message.
    let mut log: Vec<String> = Vec::new();
    for i in 0..300_000u64 {
        let now = t0 + ms(10 * i);
        if rnd(700) == 0 {
            let who = rnd(2) as usize;
            cut_until[who] = i + 50 + rnd(750);
        }
        for (k, r) in rs.iter_mut().enumerate() {
            let cut = i < cut_until[k];
            if let Some(w) = &mut r.write {
                if w.stored.is_none() && now >= w.delivered {
                    let ok = !cut && server.version == w.expect;
                    if ok {
                        server.record = Some(w.record.clone());
                        server.version += 1;
                    }
                    log.push(format!("{i} {k} write delivered, stored: {ok}"));
                    w.stored = Some(ok.then(|| server.read()).flatten());
                }
                if w.stored.is_some() && now >= w.answered {
                    let w = r.write.take().unwrap();
                    if !cut && let Some(Some(stored)) = &w.stored {
                        r.e.written(stored, w.sent, now);
                        log.push(format!(
                            "{i} {k} answer: lead until {:?}",
                            r.e.lead_until().map(|x| x - t0)
                        ));
                    }
                }
            }
            if now < r.next_round || r.write.is_some() {
                continue;
            }
            r.next_round = now + t.retry_period;
            if cut {
                continue;
            }
            // Every record carries the same renewTime (a stopped wall clock): only the
            // resourceVersion tells a renewal.
            let d = r.e.decide(server.read().as_ref(), now, wall(0));
            log.push(format!("{i} {k} {d:?}"));
            let (Decision::Acquire(record) | Decision::Renew(record)) = d else {
                continue;
            };
            let delivered = now + ms(rnd(3_000));
            r.write = Some(Write {
                sent: now,
                delivered,
                answered: delivered + ms(rnd(3_000)),
                expect: server.version,
                record,
                stored: None,
            });
        }
        let leading: Vec<usize> = (0..2).filter(|&k| rs[k].e.is_leading(now)).collect();
        assert!(
            leading.len() <= 1,
            "both lead at step {i}; last events:\n{}",
            log[log.len().saturating_sub(30)..].join("\n")
        );
        if let Some(&l) = leading.first() {
            if last_leader.is_some_and(|p| p != l) {
                handovers += 1;
            }
            last_leader = Some(l);
        }
        if log.len() > 1000 {
            log.drain(..500);
        }
    }
    assert!(
        handovers >= 5,
        "the simulation should hand the lease over now and then: {handovers}"
    );
}
