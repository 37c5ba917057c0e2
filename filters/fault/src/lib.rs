//! weft fault filter (to be written).
