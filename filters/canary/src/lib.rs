//! weft canary filter (to be written).
