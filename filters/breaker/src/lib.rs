//! weft breaker filter (to be written).
