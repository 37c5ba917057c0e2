//! fault decisions (to be written).
