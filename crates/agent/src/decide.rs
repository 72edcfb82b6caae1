//! The agent's decisions, pure: time and everything read are passed in.
//!
//! - Events: a certificate that crosses a threshold (or expires) is announced once per
//!   threshold; a renewed certificate (new serial) starts afresh.
//! - Renewal: whether this node renews now, and why not when it does not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kubepki_pki::format::dates::rfc3339_utc;
use kubepki_pki::model::kubeconfig::EmbeddedKind;
use kubepki_pki::ops::scan::{FileReport, Seen, Snapshot};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How far past its thresholds a certificate is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Fine,
    /// Within the n-th largest threshold (0: the widest).
    Within(usize),
    Expired,
}

type CertKey = (PathBuf, Option<(EmbeddedKind, String)>, String);

/// What was already announced, per certificate (file, place in it, serial).
#[derive(Default, Debug)]
pub struct Announced {
    levels: HashMap<CertKey, Level>,
}

/// One Event to record on the Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// CertificateExpiring | CertificateExpired
    pub reason: &'static str,
    pub note: String,
}

/// "1y2d", "6d23h", "3h5m", "42s": the two largest units, for messages.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    match (days, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m{}s", s % 60),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// How a certificate is named in messages: its kubeadm name if any, the file, and where in a
/// kubeconfig.
pub fn describe(snap: &Snapshot, file: &FileReport, seen: &Seen) -> String {
    let role = snap.role(file, seen);
    let mut s = if role.name.is_empty() {
        file.path.display().to_string()
    } else {
        format!("{} ({})", role.name, file.path.display())
    };
    if let Some((k, n)) = &seen.embedded {
        s.push_str(&format!(" {} {n:?}", k.label()));
    }
    s
}

/// The Events due now. `thresholds` in any order; each certificate is announced when it
/// first reaches a level (a threshold, or expiry), not again at the same level.
pub fn notices(
    snap: &Snapshot,
    thresholds: &[Duration],
    now: OffsetDateTime,
    seen_before: &mut Announced,
) -> Vec<Notice> {
    let mut sorted = thresholds.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    let mut current = HashMap::new();
    for (file, seen) in snap.certificates() {
        let left = seen.not_after - now;
        let level = if left <= time::Duration::ZERO {
            Level::Expired
        } else {
            let left = left.unsigned_abs();
            sorted
                .iter()
                .rposition(|t| left <= *t)
                .map_or(Level::Fine, Level::Within)
        };
        let key = (
            file.path.clone(),
            seen.embedded.clone(),
            seen.serial.clone(),
        );
        let before = seen_before.levels.get(&key).copied().unwrap_or(Level::Fine);
        if level > before {
            let what = describe(snap, file, seen);
            let at = rfc3339_utc(seen.not_after);
            out.push(match level {
                Level::Expired => Notice {
                    reason: "CertificateExpired",
                    note: format!("{what} expired at {at}"),
                },
                Level::Within(i) => Notice {
                    reason: "CertificateExpiring",
                    note: format!(
                        "{what} expires in {} (at {at}), within the {} threshold",
                        short(left.unsigned_abs()),
                        short(sorted[i])
                    ),
                },
                Level::Fine => unreachable!("a level above Fine"),
            });
        }
        current.insert(key, level.max(before));
    }
    // Forget certificates that are gone (renewed or removed).
    seen_before.levels = current;
    out
}

/// Renewal settings: flags, overridden by the ConfigMap's keys where it has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Renew what expires within this; None: renewal is off.
    pub renew_before: Option<Duration>,
    /// Who paused renewal on this node (flag, ConfigMap, Node annotation), if anyone.
    pub paused_by: Option<String>,
}

/// The failure that stopped renewal everywhere, as recorded on the Lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub node: String,
    pub time: String,
    pub error: String,
    /// The failed node's backup of its previous files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    Off,
    Paused(String),
    Stopped(Failure),
    /// This node has no CA key to renew with (a worker, or an external CA).
    NothingRenewable,
    NotDue {
        next: Option<OffsetDateTime>,
    },
    /// Renew now: these kubeadm names are within the window.
    Due(Vec<String>),
}

