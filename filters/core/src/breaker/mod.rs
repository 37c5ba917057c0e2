//! breaker decisions (to be written).
