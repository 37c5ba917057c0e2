//! The trigger header: `abort=503`, `delay=200ms` (or `delay=2s`, or a bare number of
//! milliseconds), or both joined by `,`. Honoured only by policies that allow it.

/// What a trigger header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trigger {
    pub abort_status: Option<u16>,
    pub delay_ms: Option<u64>,
}

/// Parse a trigger header value; `Err` says why it is ignored.
pub fn parse_trigger(value: &str, max_delay_ms: u64) -> Result<Trigger, String> {
    let mut trigger = Trigger::default();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, arg) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}` is not key=value"))?;
        match key.trim() {
            "abort" => {
                let status: u16 = arg
                    .trim()
                    .parse()
                    .map_err(|_| format!("abort status `{arg}` is not a number"))?;
                if !(200..=599).contains(&status) {
                    return Err(format!("abort status {status} is not in 200..=599"));
                }
                trigger.abort_status = Some(status);
            }
            "delay" => {
                let ms = parse_duration_ms(arg.trim())
                    .ok_or_else(|| format!("delay `{arg}` is not like 200ms or 2s"))?;
                if !(1..=max_delay_ms).contains(&ms) {
                    return Err(format!("delay {ms} ms is not in 1..={max_delay_ms}"));
                }
                trigger.delay_ms = Some(ms);
            }
            other => return Err(format!("unknown fault `{other}`")),
        }
    }
    if trigger == Trigger::default() {
        return Err("asks for no fault".to_string());
    }
    Ok(trigger)
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.trim().parse().ok()
    } else if let Some(s) = text.strip_suffix('s') {
        s.trim().parse::<u64>().ok()?.checked_mul(1000)
    } else {
        text.parse().ok()
    }
}