/// Whether anything on this node can be renewed here (a CA key is present for it).
pub fn has_renewable(snap: &Snapshot) -> bool {
    snap.certificates().any(|(f, c)| {
        let r = snap.role(f, c);
        r.renewable && !r.ca
    })
}

/// Whether this node renews now.
pub fn renewal(
    settings: &Settings,
    stopped: Option<&Failure>,
    snap: &Snapshot,
    now: OffsetDateTime,
) -> Renewal {
    let Some(before) = settings.renew_before else {
        return Renewal::Off;
    };
    if let Some(f) = stopped {
        return Renewal::Stopped(f.clone());
    }
    if let Some(who) = &settings.paused_by {
        return Renewal::Paused(who.clone());
    }
    let mut due: Vec<String> = Vec::new();
    let mut next: Option<OffsetDateTime> = None;
    let mut any = false;
    for (file, seen) in snap.certificates() {
        let role = snap.role(file, seen);
        if !role.renewable || role.ca {
            continue;
        }
        any = true;
        if seen.not_after - now <= time::Duration::try_from(before).unwrap_or(time::Duration::MAX) {
            if !due.contains(&role.name) {
                due.push(role.name);
            }
        } else {
            let when = seen.not_after - before;
            next = Some(next.map_or(when, |n| n.min(when)));
        }
    }
    if !any {
        return Renewal::NothingRenewable;
    }
    if due.is_empty() {
        return Renewal::NotDue { next };
    }
    due.sort();
    Renewal::Due(due)
}

