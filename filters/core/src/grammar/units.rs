//! Durations and percentages as users write them in policy documents.

/// `200ms`, `30s`, `5m`, `1h`, or a sum such as `1m30s`. Returns milliseconds; at most 24h.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad =
        |why: &str| format!("bad duration {text:?}: {why} (expected e.g. `200ms`, `30s`, `1m30s`)");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (num, after) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too large"))?;
        rest = after;
    }
    if total > 24 * 3_600_000 {
        return Err(bad("more than 24h"));
    }
    Ok(total)
}

/// A percentage 0-100 with at most two decimals, as basis points (`12.5` -> 1250).
pub fn percent_to_bp(percent: f64) -> Result<u32, String> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(format!("{percent} is not a percentage between 0 and 100"));
    }
    let scaled = percent * 100.0;
    let bp = scaled.round();
    if (scaled - bp).abs() > 1e-6 {
        return Err(format!("{percent} has more than two decimals"));
    }
    // In range 0..=10000 after the checks above.
    Ok(bp as u32)
}
