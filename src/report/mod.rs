//! How decoded values are shown: JSON (an interface other tools rely on) and text for people.
//! Both are built from the same protocol and battery types; nothing here decodes bytes.
//!
//! Layer 2: may use `protocol` and `battery`.

pub mod json;
pub mod text;