/// A ConfigMap's settings over the flags': `renewBefore` ("" or "0" turns renewal off) and
/// `paused` ("true").
pub fn apply_config(
    flags: &Settings,
    data: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Settings, String> {
    let mut s = flags.clone();
    let Some(data) = data else { return Ok(s) };
    if let Some(v) = data.get("renewBefore") {
        let v = v.trim();
        s.renew_before = if v.is_empty() || v == "0" {
            None
        } else {
            Some(
                humantime::parse_duration(v)
                    .map_err(|e| format!("renewBefore {v:?} is not a duration (e.g. 720h): {e}"))?,
            )
        };
    }
    if let Some(v) = data.get("paused") {
        match v.trim() {
            "true" => s.paused_by = Some("the ConfigMap (paused: \"true\")".into()),
            "false" | "" => {}
            other => return Err(format!("paused {other:?} must be \"true\" or \"false\"")),
        }
    }
    Ok(s)
}

/// Now, for Failure records.
pub fn stamp(now: OffsetDateTime) -> String {
    rfc3339_utc(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubepki_pki::crypto::issuer::Issuer;
    use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};
    use kubepki_pki::model::inventory::{self, CaId};
    use kubepki_pki::model::layout::Layout;
    use kubepki_pki::model::params::ClusterParams;
    use kubepki_pki::model::slot;
    use kubepki_pki::ops::scan::{Scanner, Watch};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const DAY: Duration = Duration::from_secs(86400);

    /// A cert dir with ca.crt (and ca.key unless `external`) and apiserver.crt valid for
    /// `validity` from NOW; its snapshot.
    fn node(validity: Duration, external: bool) -> (tempfile::TempDir, Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("pki"), dir.path());
        std::fs::create_dir(&layout.cert_dir).unwrap();
        let spec = inventory::ca(CaId::Ca);
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = Issuer::new_root(
            &ClusterParams::ca_template(spec),
            key,
            NOW,
            3650 * DAY,
            &layout.ca_cert(spec),
            &layout.ca_key(spec),
        )
        .unwrap();
        std::fs::write(layout.ca_cert(spec), ca.cert().to_pem()).unwrap();
        if !external {
            std::fs::write(layout.ca_key(spec), "not read by the scan").unwrap();
        }
        let params = ClusterParams::new("n1".into(), [10, 0, 0, 5].into());
        let item = slot::kubeadm_items(true)
            .into_iter()
            .find(|i| i.name() == "apiserver")
            .unwrap();
        let leaf_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let t = item.template(&params).unwrap();
        let cert = ca
            .sign(&t, leaf_key.public_key_der(), NOW, validity)
            .unwrap()
            .cert;
        std::fs::write(layout.cert_dir.join("apiserver.crt"), cert.to_pem()).unwrap();
        let watch = Watch {
            layout,
            kubelet_pki_dir: dir.path().join("kubelet"),
            files: Vec::new(),
            dirs: Vec::new(),
        };
        let snap = Scanner::new().scan(&watch);
        (dir, snap)
    }

    fn on(renew_before: Option<Duration>) -> Settings {
        Settings {
            renew_before,
            paused_by: None,
        }
    }

    #[test]
    fn each_threshold_is_announced_once_and_expiry_once_more() {
        let (_d, snap) = node(10 * DAY, false);
        let mut seen = Announced::default();
        let thresholds = [168 * 3600, 720 * 3600].map(Duration::from_secs);
        // 10 days left: within 30 d, not 7 d.
        let first = notices(&snap, &thresholds, NOW, &mut seen);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].reason, "CertificateExpiring");
        assert!(first[0].note.contains("apiserver") && first[0].note.contains("the 30d threshold"));
        assert!(notices(&snap, &thresholds, NOW, &mut seen).is_empty());
        let later = NOW + time::Duration::days(4);
        let second = notices(&snap, &thresholds, later, &mut seen);
        assert_eq!(second.len(), 1);
        assert!(second[0].note.contains("the 7d threshold"), "{second:?}");
        let expired = notices(
            &snap,
            &thresholds,
            NOW + time::Duration::days(11),
            &mut seen,
        );
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].reason, "CertificateExpired");
        // Back in time (a clock step) announces nothing again.
        assert!(notices(&snap, &thresholds, NOW, &mut seen).is_empty());
    }

    #[test]
    fn renewal_is_due_only_for_what_this_node_can_renew_within_the_window() {
        let (_d, snap) = node(10 * DAY, false);
        assert_eq!(renewal(&on(None), None, &snap, NOW), Renewal::Off);
        assert_eq!(
            renewal(&on(Some(30 * DAY)), None, &snap, NOW),
            Renewal::Due(vec!["apiserver".into()])
        );
        match renewal(&on(Some(5 * DAY)), None, &snap, NOW) {
            Renewal::NotDue { next: Some(n) } => {
                assert_eq!(n.date(), (NOW + time::Duration::days(5)).date())
            }
            other => panic!("{other:?}"),
        }
        let f = Failure {
            node: "cp2".into(),
            time: "t".into(),
            error: "e".into(),
            backup: None,
        };
        assert_eq!(
            renewal(&on(Some(30 * DAY)), Some(&f), &snap, NOW),
            Renewal::Stopped(f)
        );
        let paused = Settings {
            renew_before: Some(30 * DAY),
            paused_by: Some("--pause-renewal".into()),
        };
        assert_eq!(
            renewal(&paused, None, &snap, NOW),
            Renewal::Paused("--pause-renewal".into())
        );
        // The CA is external: nothing here can renew the leaf.
        let (_d, ext) = node(10 * DAY, true);
        assert!(!has_renewable(&ext));
        assert_eq!(
            renewal(&on(Some(30 * DAY)), None, &ext, NOW),
            Renewal::NothingRenewable
        );
    }

    #[test]
    fn the_config_map_wins_over_the_flags_and_bad_values_are_refused() {
        let flags = on(Some(30 * DAY));
        let map = |k: &str, v: &str| std::collections::BTreeMap::from([(k.into(), v.into())]);
        assert_eq!(apply_config(&flags, None).unwrap(), flags);
        assert_eq!(
            apply_config(&flags, Some(&map("renewBefore", "0"))).unwrap(),
            on(None)
        );
        assert_eq!(
            apply_config(&on(None), Some(&map("renewBefore", "240h"))).unwrap(),
            on(Some(10 * DAY))
        );
        assert!(
            apply_config(&flags, Some(&map("paused", "true")))
                .unwrap()
                .paused_by
                .is_some()
        );
        assert!(apply_config(&flags, Some(&map("paused", "yes"))).is_err());
        assert!(apply_config(&flags, Some(&map("renewBefore", "soon"))).is_err());
    }
}
