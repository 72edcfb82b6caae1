//! Dates as kubeadm and kubepki print them.

use time::OffsetDateTime;
use time::macros::format_description;

/// `Jan 02, 2006 15:04 MST` for UTC times.
pub fn format_date(t: OffsetDateTime) -> String {
    let fmt = format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| t.to_string())
}

/// `2006-01-02T15:04:05Z`, as metav1.Time marshals.
pub fn rfc3339_utc(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| t.to_string())
}
