//! Dates for messages and listings.

/// `2024-06-01T12:00:00Z` from Unix milliseconds (UTC, whole seconds): the policy's own
/// RFC 3339 form ([`weft_policy::expiry::format_rfc3339`]) without the milliseconds.
pub fn rfc3339(ms: u64) -> String {
    weft_policy::expiry::format_rfc3339(ms - ms % 1000)
}
