//! canary decisions (to be written).
